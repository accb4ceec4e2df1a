//! `Deadline<S>`: the client service under the request's deadline.

use std::task::{Context, Poll};

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request};
use tokio::time::Instant;
use tower_service::Service;
use vitals_core::deadline::RequestDeadline;
use vitals_core::grpc_timeout::{self, GRPC_TIMEOUT};

use super::future::{DeadlineFuture, Report};
use super::layer::DeadlineLayer;
use crate::error::{BoxError, DeadlineExceeded};

/// A client service whose calls end by the request's deadline (see [`DeadlineLayer`]).
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    settings: DeadlineLayer,
    /// Set by `poll_ready` when the request had no time left: the inner service was not asked
    /// for readiness, and the call is refused.
    refused: bool,
}

impl<S> Deadline<S> {
    /// `inner` with `settings`.
    pub fn new(inner: S, settings: DeadlineLayer) -> Self {
        Self {
            inner,
            settings,
            refused: false,
        }
    }

    vitals_core::inner_service_accessors!();
}

/// When a call must end, and whether that is the request's deadline (else its own timeout).
#[derive(Clone, Copy, Debug)]
struct Limit {
    at: Instant,
    by_request: bool,
}

/// The earliest of the call's own timeout, the current request's deadline and one carried in
/// the outgoing request's extensions (those two less the reserve).
fn limit<B>(request: &Request<B>, settings: &DeadlineLayer) -> Option<Limit> {
    let own = settings
        .timeout
        .and_then(|timeout| Instant::now().checked_add(timeout))
        .map(|at| Limit {
            at,
            by_request: false,
        });
    let carried = request.extensions().get::<RequestDeadline>().copied();
    let request_deadline = match (RequestDeadline::current(), carried) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
    .map(|deadline| {
        let at = Instant::from_std(deadline.instant());
        Limit {
            // A reserve longer than the clock's past: no time left.
            at: at
                .checked_sub(settings.reserve)
                .unwrap_or_else(Instant::now),
            by_request: true,
        }
    });
    match (own, request_deadline) {
        (Some(own), Some(request)) if request.at <= own.at => Some(request),
        (Some(own), _) => Some(own),
        (None, request) => request,
    }
}

/// Whether the request is a gRPC call.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // No time left: no readiness asked of the inner service, so no connection made.
        if RequestDeadline::current().is_some_and(|d| d.remaining() <= self.settings.reserve) {
            self.refused = true;
            return Poll::Ready(Ok(()));
        }
        self.refused = false;
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let limit = limit(&request, &self.settings);
        // Only with findings: who to name when the request's time runs out.
        let report = self.settings.findings.as_ref().map(|reporter| Report {
            reporter: reporter.clone(),
            downstream: request.uri().host().unwrap_or("downstream").to_owned(),
        });
        if std::mem::take(&mut self.refused) {
            return DeadlineFuture::refused(DeadlineExceeded::new(true, false), report);
        }
        let Some(limit) = limit else {
            return DeadlineFuture::running(self.inner.call(request), None, None);
        };
        let left = limit.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return DeadlineFuture::refused(DeadlineExceeded::new(limit.by_request, false), report);
        }
        if is_grpc(request.headers()) {
            let asked = request
                .headers()
                .get(GRPC_TIMEOUT)
                .and_then(grpc_timeout::parse);
            let timeout = asked.map_or(left, |asked| asked.min(left));
            request
                .headers_mut()
                .insert(GRPC_TIMEOUT, grpc_timeout::encode(timeout));
        }
        DeadlineFuture::running(
            self.inner.call(request),
            Some((limit.at, limit.by_request)),
            report,
        )
    }
}
