//! Who may see the dashboard: loopback peers that name a loopback host (or one the operator
//! allowed), or requests carrying the configured bearer token. The page shows internals
//! (routes, SQL fingerprints, trace ids), so nothing else.
//!
//! A loopback peer alone is not enough. A web page the developer visits on `evil.example` can
//! have its DNS name re-pointed to 127.0.0.1 (DNS rebinding): the browser then connects to the
//! dashboard from loopback and lets that page read the answers, as the origin is still
//! `evil.example`. Such a request carries `Host: evil.example`, so a loopback peer must also
//! name a loopback host — `localhost`, a loopback address — or one from the allow-list.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::{Extensions, HeaderMap, Uri};
use vitals_core::secret::constant_time_eq;

/// The access rules of one dashboard.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    pub(crate) token: Option<String>,
    pub(crate) trust_loopback: bool,
    /// Host names (lower-case, no port) a loopback peer may use besides the loopback ones.
    pub(crate) allowed_hosts: Vec<String>,
}

impl Access {
    /// Whether the request may be served.
    pub(crate) fn allows(&self, extensions: &Extensions, headers: &HeaderMap, uri: &Uri) -> bool {
        // `to_canonical`: a dual-stack listener sees IPv4 loopback as `::ffff:127.0.0.1`.
        let loopback_peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
        let local = self.trust_loopback && loopback_peer && self.names_a_local_host(headers, uri);
        local
            || self
                .token
                .as_deref()
                .is_some_and(|token| carries(headers, token))
    }

    /// Every host the request names — the `Host` header and the URI's authority (HTTP/2's
    /// `:authority`, or an absolute-form request line) — is a loopback host or an allowed
    /// one, and it names at least one.
    fn names_a_local_host(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        let mut hosts = headers
            .get_all(HOST)
            .iter()
            .map(|value| value.to_str().ok())
            .chain(uri.authority().map(|authority| Some(authority.as_str())))
            .peekable();
        hosts.peek().is_some()
            && hosts.all(|host| host.is_some_and(|host| self.is_local_host(host)))
    }

    fn is_local_host(&self, authority: &str) -> bool {
        let Some(host) = host_of(authority) else {
            return false;
        };
        is_loopback_name(host)
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }
}

/// The host of `host[:port]` (an authority without user info), IPv6 literals without their
/// brackets; `None` when it is not of that shape.
fn host_of(authority: &str) -> Option<&str> {
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        host
    } else {
        match authority.split_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    (!host.is_empty()).then_some(host)
}

/// A bare DNS host name (letters, digits, `-`, `_`, `.`): what [`with_allowed_host`] takes.
///
/// [`with_allowed_host`]: crate::DashboardBuilder::with_allowed_host
pub(crate) fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_port(port: &str) -> bool {
    port.bytes().all(|b| b.is_ascii_digit()) && port.len() <= 5
}

/// `localhost`, a name under `.localhost` (browsers resolve those to loopback themselves,
/// RFC 6761), or a loopback IP literal. A name DNS could re-point never is.
fn is_loopback_name(host: &str) -> bool {
    let lower_ends_with = |suffix: &str| {
        host.len() >= suffix.len() && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    host.eq_ignore_ascii_case("localhost")
        || (host.is_ascii() && lower_ends_with(".localhost"))
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn access(token: Option<&str>, trust_loopback: bool) -> Access {
        Access {
            token: token.map(str::to_owned),
            trust_loopback,
            allowed_hosts: vec!["vitals.internal".to_owned()],
        }
    }

    fn with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        headers
    }

    #[test]
    fn loopback_or_the_token() {
        let uri = Uri::from_static("/_vitals");
        let mut extensions = Extensions::new();
        let mut headers = with_host("127.0.0.1:3000");
        let open = |e: &Extensions, h: &HeaderMap, token, loopback| {
            access(token, loopback).allows(e, h, &uri)
        };
        assert!(!open(&extensions, &headers, None, true), "no peer known");
        extensions.insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert!(!open(&extensions, &headers, Some("s3cret"), true));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cre"));
        assert!(!open(&extensions, &headers, Some("s3cret"), true));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer s3cret"));
        assert!(open(&extensions, &headers, Some("s3cret"), true));
        assert!(!open(&extensions, &headers, None, true), "no token set");
        let none = with_host("localhost:3000");
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

    #[test]
    fn a_loopback_peer_must_name_a_loopback_or_allowed_host() {
        let mut extensions = Extensions::new();
        extensions.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        let rules = access(None, true);
        let root = Uri::from_static("/_vitals");
        for host in [
            "localhost",
            "LOCALHOST:3000",
            "127.0.0.1",
            "127.0.0.1:3000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:3000",
            "shop.localhost:3000",
            "vitals.internal",
            "Vitals.Internal:8080",
        ] {
            assert!(rules.allows(&extensions, &with_host(host), &root), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:3000",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "evil.example@localhost",
            "localhost:3000:1",
            "localhost:port",
            "[::1",
            "[::2]:80",
            "10.0.0.1",
            "",
            "vitals.internal.evil.example",
        ] {
            assert!(
                !rules.allows(&extensions, &with_host(host), &root),
                "{host:?}"
            );
        }
        assert!(
            !rules.allows(&extensions, &HeaderMap::new(), &root),
            "no host at all"
        );
        // HTTP/2 names its host in the URI: that must be local too, as must every Host line.
        let local_authority = Uri::from_static("http://localhost:3000/_vitals");
        let evil_authority = Uri::from_static("http://evil.example/_vitals");
        assert!(rules.allows(&extensions, &HeaderMap::new(), &local_authority));
        assert!(!rules.allows(&extensions, &HeaderMap::new(), &evil_authority));
        assert!(!rules.allows(&extensions, &with_host("localhost"), &evil_authority));
        let mut two = with_host("localhost");
        two.append(HOST, HeaderValue::from_static("evil.example"));
        assert!(!rules.allows(&extensions, &two, &root));
        // The token still opens it, whatever the host.
        let mut headers = with_host("evil.example");
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(access(Some("s3cret"), true).allows(&extensions, &headers, &root));
    }
}
