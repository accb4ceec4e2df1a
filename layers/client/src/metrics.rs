//! `ClientMetricsLayer` (feature `metrics`): the OpenTelemetry HTTP client metric,
//! `http.client.request.duration`, through the `metrics` facade — one sample per attempt, in
//! seconds, by `http.request.method`, `server.address`, `server.port`,
//! `http.response.status_code` and `error.type`.
//!
//! `error.type` is the status code for a `4xx`/`5xx` answer, and for a call that got none:
//! `timeout` (the deadline or the call's timeout), `circuit_open`, `bulkhead_full`, or `_OTHER`
//! (a connect error, a reset). Put it innermost, under the retry, so each attempt is a sample;
//! the labels come from the request's URI, which your code chose (no label from outside input).
//! With `vitals::telemetry`, the Prometheus recorder has the recommended buckets for it.
//!
//! ```
//! use tower::ServiceBuilder;
//! use vitals_client::{ClientMetricsLayer, RetryLayer};
//!
//! # fn client<S>(transport: S) -> impl Sized
//! # where S: tower::Service<http::Request<String>, Response = http::Response<String>> + Clone,
//! #       S::Error: Into<vitals_client::BoxError> {
//! let payment = ServiceBuilder::new()
//!     .layer(RetryLayer::new())
//!     .layer(ClientMetricsLayer::new())
//!     .service(transport);
//! # payment }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response};
use metrics::Label;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::semconv;

use crate::error::{BoxError, BreakerOpen, BulkheadFull, DeadlineExceeded};

/// Registers the HELP text and unit (seconds) with the installed recorder: the Prometheus
/// exporter then names the histogram `http_client_request_duration_seconds`.
/// `vitals::telemetry` calls it.
pub fn describe() {
    metrics::describe_histogram!(
        semconv::HTTP_CLIENT_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of HTTP client requests, one sample per attempt, to the response head."
    );
}

/// Records `http.client.request.duration` for every call through it (see the
/// [module docs](crate::metrics)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientMetricsLayer {
    _private: (),
}

impl ClientMetricsLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ClientMetricsLayer {
    type Service = ClientMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientMetrics { inner }
    }
}

/// A client service whose calls are measured (see [`ClientMetricsLayer`]).
#[derive(Clone, Debug)]
pub struct ClientMetrics<S> {
    inner: S,
}

impl<S> ClientMetrics<S> {
    vitals_core::inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for ClientMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut labels = Vec::with_capacity(5);
        labels.push(Label::from_static_parts(
            semconv::HTTP_REQUEST_METHOD,
            semconv::method_label(request.method()),
        ));
        if let Some((host, port)) = semconv::server_address(request.uri(), request.headers()) {
            labels.push(Label::new(semconv::SERVER_ADDRESS, host.to_owned()));
            labels.push(Label::new(semconv::SERVER_PORT, port.to_string()));
        }
        MeasuredFuture {
            call: self.inner.call(request),
            labels: Some(labels),
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The response future of [`ClientMetrics`].
    pub struct MeasuredFuture<F> {
        #[pin]
        call: F,
        labels: Option<Vec<Label>>,
        started: Instant,
    }
}

/// `error.type` for a call that got no answer.
fn error_type(error: &BoxError) -> &'static str {
    if error.is::<DeadlineExceeded>() {
        "timeout"
    } else if error.is::<BreakerOpen>() {
        "circuit_open"
    } else if error.is::<BulkheadFull>() {
        "bulkhead_full"
    } else {
        OTHER_ERROR
    }
}

/// `error.type` for an error of no known kind (OpenTelemetry's fallback value).
const OTHER_ERROR: &str = "_OTHER";

impl<F, ResB, E> Future for MeasuredFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.call.poll(cx)).map_err(Into::into);
        let mut labels = this.labels.take().unwrap_or_default();
        match &result {
            Ok(response) => {
                let status = response.status();
                labels.push(Label::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    status.as_str().to_owned(),
                ));
                if status.is_client_error() || status.is_server_error() {
                    labels.push(Label::new(semconv::ERROR_TYPE, status.as_str().to_owned()));
                }
            }
            Err(error) => {
                labels.push(Label::from_static_parts(
                    semconv::ERROR_TYPE,
                    error_type(error),
                ));
            }
        }
        metrics::histogram!(semconv::HTTP_CLIENT_REQUEST_DURATION, labels)
            .record(this.started.elapsed().as_secs_f64());
        Poll::Ready(result)
    }
}
