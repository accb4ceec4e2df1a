//! `ClientSpanLayer`: a CLIENT span for every outgoing call — each attempt of a retried one —
//! by the OpenTelemetry HTTP client conventions, its context sent as the call's `traceparent`.
//!
//! The span is a child of the current span (the request being handled, or a span of the
//! handler's), named for the method (`GET`), with `http.request.method`, `server.address`,
//! `server.port`, `url.full`, `http.request.resend_count` (from
//! [`ResendCount`], which `vitals-client`'s retry sets on
//! each attempt after the first), and at the end `http.response.status_code`, and `error.type`
//! with status Error for a `4xx`/`5xx`, an error (`_OTHER`), or a call dropped before its answer
//! (`cancelled`: cut by a deadline outside, or given up). Put it innermost, under the retry:
//!
//! ```
//! use tower::ServiceBuilder;
//! use vitals_trace_context::ClientSpanLayer;
//!
//! # fn client<S>(transport: S) -> impl Sized where S: Clone {
//! ServiceBuilder::new().layer(ClientSpanLayer::new()).service(transport)
//! # }
//! ```
//!
//! With [`export_request_spans`](crate::export_request_spans) or tracing-opentelemetry the span
//! is exported like the handler's own spans; without a subscriber interested in it, it is not
//! created, and the call still carries the request's trace (a new span id).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use vitals_core::attempt::ResendCount;
use vitals_core::semconv::{method_label, server_address};

use crate::context::{inject, inject_span};

/// Makes a CLIENT span for every call through it (see the [module docs](crate::client_span)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientSpanLayer {
    _private: (),
}

impl ClientSpanLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ClientSpanLayer {
    type Service = ClientSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientSpan { inner }
    }
}

/// The service made by [`ClientSpanLayer`].
#[derive(Clone, Copy, Debug)]
pub struct ClientSpan<S> {
    inner: S,
}

impl<S> ClientSpan<S> {
    vitals_core::inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for ClientSpan<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ClientSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let method = method_label(request.method());
        let uri = request.uri();
        let server = server_address(uri, request.headers());
        let resends = ResendCount::of(&request);
        let span = tracing::info_span!(
            target: "vitals_trace_context::client",
            "client",
            otel.name = method,
            otel.kind = "client",
            http.request.method = method,
            server.address = server.map(|(host, _)| host),
            server.port = server.map(|(_, port)| i64::from(port)),
            url.full = %FullUrl(uri),
            http.request.resend_count = (resends > 0).then_some(i64::from(resends)),
            http.response.status_code = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        if span.is_disabled() {
            // Nobody records spans: the call still carries the request's trace.
            inject(request.headers_mut());
        } else {
            inject_span(&span, request.headers_mut());
        }
        let call = span.in_scope(|| self.inner.call(request));
        ClientSpanFuture {
            call,
            span,
            done: false,
        }
    }
}

/// A URI as `url.full`: without the user and password an authority may carry
/// (`https://user:secret@host/`), which the conventions say must not be recorded.
struct FullUrl<'a>(&'a http::Uri);

impl std::fmt::Display for FullUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let uri = self.0;
        if let Some(scheme) = uri.scheme_str() {
            write!(f, "{scheme}://")?;
        }
        if let Some(authority) = uri.authority() {
            let host_and_port = authority
                .as_str()
                .rsplit_once('@')
                .map_or(authority.as_str(), |(_, rest)| rest);
            f.write_str(host_and_port)?;
        }
        f.write_str(uri.path_and_query().map_or("", |p| p.as_str()))
    }
}

pin_project! {
    /// The response future of [`ClientSpan`].
    pub struct ClientSpanFuture<F> {
        #[pin]
        call: F,
        span: tracing::Span,
        done: bool,
    }

    impl<F> PinnedDrop for ClientSpanFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done {
                // Dropped before an answer: cut by a deadline or given up by the caller.
                this.span.record("error.type", "cancelled");
                this.span.record("otel.status_code", "ERROR");
            }
        }
    }
}

impl<F, ResB, E> Future for ClientSpanFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.call.poll(cx))
        };
        *this.done = true;
        if let Ok(response) = &result {
            let status = response.status();
            this.span
                .record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_client_error() || status.is_server_error() {
                this.span.record("error.type", status.as_str());
                this.span.record("otel.status_code", "ERROR");
            }
        } else {
            // No answer: refused, reset, cut by a deadline.
            this.span.record("error.type", "_OTHER");
            this.span.record("otel.status_code", "ERROR");
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::FullUrl;

    #[test]
    fn the_full_url_never_carries_credentials() {
        let show = |uri: &str| FullUrl(&uri.parse().unwrap()).to_string();
        assert_eq!(
            show("https://user:secret@pay.example:8443/v1/pay?x=1"),
            "https://pay.example:8443/v1/pay?x=1"
        );
        assert_eq!(
            show("http://127.0.0.1:3000/stock"),
            "http://127.0.0.1:3000/stock"
        );
        assert_eq!(show("/relative"), "/relative");
    }
}
