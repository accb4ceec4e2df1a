//! One breaker per downstream host, for a client shared by many downstreams (see
//! [`CircuitBreakerLayer::per_host`](super::CircuitBreakerLayer::per_host)).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use http::Uri;
use http::header::{HOST, HeaderMap};

use super::layer::{BreakerHandle, Shared};

/// The breakers of the hosts seen so far, at most `limit` of them; further hosts share one.
#[derive(Debug)]
pub(crate) struct Hosts {
    /// What a new host's breaker is made from: settings, failure rule, findings.
    template: Arc<Shared>,
    limit: usize,
    breakers: RwLock<HashMap<Box<str>, Arc<Shared>>>,
    /// The breaker every host past `limit` shares: memory stays bounded when a client calls
    /// hosts without end (one per tenant, per shard), and those hosts are still protected.
    overflow: Arc<Shared>,
}

/// The name of the breaker shared by the hosts past the limit.
pub(crate) const OTHER_HOSTS: &str = "(other hosts)";

/// The name of the breaker of requests that name no host (a relative URI, no `Host` header).
const NO_HOST: &str = "(no host)";

/// Which downstream a request goes to: its URI's authority without any `user:password@`
/// (credentials are no part of the downstream, and must not reach a log), else its `Host`
/// header; ASCII-lowercased (hosts are case-insensitive), port kept (two services on one host
/// are two downstreams).
pub(crate) fn host_key<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Cow<'a, str> {
    let authority = uri
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| headers.get(HOST).and_then(|value| value.to_str().ok()))
        .map(|authority| authority.rsplit('@').next().unwrap_or(authority).trim())
        .filter(|authority| !authority.is_empty());
    match authority {
        None => Cow::Borrowed(NO_HOST),
        Some(host) if host.bytes().any(|b| b.is_ascii_uppercase()) => {
            Cow::Owned(host.to_ascii_lowercase())
        }
        Some(host) => Cow::Borrowed(host),
    }
}

impl Hosts {
    pub(crate) fn new(template: Arc<Shared>, limit: usize) -> Self {
        let overflow = Arc::new(template.renamed(Arc::from(OTHER_HOSTS)));
        Self {
            template,
            limit,
            breakers: RwLock::new(HashMap::new()),
            overflow,
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
            if breakers.len() == self.limit {
                // Said once: the map stays at the limit from now on.
                tracing::warn!(
                    target: "vitals_client",
                    breaker = &*self.template.name,
                    limit = self.limit,
                    host = %key,
                    "per-host circuit breakers: more hosts than the limit; the others share \
                     one breaker, \"(other hosts)\""
                );
                breakers.insert(Box::from(OTHER_HOSTS), Arc::clone(&self.overflow));
            }
            return Arc::clone(&self.overflow);
        }
        let breaker = Arc::new(self.template.renamed(Arc::from(key.as_ref())));
        breakers.insert(Box::from(key.as_ref()), Arc::clone(&breaker));
        breaker
    }

    /// Handles on every host's breaker so far, by name.
    pub(crate) fn handles(&self) -> Vec<BreakerHandle> {
        let breakers = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        let mut handles: Vec<_> = breakers
            .values()
            .map(|shared| BreakerHandle::of(Arc::clone(shared)))
            .collect();
        handles.sort_by(|a, b| a.name().cmp(b.name()));
        handles
    }

    /// The handle of one host's breaker (by its key: `host` or `host:port`, lowercase), if it
    /// was called.
    pub(crate) fn handle(&self, host: &str) -> Option<BreakerHandle> {
        self.breakers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host.to_ascii_lowercase().as_str())
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
        // Two ports on one host are two downstreams.
        assert_ne!(
            key("http://10.0.0.1:80/", None),
            key("http://10.0.0.1:81/", None)
        );
        // A relative URI: the Host header, else no host.
        assert_eq!(key("/pay", Some("Search.internal")), "search.internal");
        assert_eq!(key("/pay", None), NO_HOST);
        assert_eq!(key("/pay", Some("")), NO_HOST);
    }
}
