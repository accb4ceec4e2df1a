//! Who may see the dashboard: loopback peers, or requests carrying the configured bearer
//! token. The page shows internals (routes, SQL fingerprints, trace ids), so nothing else.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::header::AUTHORIZATION;
use axum::http::{Extensions, HeaderMap};

/// Whether the request may be served.
pub(crate) fn allowed(
    extensions: &Extensions,
    headers: &HeaderMap,
    token: Option<&str>,
    trust_loopback: bool,
) -> bool {
    // `to_canonical`: a dual-stack listener sees IPv4 loopback as `::ffff:127.0.0.1`.
    let loopback = trust_loopback
        && extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
    loopback || token.is_some_and(|token| carries(headers, token))
}

/// `Authorization: Bearer <token>` (the scheme in any case), the token compared in constant
/// time.
fn carries(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(AUTHORIZATION).iter().any(|value| {
        let value = value.as_bytes();
        value.len() > 7
            && value[..7].eq_ignore_ascii_case(b"bearer ")
            && constant_time_eq(&value[7..], token.as_bytes())
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_or_the_token() {
        let mut extensions = Extensions::new();
        let mut headers = HeaderMap::new();
        let open = |e: &Extensions, h: &HeaderMap, token, loopback| allowed(e, h, token, loopback);
        assert!(!open(&extensions, &headers, None, true), "no peer known");
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert!(!open(&extensions, &headers, Some("s3cret"), true));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cre"));
        assert!(!open(&extensions, &headers, Some("s3cret"), true));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer s3cret"));
        assert!(open(&extensions, &headers, Some("s3cret"), true));
        assert!(!open(&extensions, &headers, None, true), "no token set");
        let none = HeaderMap::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert!(open(&extensions, &none, None, true));
        assert!(
            !open(&extensions, &none, Some("s3cret"), false),
            "token only"
        );
        extensions.insert(ConnectInfo(SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            1,
        ))));
        assert!(open(&extensions, &none, None, true));
        let mapped = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped();
        extensions.insert(ConnectInfo(SocketAddr::from((mapped, 1))));
        assert!(open(&extensions, &none, None, true), "dual-stack loopback");
    }
}
