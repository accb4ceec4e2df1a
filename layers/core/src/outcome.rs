//! How a request ended, decided the same way by every layer.
//!
//! An [`Outcome`] is known only when the response body ended (see [`crate::body`]): a 200
//! whose client went away mid-body was `cancelled`, not `completed`. [`OutcomeClassifier`]
//! takes what the response head says (status, `grpc-status`, a rejection mark left by the
//! concurrency layer), then what the trailers say, then how the body ended, and answers with
//! one outcome:
//!
//! | in order of precedence                                  | outcome        |
//! |---------------------------------------------------------|----------------|
//! | a layer marked the response [`OutcomeHint::Rejected`]   | `rejected`     |
//! | a layer marked the response [`OutcomeHint::Timeout`]    | `timeout`      |
//! | the body was dropped before its end                     | `cancelled`    |
//! | the body errored, status ≥ 500, or a server gRPC status | `server_error` |
//! | otherwise                                               | `completed`    |
//!
//! ```
//! use http::{Response, StatusCode};
//! use vitals_core::body::BodyEnd;
//! use vitals_core::outcome::{Outcome, OutcomeClassifier};
//!
//! let response = Response::builder().status(StatusCode::BAD_GATEWAY).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
//! let classifier = OutcomeClassifier::from_response(&response);
//! assert_eq!(classifier.finish(BodyEnd::Completed), Outcome::ServerError);
//! assert_eq!(classifier.finish(BodyEnd::Dropped), Outcome::Cancelled);
//! ```

use std::fmt;

use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body::Body;

/// The `grpc-status` header (and trailer) name, built once: looking a header up by `&str`
/// parses the name on every call.
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Whether `headers` describe a gRPC response (`content-type: application/grpc…`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

use crate::body::{BodyEnd, BodyObserver};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The response was produced to its last byte and is not a server error.
    Completed,
    /// A 5xx status, a server-side gRPC status, or a body that failed mid-stream.
    ServerError,
    /// The client went away (or the handler future was dropped) before the end.
    Cancelled,
    /// A limiter refused the request (503 + `Retry-After`).
    Rejected,
    /// A deadline passed before the handler answered.
    Timeout,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Completed,
        Self::ServerError,
        Self::Cancelled,
        Self::Rejected,
        Self::Timeout,
    ];

    /// The stable label: `completed`, `server_error`, `cancelled`, `rejected` or `timeout`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::ServerError => "server_error",
            Self::Cancelled => "cancelled",
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mark a layer leaves in the *response* extensions when it answered instead of the handler,
/// so that outer layers classify the request correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutcomeHint {
    /// Refused by a limiter.
    Rejected,
    /// Answered because a deadline passed.
    Timeout,
}

impl OutcomeHint {
    /// Marks `response`.
    pub fn mark<B>(self, response: &mut Response<B>) {
        response.extensions_mut().insert(self);
    }

    /// The mark on `response`, if any.
    pub fn of<B>(response: &Response<B>) -> Option<Self> {
        response.extensions().get::<Self>().copied()
    }
}

/// A gRPC status code (`0` OK … `16` UNAUTHENTICATED) from a `grpc-status` header or trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcStatus(u8);

impl GrpcStatus {
    /// The `OK` status.
    pub const OK: Self = Self(0);

    const NAMES: [&'static str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    /// The status with numeric `code`, if it is a defined gRPC code (0–16).
    pub fn from_code(code: u8) -> Option<Self> {
        (usize::from(code) < Self::NAMES.len()).then_some(Self(code))
    }

    /// The `grpc-status` in `headers` (response headers of a trailers-only response, or
    /// trailers). Malformed values count as `UNKNOWN`, as gRPC clients treat them.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(GRPC_STATUS)?;
        let parsed = std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.parse::<u8>().ok())
            .and_then(Self::from_code);
        Some(parsed.unwrap_or(Self(2)))
    }

    /// The numeric code.
    pub const fn code(self) -> u8 {
        self.0
    }

    /// The code's name (`OK`, `INTERNAL`, …).
    pub fn name(self) -> &'static str {
        Self::NAMES[usize::from(self.0)]
    }

    /// Whether the code means the server failed, per the OpenTelemetry gRPC conventions:
    /// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    pub fn is_server_error(self) -> bool {
        matches!(self.0, 2 | 4 | 12 | 13 | 14 | 15)
    }
}

impl fmt::Display for GrpcStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Classifies a response into an [`Outcome`]: built from the head, fed trailers, finished with
/// the body's end. Small and `Copy`, so it fits in a body observer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutcomeClassifier {
    status: StatusCode,
    grpc: Option<GrpcStatus>,
    hint: Option<OutcomeHint>,
    /// The response answers a `HEAD`: its body is never sent, so a drop is its end.
    head_request: bool,
}

impl OutcomeClassifier {
    /// What the response head says.
    pub fn from_response<B: Body>(response: &Response<B>) -> Self {
        let headers = response.headers();
        Self {
            status: response.status(),
            // gRPC puts a status in the head only in trailers-only responses, whose body is
            // empty; other responses carry it in trailers. Checking the body first keeps plain
            // HTTP responses free of two header lookups.
            grpc: if response.body().is_end_stream() && is_grpc(headers) {
                GrpcStatus::from_headers(headers)
            } else {
                None
            },
            hint: OutcomeHint::of(response),
            head_request: false,
        }
    }

    /// Takes the request's method into account: the body of a response to `HEAD` is dropped
    /// unsent by the server (hyper does, and axum swaps it for an empty one), which is its
    /// normal end, not a client that went away.
    #[must_use]
    pub fn for_method(mut self, method: &Method) -> Self {
        self.head_request = method == Method::HEAD;
        self
    }

    /// Takes a `grpc-status` from trailers into account (the trailer wins over the head).
    pub fn observe_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(status) = GrpcStatus::from_headers(trailers) {
            self.grpc = Some(status);
        }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The gRPC status seen so far, if any.
    pub fn grpc_status(&self) -> Option<GrpcStatus> {
        self.grpc
    }

    /// The outcome, given how the body ended.
    pub fn finish(&self, end: BodyEnd) -> Outcome {
        match (self.hint, end) {
            (Some(OutcomeHint::Rejected), _) => Outcome::Rejected,
            (Some(OutcomeHint::Timeout), _) => Outcome::Timeout,
            (None, BodyEnd::Dropped) if !self.head_request => Outcome::Cancelled,
            (None, BodyEnd::Errored) => Outcome::ServerError,
            (None, BodyEnd::Completed | BodyEnd::Dropped)
                if self.status.is_server_error()
                    || self.grpc.is_some_and(GrpcStatus::is_server_error) =>
            {
                Outcome::ServerError
            }
            (None, BodyEnd::Completed | BodyEnd::Dropped) => Outcome::Completed,
        }
    }
}

/// A [`BodyObserver`] that classifies the response and hands its [`Outcome`] to a callback,
/// reading a gRPC status from trailers on the way.
///
/// ```
/// use bytes::Bytes;
/// use http::Response;
/// use http_body_util::{BodyExt, Full};
/// use vitals_core::body::CompletionBody;
/// use vitals_core::outcome::{OnOutcome, Outcome};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let response = Response::new(Full::new(Bytes::from_static(b"ok")));
/// let (tx, rx) = std::sync::mpsc::channel();
/// let observer = OnOutcome::new(&response, move |outcome| { let _ = tx.send(outcome); });
/// let body = CompletionBody::new(response.into_body(), observer);
/// body.collect().await.unwrap();
/// assert_eq!(rx.recv().unwrap(), Outcome::Completed);
/// # }
/// ```
#[derive(Debug)]
pub struct OnOutcome<F> {
    classifier: OutcomeClassifier,
    callback: F,
}

impl<F> OnOutcome<F>
where
    F: FnOnce(Outcome),
{
    /// Classifies `response` (its head now, its trailers and end later) for `callback`.
    pub fn new<B: Body>(response: &Response<B>, callback: F) -> Self {
        Self {
            classifier: OutcomeClassifier::from_response(response),
            callback,
        }
    }
}

impl<F> BodyObserver for OnOutcome<F>
where
    F: FnOnce(Outcome),
{
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        self.classifier.observe_trailers(trailers);
    }

    fn on_end(self, end: BodyEnd) {
        (self.callback)(self.classifier.finish(end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderValue;
    use http_body_util::{Empty, Full};

    fn response(status: u16, grpc: Option<&'static str>) -> Response<Empty<Bytes>> {
        let mut builder = Response::builder().status(status);
        if let Some(code) = grpc {
            builder = builder
                .header("content-type", "application/grpc")
                .header("grpc-status", code);
        }
        builder.body(Empty::new()).unwrap()
    }

    #[test]
    fn http_statuses() {
        for (status, expected) in [
            (200, Outcome::Completed),
            (304, Outcome::Completed),
            (404, Outcome::Completed),
            (500, Outcome::ServerError),
            (503, Outcome::ServerError),
        ] {
            let classifier = OutcomeClassifier::from_response(&response(status, None));
            assert_eq!(classifier.finish(BodyEnd::Completed), expected, "{status}");
            assert_eq!(classifier.finish(BodyEnd::Dropped), Outcome::Cancelled);
            assert_eq!(classifier.finish(BodyEnd::Errored), Outcome::ServerError);
        }
    }

    #[test]
    fn hints_win_over_everything() {
        let mut rejected = response(503, None);
        OutcomeHint::Rejected.mark(&mut rejected);
        let mut timed_out = response(504, None);
        OutcomeHint::Timeout.mark(&mut timed_out);
        for end in [BodyEnd::Completed, BodyEnd::Dropped, BodyEnd::Errored] {
            assert_eq!(
                OutcomeClassifier::from_response(&rejected).finish(end),
                Outcome::Rejected
            );
            assert_eq!(
                OutcomeClassifier::from_response(&timed_out).finish(end),
                Outcome::Timeout
            );
        }
    }

    #[test]
    fn grpc_status_from_headers_or_trailers() {
        // Trailers-only response: the status is in the head.
        let head_only = OutcomeClassifier::from_response(&response(200, Some("14")));
        assert_eq!(head_only.grpc_status().unwrap().name(), "UNAVAILABLE");
        assert_eq!(head_only.finish(BodyEnd::Completed), Outcome::ServerError);

        // Client errors are not server errors.
        let not_found = OutcomeClassifier::from_response(&response(200, Some("5")));
        assert_eq!(not_found.finish(BodyEnd::Completed), Outcome::Completed);

        // The usual case: status in trailers.
        let mut streamed = OutcomeClassifier::from_response(&response(200, None));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
        streamed.observe_trailers(&trailers);
        assert_eq!(streamed.finish(BodyEnd::Completed), Outcome::ServerError);
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        streamed.observe_trailers(&trailers);
        assert_eq!(streamed.finish(BodyEnd::Completed), Outcome::Completed);
    }

    #[test]
    fn grpc_status_in_the_head_of_a_non_grpc_response_is_ignored() {
        let plain = Response::builder()
            .header("grpc-status", "13")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let classifier = OutcomeClassifier::from_response(&plain);
        assert_eq!(classifier.grpc_status(), None);
        assert_eq!(classifier.finish(BodyEnd::Completed), Outcome::Completed);
    }

    #[test]
    fn grpc_status_in_the_head_counts_only_for_trailers_only_responses() {
        let with_body = Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "13")
            .body(Full::new(Bytes::from_static(b"message")))
            .unwrap();
        assert_eq!(
            OutcomeClassifier::from_response(&with_body).grpc_status(),
            None
        );
    }

    #[test]
    fn malformed_grpc_status_is_unknown() {
        for bad in ["", "x", "17", "-1", "1000", "٣"] {
            let mut headers = HeaderMap::new();
            headers.insert(
                "grpc-status",
                HeaderValue::from_str(bad).unwrap_or(HeaderValue::from_static("?")),
            );
            assert_eq!(
                GrpcStatus::from_headers(&headers).unwrap().name(),
                "UNKNOWN",
                "{bad:?}"
            );
        }
        assert_eq!(GrpcStatus::from_headers(&HeaderMap::new()), None);
        assert_eq!(GrpcStatus::from_code(16).unwrap().name(), "UNAUTHENTICATED");
        assert_eq!(GrpcStatus::from_code(17), None);
    }

    #[test]
    fn labels_are_stable() {
        let labels: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            labels,
            [
                "completed",
                "server_error",
                "cancelled",
                "rejected",
                "timeout"
            ]
        );
    }

    #[test]
    fn the_dropped_body_of_a_head_response_is_its_normal_end() {
        let ok = response(200, None);
        let get = OutcomeClassifier::from_response(&ok).for_method(&Method::GET);
        assert_eq!(get.finish(BodyEnd::Dropped), Outcome::Cancelled);
        let head = OutcomeClassifier::from_response(&ok).for_method(&Method::HEAD);
        assert_eq!(head.finish(BodyEnd::Dropped), Outcome::Completed);
        let failed =
            OutcomeClassifier::from_response(&response(503, None)).for_method(&Method::HEAD);
        assert_eq!(failed.finish(BodyEnd::Dropped), Outcome::ServerError);
    }
}
