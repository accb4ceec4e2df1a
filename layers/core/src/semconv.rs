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

use http::uri::Authority;
use http::{HeaderMap, Method, Uri, Version};

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

/// The name the client addressed the server by (the `Host` header or the URI's authority).
pub const SERVER_ADDRESS: &str = "server.address";
/// The port the client addressed, or the scheme's default.
pub const SERVER_PORT: &str = "server.port";
/// `1.0`, `1.1`, `2`, `3`.
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
/// The client's `User-Agent`, as sent (truncated to [`MAX_USER_AGENT_LEN`] bytes).
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";

/// The longest `User-Agent` kept on a span: a client cannot make every span it causes large.
pub const MAX_USER_AGENT_LEN: usize = 256;

/// The server request duration histogram, in seconds.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http.server.request.duration";
/// The number of requests being served.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";
/// The client request duration histogram (one sample per attempt), in seconds; the same
/// recommended buckets as the server's.
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http.client.request.duration";

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

/// `network.protocol.version` of an HTTP version (`1.1`, `2`); `None` for a version `http` does
/// not name.
pub fn protocol_version(version: Version) -> Option<&'static str> {
    match version {
        Version::HTTP_09 => Some("0.9"),
        Version::HTTP_10 => Some("1.0"),
        Version::HTTP_11 => Some("1.1"),
        Version::HTTP_2 => Some("2"),
        Version::HTTP_3 => Some("3"),
        _ => None,
    }
}

/// `server.address` and `server.port` of a request: from the URI's authority (HTTP/2's
/// `:authority`, absolute-form requests), else the `Host` header; the port is the one given,
/// else the scheme's default (80, or 443 for `https`). `None` without a valid authority — a
/// malformed `Host` is never an attribute. Borrowed from the request: nothing is allocated.
pub fn server_address<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<(&'a str, u16)> {
    if uri.authority().is_some() {
        return uri_server_address(uri);
    }
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let (host, port) = split_host(host)?;
    Some((host, port.unwrap_or_else(|| default_port(uri))))
}

/// `server.address` and `server.port` from the URI's authority alone: for an outgoing call,
/// whose URI the caller's code chose — a `Host` header may have come from outside (a proxy
/// forwarding its client's), and a label from outside input is a series per value.
pub fn uri_server_address(uri: &Uri) -> Option<(&str, u16)> {
    // Parsed and checked by `http` already.
    let (host, port) = host_and_port(uri.authority()?);
    (!host.is_empty()).then(|| (host, port.unwrap_or_else(|| default_port(uri))))
}

/// The port a URI's scheme implies: 443 for `https`, else 80.
fn default_port(uri: &Uri) -> u16 {
    if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    }
}

/// An authority's host and port, as `http`'s `Authority::host` and `port_u16` give them (the
/// host after any userinfo, an IPv6 host with its brackets; the number after the last `:`),
/// by scanning its bytes (a second time to the `]` of a bracketed host): those two search the
/// text with `str`'s pattern machinery, ~650 instructions for `payment.internal:8080` where
/// this takes ~280.
///
/// ```
/// use http::uri::Authority;
/// use vitals_core::semconv::host_and_port;
///
/// let authority = Authority::from_static("user@payment.internal:8080");
/// assert_eq!(host_and_port(&authority), ("payment.internal", Some(8080)));
/// assert_eq!(host_and_port(&Authority::from_static("[::1]")), ("[::1]", None));
/// ```
pub fn host_and_port(authority: &Authority) -> (&str, Option<u16>) {
    let authority = authority.as_str();
    let bytes = authority.as_bytes();
    // One pass: where the host starts (after the last `@`), the first `:` after that (where a
    // host not in brackets ends) and the last `:` (before the port).
    let (mut host_start, mut host_colon, mut last_colon) = (0, None, None);
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == b':' {
            host_colon = host_colon.or(Some(at));
            last_colon = Some(at);
        } else if byte == b'@' {
            host_start = at + 1;
            host_colon = None;
        }
    }
    let host_end = if bytes.get(host_start) == Some(&b'[') {
        bytes
            .iter()
            .skip(host_start)
            .position(|&b| b == b']')
            .map_or(bytes.len(), |close| host_start + close + 1)
    } else {
        host_colon.unwrap_or(bytes.len())
    };
    let host = authority.get(host_start..host_end).unwrap_or_default();
    let port = last_colon
        .and_then(|colon| authority.get(colon + 1..))
        .and_then(|digits| digits.parse::<u16>().ok());
    (host, port)
}

/// A `Host` header's `host[:port]` (an IPv6 host in brackets), in one pass; `None` when the
/// host is empty or holds what no host may (RFC 3986 `reg-name`, IPv4, `[IPv6]` — no userinfo),
/// or the port is not a number up to 65535.
fn split_host(value: &str) -> Option<(&str, Option<u16>)> {
    let bytes = value.as_bytes();
    let host_end = if bytes.first() == Some(&b'[') {
        let close = bytes.iter().position(|&b| b == b']')?;
        let inside = bytes.get(1..close)?;
        let valid = !inside.is_empty()
            && inside
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !valid {
            return None;
        }
        close + 1
    } else {
        let mut end = bytes.len();
        for (at, &b) in bytes.iter().enumerate() {
            if b == b':' {
                end = at;
                break;
            }
            if !HOST_CHAR[usize::from(b)] {
                return None;
            }
        }
        if end == 0 {
            return None;
        }
        end
    };
    let port = match bytes.get(host_end) {
        None => None,
        Some(b':') => Some(value.get(host_end + 1..)?.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    Some((value.get(..host_end)?, port))
}

/// RFC 3986 `reg-name` characters (unreserved, percent, sub-delims), by byte.
static HOST_CHAR: [bool; 256] = crate::ascii::alphanumeric_and(b"-._~%!$&'()*+,;=");

/// `user_agent.original` of a request: its `User-Agent` if it is visible ASCII (and spaces),
/// cut at [`MAX_USER_AGENT_LEN`] bytes.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    let agent = headers.get(http::header::USER_AGENT)?.to_str().ok()?;
    Some(&agent[..agent.len().min(MAX_USER_AGENT_LEN)])
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
    fn server_address_port_protocol_and_agent() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "shop.example:8443".parse().unwrap());
        let uri: Uri = "/products/7".parse().unwrap();
        assert_eq!(server_address(&uri, &headers), Some(("shop.example", 8443)));
        headers.insert(http::header::HOST, "shop.example".parse().unwrap());
        assert_eq!(server_address(&uri, &headers), Some(("shop.example", 80)));
        headers.insert(http::header::HOST, "[::1]:3000".parse().unwrap());
        assert_eq!(server_address(&uri, &headers), Some(("[::1]", 3000)));
        // A call's address is its URI's: the Host header is not read.
        assert_eq!(uri_server_address(&uri), None);
        let absolute: Uri = "http://payment.internal/charges".parse().unwrap();
        assert_eq!(
            uri_server_address(&absolute),
            Some(("payment.internal", 80))
        );
        assert_eq!(
            server_address(&absolute, &headers),
            Some(("payment.internal", 80))
        );
        let absolute: Uri = "https://api.example/x".parse().unwrap();
        assert_eq!(
            server_address(&absolute, &headers),
            Some(("api.example", 443))
        );
        // A malformed or missing Host is no attribute.
        for bad in [
            "user@shop.example",
            "bad host",
            "shop.example:99999",
            "shop.example:",
            ":80",
            "[::1",
            "[zz]",
            "a/b",
        ] {
            headers.insert(http::header::HOST, bad.parse().unwrap());
            assert_eq!(server_address(&uri, &headers), None, "{bad}");
        }
        assert!(server_address(&uri, &HeaderMap::new()).is_none());

        assert_eq!(protocol_version(Version::HTTP_11), Some("1.1"));
        assert_eq!(protocol_version(Version::HTTP_2), Some("2"));

        let long = "a".repeat(MAX_USER_AGENT_LEN + 10);
        headers.insert(http::header::USER_AGENT, long.parse().unwrap());
        assert_eq!(user_agent(&headers).map(str::len), Some(MAX_USER_AGENT_LEN));
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(user_agent(&headers), None);
    }

    #[test]
    fn an_authority_splits_as_http_splits_it() {
        let mut compared = 0;
        for text in [
            "payment.internal:8080",
            "payment.internal",
            "payment.internal:",
            "user@api.example",
            "user:secret@api.example:8443",
            "user:secret@api.example",
            "[::1]",
            "[::1]:3000",
            "user@[fe80::1]:80",
            "127.0.0.1:65535",
            "127.0.0.1:0",
            "x",
            "a.b.c.d.e:1",
            "a@b@api.example:81",
            "[x]@api.example",
            "api.example:+80",
            ":80",
            "api.example:99999",
        ] {
            let Ok(authority) = text.parse::<http::uri::Authority>() else {
                continue;
            };
            assert_eq!(
                host_and_port(&authority),
                (authority.host(), authority.port_u16()),
                "{text}"
            );
            compared += 1;
        }
        assert!(compared >= 14, "most authorities above parse ({compared})");
    }

    #[test]
    fn buckets_are_increasing() {
        assert!(DURATION_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }
}
