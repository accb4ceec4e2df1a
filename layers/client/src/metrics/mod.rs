//! `ClientMetricsLayer` (feature `metrics`): the OpenTelemetry HTTP client metric,
//! `http.client.request.duration`, through the `metrics` facade — one sample per attempt, in
//! seconds, by `http.request.method`, `server.address`, `server.port`,
//! `http.response.status_code` and `error.type`.
//!
//! `error.type` is the status code for a `4xx`/`5xx` answer, and for a call that got none:
//! `timeout` (the deadline or the call's timeout), `circuit_open`, `bulkhead_full`, or `_OTHER`
//! (a connect error, a reset). Put it innermost, under the retry, so each attempt is a sample;
//! the labels come from the request's URI, which your code chose (no label from outside input:
//! `server.address` and `server.port` are the URI's authority's, never a `Host` header's; for
//! calls whose URI has none, a tonic channel's, give them with
//! [`ClientMetricsLayer::with_server`]).
//! With `vitals::telemetry`, the Prometheus recorder has the recommended buckets for it.
//!
//! The layer keeps the recorder's handle of each label set it has recorded (up to
//! [`MAX_DOWNSTREAMS`] method, host and port triples, and [`MAX_OUTCOMES`] outcomes each): a
//! call then finds its handle under a shared lock instead of building up to five labels for
//! the recorder to hash and look up. Install the recorder before the first call, as for every
//! layer's metrics.
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

mod future;
mod handles;
mod layer;
mod service;

pub use future::MeasuredFuture;
pub use handles::{MAX_DOWNSTREAMS, MAX_OUTCOMES};
pub use layer::ClientMetricsLayer;
pub use service::ClientMetrics;

use vitals_core::semconv;

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
