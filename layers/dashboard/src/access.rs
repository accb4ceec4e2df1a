//! Who may see the dashboard: loopback peers, or requests carrying the configured bearer
//! token. The page shows internals (routes, SQL fingerprints, trace ids), so nothing else.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::header::AUTHORIZATION;
use axum::http::{Extensions, HeaderMap};

/// Whether the request may be served.
pub(crate) fn allowed(extensions: &Extensions, headers: &HeaderMap, token: Option<&str>) -> bool {
    let loopback = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    loopback || token.is_some_and(|token| carries(headers, token))
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn carries(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(AUTHORIZATION).iter().any(|value| {
        value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .is_some_and(|given| constant_time_eq(given, token.as_bytes()))
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
        assert!(
            !allowed(&extensions, &headers, None),
            "no peer known: refused"
        );
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert!(!allowed(&extensions, &headers, Some("s3cret")));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cre"));
        assert!(!allowed(&extensions, &headers, Some("s3cret")));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(allowed(&extensions, &headers, Some("s3cret")));
        assert!(!allowed(&extensions, &headers, None), "no token configured");
        extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert!(allowed(&extensions, &HeaderMap::new(), None));
        extensions.insert(ConnectInfo(SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            1,
        ))));
        assert!(allowed(&extensions, &HeaderMap::new(), None));
    }
}
