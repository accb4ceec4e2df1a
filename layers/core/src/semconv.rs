//! OpenTelemetry semantic-convention names, used for every metric label and log field.
//!
//! Using the same names everywhere lets dashboards and queries work across layers and across
//! services. Prometheus does not allow dots: [`prometheus_name`] renders `http.route` as
//! `http_route`.
//!
//! ```
//! use http::Method;
//! use vitals_core::semconv::{method_label, prometheus_name, HTTP_ROUTE};
//!
//! assert_eq!(method_label(&Method::GET), "GET");
//! assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
//! assert_eq!(prometheus_name(HTTP_ROUTE), "http_route");
//! ```

use std::borrow::Cow;

use http::Method;

/// The matched route template (`/products/{id}`), never the raw path.
pub const HTTP_ROUTE: &str = "http.route";
/// The request method, one of the known methods or [`OTHER_METHOD`].
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// The response status code.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// `http` or `https`.
pub const URL_SCHEME: &str = "url.scheme";
/// The request path (spans only: unbounded, never a metric label).
pub const URL_PATH: &str = "url.path";
/// The class of error that ended the request (a status code, or an outcome such as `timeout`).
pub const ERROR_TYPE: &str = "error.type";
/// The numeric gRPC status code.
pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";
/// How the request ended (see [`crate::outcome::Outcome`]). Vitals' own attribute.
pub const VITALS_OUTCOME: &str = "vitals.outcome";

/// The server request duration histogram, in seconds.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http.server.request.duration";
/// The number of requests being served.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";

/// The bucket boundaries OpenTelemetry recommends for [`HTTP_SERVER_REQUEST_DURATION`], in
/// seconds. (SDK defaults are millisecond-scale: set these explicitly.)
pub const DURATION_BUCKETS_SECONDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The label for methods outside the known set, so clients cannot invent label values.
pub const OTHER_METHOD: &str = "_OTHER";

/// The `http.request.method` label: the method for the nine standard methods, else
/// [`OTHER_METHOD`].
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => OTHER_METHOD,
    }
}

/// A semantic-convention name as Prometheus writes it: dots become underscores.
pub fn prometheus_name(name: &str) -> Cow<'_, str> {
    if name.contains('.') {
        Cow::Owned(name.replace('.', "_"))
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_keep_their_name_and_others_fold() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::CONNECT,
            Method::OPTIONS,
            Method::TRACE,
            Method::PATCH,
        ] {
            assert_eq!(method_label(&method), method.as_str());
        }
        for other in ["get", "PROPFIND", "X"] {
            assert_eq!(
                method_label(&Method::from_bytes(other.as_bytes()).unwrap()),
                OTHER_METHOD
            );
        }
    }

    #[test]
    fn prometheus_names() {
        assert_eq!(
            prometheus_name(HTTP_SERVER_REQUEST_DURATION),
            "http_server_request_duration"
        );
        assert!(matches!(prometheus_name("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn buckets_are_increasing() {
        assert!(DURATION_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }
}
