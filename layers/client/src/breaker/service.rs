//! `CircuitBreaker<S>`: the client service behind a breaker.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::books::Admit;
use super::future::{BreakerFuture, Ticket};
use super::layer::Shared;
use crate::error::{BoxError, BreakerOpen};

/// A client service behind a circuit breaker (see
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer)).
#[derive(Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// What `poll_ready` decided for the next call of this clone.
    admitted: Option<Admitted>,
}

#[derive(Debug)]
enum Admitted {
    /// Going through; the inner service is (being) made ready for it.
    Go(Ticket),
    /// Refused: the inner service is not asked.
    Refused(std::time::Duration),
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    /// A clone has no readiness of its own yet: what this one reserved stays with it.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            admitted: None,
        }
    }
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            admitted: None,
        }
    }

    vitals_core::inner_service_accessors!();

    fn admit(&self) -> Admitted {
        match self.shared.admit() {
            (Admit::Refuse(retry_after), _) => Admitted::Refused(retry_after),
            (admit, generation) => {
                Admitted::Go(Ticket::new(Arc::clone(&self.shared), admit, generation))
            }
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for CircuitBreaker<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.admitted.is_none() {
            self.admitted = Some(self.admit());
        }
        match &self.admitted {
            // Ready to refuse at once: an open breaker never polls the inner service.
            Some(Admitted::Refused(_)) | None => Poll::Ready(Ok(())),
            Some(Admitted::Go(_)) => match self.inner.poll_ready(cx) {
                Poll::Ready(Err(error)) => {
                    // No verdict on the downstream; a probe's slot is freed.
                    self.admitted = None;
                    Poll::Ready(Err(error.into()))
                }
                other => other.map_err(Into::into),
            },
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Called without `poll_ready` (a caller's breach of the contract): decided now.
        let admitted = self.admitted.take().unwrap_or_else(|| self.admit());
        match admitted {
            Admitted::Go(ticket) => BreakerFuture::running(self.inner.call(request), ticket),
            Admitted::Refused(retry_after) => {
                BreakerFuture::refused(BreakerOpen::new(Arc::clone(&self.shared.name), retry_after))
            }
        }
    }
}
