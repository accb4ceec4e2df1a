//! `ServerTimingLayer`: each call's time in the incoming request's `Server-Timing` header, as
//! an entry named for the downstream (`payment;dur=182.4`) — so a slow response says which
//! dependency made it slow, in the browser's network panel or `curl -v`.
//!
//! The server side makes the request's collector current while it polls the handler (the
//! preset, or `vitals-timing`'s layer); a call made there adds its entry when it ends, whether
//! it answered or failed. Outside such a request it does nothing. Put it outermost (above the
//! retry) to time the whole call, retries and their waits included:
//!
//! ```
//! use tower::ServiceBuilder;
//! use vitals_client::{RetryLayer, ServerTimingLayer};
//!
//! # fn client<S>(transport: S) -> impl Sized
//! # where S: tower::Service<http::Request<String>, Response = http::Response<String>> + Clone,
//! #       S::Error: Into<vitals_client::BoxError> {
//! let payment = ServiceBuilder::new()
//!     .layer(ServerTimingLayer::new("payment"))
//!     .layer(RetryLayer::new())
//!     .service(transport);
//! # payment }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::server_timing::{Metric, ServerTiming, is_valid_name};

/// Adds each call's duration to the current request's `Server-Timing` (see the
/// [module docs](crate::server_timing)).
#[derive(Clone, Debug)]
pub struct ServerTimingLayer {
    name: Arc<str>,
}

impl ServerTimingLayer {
    /// Entries named `name` (the downstream's; an HTTP token such as `payment` or
    /// `search-api`; anything else becomes `downstream`).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        Self {
            name: if is_valid_name(&name) {
                name
            } else {
                Arc::from("downstream")
            },
        }
    }
}

impl<S> Layer<S> for ServerTimingLayer {
    type Service = ServerTimed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTimed {
            inner,
            name: Arc::clone(&self.name),
        }
    }
}

/// A client service whose calls are added to the request's `Server-Timing` (see
/// [`ServerTimingLayer`]).
#[derive(Clone, Debug)]
pub struct ServerTimed<S> {
    inner: S,
    name: Arc<str>,
}

impl<S> ServerTimed<S> {
    vitals_core::inner_service_accessors!();
}

impl<S, R> Service<R> for ServerTimed<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ServerTimedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The clock is read only when there is a collector to report to: most calls made
        // outside a request whose client sees `Server-Timing` pay nothing for the entry.
        let timing =
            ServerTiming::current().map(|timing| (timing, Arc::clone(&self.name), Instant::now()));
        ServerTimedFuture {
            call: self.inner.call(request),
            timing,
        }
    }
}

pin_project! {
    /// The response future of [`ServerTimed`].
    pub struct ServerTimedFuture<F> {
        #[pin]
        call: F,
        // The collector, the entry's name and when the call started.
        timing: Option<(ServerTiming, Arc<str>, Instant)>,
    }
}

impl<F: Future> Future for ServerTimedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.call.poll(cx));
        if let Some((timing, name, started)) = this.timing.take() {
            timing.add(Metric::from_shared(name).with_duration(started.elapsed()));
        }
        Poll::Ready(output)
    }
}
