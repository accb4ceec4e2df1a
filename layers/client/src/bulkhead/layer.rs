//! `BulkheadLayer`: the limit and the permits every service of the layer shares.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tower_layer::Layer;

use super::service::Bulkhead;

/// At most `limit` calls under way to one downstream (see the [module docs](crate::bulkhead)).
#[derive(Clone, Debug)]
pub struct BulkheadLayer {
    pub(crate) name: Arc<str>,
    pub(crate) limit: usize,
    pub(crate) permits: Arc<Semaphore>,
}

impl BulkheadLayer {
    /// At most `limit` calls at once (at least 1) to the downstream named `name`, shared by every
    /// service this layer wraps and their clones.
    pub fn new(name: impl Into<Arc<str>>, limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            name: name.into(),
            limit,
            permits: Arc::new(Semaphore::new(limit)),
        }
    }

    /// Calls under way now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.clone())
    }
}
