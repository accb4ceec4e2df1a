//! `vitals-core`: the few things several Vitals layers share, and nothing more.
//!
//! Each Vitals layer stands alone; when several are stacked they agree on a handful of facts
//! about a request. Those facts live here:
//!
//! - [`route`]: the route label of a request — axum's `MatchedPath` template, or the fixed
//!   [`route::UNMATCHED`] label, never the raw path — with a hook for other routers (gRPC).
//! - [`route_table`]: each route template's settings, for every layer's `with_route`.
//! - [`body`]: a response body wrapper that reports exactly once when the last byte was
//!   produced, when the body failed, or when the client went away before the end.
//! - [`server_timing`]: one per-request `Server-Timing` collector that every layer adds to and
//!   the outermost one renders.
//! - [`identity`]: the trace id and request id of the current request, for logs and findings.
//! - [`attempt`]: which attempt of an outgoing call a request is (`http.request.resend_count`).
//! - [`deadline`]: the current request's deadline, for the calls its handler makes downstream.
//! - [`grpc_timeout`]: the `grpc-timeout` header, read and written.
//! - [`outcome`]: how a request ended (`completed`, `server_error`, `cancelled`, `rejected`,
//!   `timeout`), including gRPC statuses carried in headers or trailers.
//! - [`secret`]: comparing tokens in constant time.
//! - [`semconv`]: OpenTelemetry semantic-convention names used for every label and log field.
//!
//! # Example
//!
//! A layer that wants to know when a response is really finished wraps the body and reads the
//! outcome when the wrapper reports:
//!
//! ```
//! use bytes::Bytes;
//! use http::{Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use vitals_core::body::{BodyEnd, CompletionBody};
//! use vitals_core::outcome::{Outcome, OutcomeClassifier};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let response = Response::new(Full::new(Bytes::from_static(b"hello")));
//! let classifier = OutcomeClassifier::from_response(&response);
//! let (parts, body) = response.into_parts();
//! let (tx, rx) = std::sync::mpsc::channel();
//! let body = CompletionBody::new(body, move |end: BodyEnd| {
//!     let _ = tx.send(classifier.finish(end));
//! });
//! let bytes = body.collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"hello");
//! assert_eq!(parts.status, StatusCode::OK);
//! assert_eq!(rx.recv().unwrap(), Outcome::Completed);
//! # }
//! ```

mod ascii;
pub mod attempt;
pub mod body;
pub mod deadline;
pub mod findings;
pub mod grpc_timeout;
pub mod identity;
mod macros;
pub mod outcome;
pub mod per_route;
#[cfg(feature = "redis")]
pub mod redis;
pub mod route;
pub mod route_table;
pub mod secret;
pub mod semconv;
pub mod server_timing;
pub mod throttle;
