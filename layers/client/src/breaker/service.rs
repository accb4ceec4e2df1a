//! `CircuitBreaker<S>`: the client service behind a breaker.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::body::BreakerBody;
use super::books::Admit;
use super::future::{BreakerFuture, Ticket};
use super::hosts::Hosts;
use super::layer::Shared;
use crate::error::{BoxError, BreakerOpen};

/// A client service behind a circuit breaker (see
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer)).
#[derive(Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Per host: the breaker is chosen in `call`, by the request's host.
    hosts: Option<Arc<Hosts>>,
    /// What `poll_ready` decided for the next call of this clone (one breaker only).
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
            hosts: self.hosts.clone(),
            admitted: None,
        }
    }
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, hosts: Option<Arc<Hosts>>) -> Self {
        Self {
            inner,
            shared,
            hosts,
            admitted: None,
        }
    }

    vitals_core::inner_service_accessors!();
}

/// Whether `shared` lets a call go now.
fn admit(shared: &Arc<Shared>) -> Admitted {
    match shared.admit() {
        (Admit::Refuse(retry_after), _) => Admitted::Refused(retry_after),
        (admit, generation) => Admitted::Go(Ticket::new(Arc::clone(shared), admit, generation)),
    }
}

impl<S, B, ResB> Service<Request<B>> for CircuitBreaker<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<BreakerBody<ResB>>;
    type Error = BoxError;
    type Future = BreakerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.hosts.is_some() {
            // Per host: which breaker decides is known only from the request.
            return self.inner.poll_ready(cx).map_err(Into::into);
        }
        if self.admitted.is_none() {
            self.admitted = Some(admit(&self.shared));
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
        if let Some(hosts) = &self.hosts {
            let shared = hosts.breaker(request.uri(), request.headers());
            // A refused call leaves the inner service's readiness with this clone, for its
            // next call.
            return answer(&mut self.inner, admit(&shared), &shared.name, request);
        }
        // Called without `poll_ready` (a caller's breach of the contract): decided now.
        let admitted = self.admitted.take().unwrap_or_else(|| admit(&self.shared));
        answer(&mut self.inner, admitted, &self.shared.name, request)
    }
}

/// The call, or its refusal by the breaker named `name`.
fn answer<S, B>(
    inner: &mut S,
    admitted: Admitted,
    name: &Arc<str>,
    request: Request<B>,
) -> BreakerFuture<S::Future>
where
    S: Service<Request<B>>,
{
    match admitted {
        Admitted::Go(ticket) => BreakerFuture::running(inner.call(request), ticket),
        Admitted::Refused(retry_after) => {
            BreakerFuture::refused(BreakerOpen::new(Arc::clone(name), retry_after))
        }
    }
}
