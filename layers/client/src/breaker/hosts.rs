//! One breaker per downstream host, for a client shared by many downstreams (see
//! [`CircuitBreakerLayer::per_host`](super::CircuitBreakerLayer::per_host)).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use http::Uri;
use http::header::{HOST, HeaderMap};
use http::uri::Authority;

use super::layer::{BreakerHandle, Shared};

/// The breakers of the hosts seen so far, at most `limit` of them; further hosts share one.
#[derive(Debug)]
pub(crate) struct Hosts {
    /// What a new host's breaker is made from: settings, failure rule, findings.
    template: Arc<Shared>,
    limit: usize,
    breakers: RwLock<HashMap<Box<str>, Arc<Shared>>>,
    /// The breaker every host past `limit` shares: memory stays bounded when a client calls
    /// hosts without end (one per tenant, per shard), and those hosts are still protected. Kept
    /// out of the map, so no host can take its name.
    overflow: Arc<Shared>,
    /// Whether a host went to `overflow` yet (said once in a WARN, then listed by `handles`).
    overflowed: AtomicBool,
}

/// The name of the breaker shared by the hosts past the limit.
pub(crate) const OTHER_HOSTS: &str = "(other hosts)";

/// The key of requests that name no host (a relative URI without a valid `Host` header). No
/// authority can be spelled so.
const NO_HOST: &str = "(no host)";

/// The port a scheme implies.
fn default_port(scheme: Option<&str>) -> Option<u16> {
    match scheme {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    }
}

/// `authority` as a downstream's key: its host lowercased without a trailing dot (hosts are
/// case-insensitive, `example.com.` is `example.com`), and its port unless it is the scheme's
/// default (`https://api:443` is `https://api`). Credentials (`user:password@`) are no part of
/// it: they are not the downstream, and must not reach a log. Borrowed when already in that
/// form — the common case costs no allocation.
fn authority_key<'a>(authority: &'a Authority, scheme: Option<&str>) -> Cow<'a, str> {
    let (host, spelled_port) = vitals_core::semconv::host_and_port(authority);
    let port = spelled_port.filter(|port| Some(*port) != default_port(scheme));
    let spelled = authority.as_str();
    let without_credentials = spelled.rsplit('@').next().unwrap_or(spelled);
    let canonical = !host.ends_with('.')
        && !without_credentials.bytes().any(|b| b.is_ascii_uppercase())
        && port.is_some() == spelled_port.is_some();
    if canonical {
        return Cow::Borrowed(without_credentials);
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    Cow::Owned(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// Which downstream a request goes to: its URI's authority (see `authority_key`), else its
/// `Host` header when that is a valid authority, else no host.
pub(crate) fn host_key<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Cow<'a, str> {
    if let Some(authority) = uri.authority() {
        return authority_key(authority, uri.scheme_str());
    }
    headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Authority>().ok())
        .map_or(Cow::Borrowed(NO_HOST), |authority| {
            Cow::Owned(authority_key(&authority, None).into_owned())
        })
}

impl Hosts {
    pub(crate) fn new(template: Arc<Shared>, limit: usize) -> Self {
        let overflow = Arc::new(template.renamed(Arc::from(OTHER_HOSTS)));
        Self {
            template,
            limit,
            breakers: RwLock::new(HashMap::new()),
            overflow,
            overflowed: AtomicBool::new(false),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    pub(crate) fn template(&self) -> &Arc<Shared> {
        &self.template
    }

    /// The breaker of the host a request goes to, made on its first call.
    pub(crate) fn breaker(&self, uri: &Uri, headers: &HeaderMap) -> Arc<Shared> {
        let key = host_key(uri, headers);
        if let Some(breaker) = self
            .breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.as_ref())
        {
            return Arc::clone(breaker);
        }
        let mut breakers = self
            .breakers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(breaker) = breakers.get(key.as_ref()) {
            return Arc::clone(breaker);
        }
        if breakers.len() >= self.limit {
            drop(breakers);
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "vitals_client",
                    breaker = &*self.template.name,
                    limit = self.limit,
                    host = %key,
                    "per-host circuit breakers: more hosts than the limit; the others share \
                     one breaker, \"(other hosts)\""
                );
            }
            return Arc::clone(&self.overflow);
        }
        let breaker = Arc::new(self.template.renamed(Arc::from(key.as_ref())));
        breakers.insert(Box::from(key.as_ref()), Arc::clone(&breaker));
        breaker
    }

    /// Handles on every host's breaker so far, by name, and the shared one once used.
    pub(crate) fn handles(&self) -> Vec<BreakerHandle> {
        let mut handles: Vec<_> = self
            .breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|shared| BreakerHandle::of(Arc::clone(shared)))
            .collect();
        handles.sort_by(|a, b| a.name().cmp(b.name()));
        if self.overflowed.load(Ordering::Relaxed) {
            handles.push(BreakerHandle::of(Arc::clone(&self.overflow)));
        }
        handles
    }

    /// The handle of the breaker that calls to `host` (`host` or `host:port`, as in a URI)
    /// go through, once one was made for it: its own, or the shared one past the limit.
    pub(crate) fn handle(&self, host: &str) -> Option<BreakerHandle> {
        let authority = host.parse::<Authority>().ok()?;
        let key = authority_key(&authority, None);
        let breakers = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        breakers
            .get(key.as_ref())
            .map(|shared| BreakerHandle::of(Arc::clone(shared)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uri: &str, host: Option<&str>) -> String {
        let uri: Uri = uri.parse().unwrap_or_default();
        let mut headers = HeaderMap::new();
        if let Some(host) = host.and_then(|h| h.parse().ok()) {
            headers.insert(HOST, host);
        }
        host_key(&uri, &headers).into_owned()
    }

    #[test]
    fn the_key_is_the_authority_without_credentials_lowercased() {
        assert_eq!(key("http://api.example.com/pay", None), "api.example.com");
        assert_eq!(
            key("http://API.Example.com:8443/", None),
            "api.example.com:8443"
        );
        assert_eq!(
            key("https://user:secret@api.example.com/x", None),
            "api.example.com"
        );
        // A trailing dot names the same host; a scheme's default port is no port.
        assert_eq!(key("http://api.example.com./", None), "api.example.com");
        assert_eq!(key("https://api.example.com:443/", None), "api.example.com");
        assert_eq!(key("http://api.example.com:80/", None), "api.example.com");
        assert_eq!(
            key("http://api.example.com:443/", None),
            "api.example.com:443"
        );
        // IPv6 literals keep their brackets; two ports on one host are two downstreams.
        assert_eq!(key("http://[::1]:8080/", None), "[::1]:8080");
        assert_eq!(key("http://[::1]/", None), "[::1]");
        assert_ne!(
            key("http://10.0.0.1:81/", None),
            key("http://10.0.0.1:82/", None)
        );
        // A relative URI: the Host header when it is an authority, else no host — so no
        // header can spell a name the layer gives its own breakers.
        assert_eq!(
            key("/pay", Some("Search.internal:9000")),
            "search.internal:9000"
        );
        assert_eq!(key("/pay", None), NO_HOST);
        assert_eq!(key("/pay", Some("")), NO_HOST);
        assert_eq!(key("/pay", Some("(other hosts)")), NO_HOST);
        assert_eq!(key("/pay", Some("a b")), NO_HOST);
    }

    #[test]
    fn the_common_key_borrows() {
        let uri: Uri = "http://api.example.com:8443/pay"
            .parse()
            .unwrap_or_default();
        assert!(matches!(
            host_key(&uri, &HeaderMap::new()),
            Cow::Borrowed(_)
        ));
    }
}
