//! `Bulkhead<S>`: the client service that takes a permit per call.

use std::task::{Context, Poll};

use tower_service::Service;

use super::future::BulkheadFuture;
use super::layer::BulkheadLayer;
use super::permits::Permit;
use crate::error::{BoxError, BulkheadFull};

/// A client service with at most so many calls under way (see [`BulkheadLayer`]).
#[derive(Debug)]
pub struct Bulkhead<S> {
    inner: S,
    layer: BulkheadLayer,
    /// What `poll_ready` decided for this clone's next call.
    admitted: Option<Admitted>,
}

#[derive(Debug)]
enum Admitted {
    /// A permit, held for the call.
    Permit(Permit),
    /// Full: the call fails at once.
    Full,
}

impl Admitted {
    fn try_take(layer: &BulkheadLayer) -> Self {
        layer.permits.try_take().map_or(Self::Full, Self::Permit)
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    /// A clone has no permit of its own yet: the one this clone holds stays with it.
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), self.layer.clone())
    }
}

impl<S> Bulkhead<S> {
    pub(crate) fn new(inner: S, layer: BulkheadLayer) -> Self {
        Self {
            inner,
            layer,
            admitted: None,
        }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, R> Service<R> for Bulkhead<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BulkheadFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let admitted = self
            .admitted
            .get_or_insert_with(|| Admitted::try_take(&self.layer));
        if matches!(admitted, Admitted::Full) {
            // Full: ready to refuse at once, the inner service not asked.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(error)) => {
                // No call will follow: the permit goes back.
                self.admitted = None;
                Poll::Ready(Err(error.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        // Called without `poll_ready` (a caller's breach of the contract): decided now.
        let admitted = self
            .admitted
            .take()
            .unwrap_or_else(|| Admitted::try_take(&self.layer));
        match admitted {
            Admitted::Permit(permit) => BulkheadFuture::running(self.inner.call(request), permit),
            Admitted::Full => BulkheadFuture::full(BulkheadFull::new(
                std::sync::Arc::clone(self.layer.permits.name()),
                self.layer.permits.limit(),
            )),
        }
    }
}
