//! `BulkheadLayer`: the limit and the permits every service of the layer shares.

use std::sync::Arc;

use tower_layer::Layer;

use super::permits::Permits;
use super::service::Bulkhead;

/// At most `limit` calls under way to one downstream (see the [module docs](crate::bulkhead)).
#[derive(Clone, Debug)]
pub struct BulkheadLayer {
    pub(crate) permits: Arc<Permits>,
}

impl BulkheadLayer {
    /// At most `limit` calls at once (at least 1) to the downstream named `name`, shared by every
    /// service this layer wraps and their clones.
    pub fn new(name: impl Into<Arc<str>>, limit: usize) -> Self {
        Self {
            permits: Arc::new(Permits::new(name.into(), limit)),
        }
    }

    /// Calls under way now.
    pub fn in_flight(&self) -> usize {
        self.permits.in_flight()
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(inner, self.clone())
    }
}
