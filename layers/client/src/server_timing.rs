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

use std::borrow::Cow;
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
    name: Name,
}

/// The downstream's name: a static one is copied into each clone of the stack and each entry
/// (no reference count, no allocation per call); another is shared by the clones.
#[derive(Clone, Debug)]
enum Name {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// An entry of this name.
    fn metric(&self) -> Metric {
        match self {
            Self::Static(name) => Metric::new(*name),
            Self::Shared(name) => Metric::new(name.to_string()),
        }
    }
}

impl ServerTimingLayer {
    /// Entries named `name` (the downstream's; an HTTP token such as `payment` or
    /// `search-api`; anything else becomes `downstream`).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        let name = match name.into() {
            Cow::Borrowed(name) if is_valid_name(name) => Name::Static(name),
            Cow::Owned(name) if is_valid_name(&name) => Name::Shared(Arc::from(name)),
            _ => Name::Static("downstream"),
        };
        Self { name }
    }
}

impl<S> Layer<S> for ServerTimingLayer {
    type Service = ServerTimed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTimed {
            inner,
            name: self.name.clone(),
        }
    }
}

/// A client service whose calls are added to the request's `Server-Timing` (see
/// [`ServerTimingLayer`]).
#[derive(Clone, Debug)]
pub struct ServerTimed<S> {
    inner: S,
    name: Name,
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
            ServerTiming::current().map(|timing| (timing, self.name.clone(), Instant::now()));
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
        timing: Option<(ServerTiming, Name, Instant)>,
    }
}

impl<F: Future> Future for ServerTimedFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.call.poll(cx));
        if let Some((timing, name, started)) = this.timing.take() {
            timing.add(name.metric().with_duration(started.elapsed()));
        }
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::task::Waker;

    use super::*;

    /// The entry one call through `layer` adds to a request's collector.
    fn entry(layer: &ServerTimingLayer) -> Option<String> {
        let timing = ServerTiming::attach(&mut http::Extensions::new());
        let mut service = layer.layer(tower::service_fn(|(): ()| {
            std::future::ready(Ok::<_, Infallible>(()))
        }));
        // Called while the request's collector is current, as a handler's call is.
        let call = ServerTiming::in_scope(&mut Some(timing.clone()), || service.call(()));
        let mut call = std::pin::pin!(call);
        let answered = call.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(answered.is_ready(), "the call answers at once");
        timing
            .render()
            .map(|line| line.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn a_call_adds_an_entry_named_for_its_downstream() {
        let given = entry(&ServerTimingLayer::new("payment")).expect("an entry");
        assert!(given.starts_with("payment;dur="), "{given}");
        let owned = entry(&ServerTimingLayer::new(String::from("search-api"))).expect("an entry");
        assert!(owned.starts_with("search-api;dur="), "{owned}");
    }

    #[test]
    fn a_name_that_is_not_a_token_becomes_downstream() {
        for layer in [
            ServerTimingLayer::new("two words"),
            ServerTimingLayer::new(String::from("semi;colon")),
            ServerTimingLayer::new(""),
        ] {
            let line = entry(&layer).expect("an entry");
            assert!(line.starts_with("downstream;dur="), "{line}");
        }
    }

    #[test]
    fn no_entry_outside_a_request_with_a_collector() {
        let timing = ServerTiming::attach(&mut http::Extensions::new());
        let mut service = ServerTimingLayer::new("payment").layer(tower::service_fn(|(): ()| {
            std::future::ready(Ok::<_, Infallible>(()))
        }));
        let mut call = std::pin::pin!(service.call(()));
        assert!(
            call.as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
        assert_eq!(timing.render(), None);
    }
}
