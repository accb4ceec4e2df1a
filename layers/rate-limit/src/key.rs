//! Whose quota a request spends: a [`Key`] rule reads it from the request.
//!
//! Keys are kept as 128-bit digests (xxh3), never as the values themselves: an API key does
//! not sit in memory in the clear, and every entry of the store has the same small size.
//!
//! ```
//! use http::{HeaderName, Request};
//! use vitals_rate_limit::{ClientIp, Key};
//!
//! // By API key when the request has one, else by client address.
//! let keys = [Key::header(HeaderName::from_static("x-api-key")), Key::client_ip(ClientIp::new())];
//! let request = Request::builder().header("x-api-key", "k-123").body(()).unwrap();
//! assert!(keys[0].digest(&request).is_some());
//! // No peer address on a request built in a test: the address rule finds no key.
//! assert!(keys[1].digest(&request).is_none());
//! ```

use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{Extensions, HeaderName, Request};
use vitals_core::route::RequestHead;
use xxhash_rust::xxh3::{Xxh3, xxh3_128_with_seed};

use crate::client_ip::ClientIp;

/// The peer address of a connection, for servers other than axum (which records it as
/// `ConnectInfo<SocketAddr>`, read with the `axum` feature): insert it into the request's
/// extensions before the rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub IpAddr);

/// A rule that finds a request's key. Requests for which a route's rules find no key share
/// that route's unkeyed quota.
#[derive(Clone)]
pub struct Key(Repr);

type Custom = Arc<dyn Fn(RequestHead<'_>) -> Option<String> + Send + Sync>;
type FromExtension = Arc<dyn Fn(&Extensions) -> Option<u128> + Send + Sync>;

#[derive(Clone)]
enum Repr {
    ClientIp(ClientIp),
    Header(HeaderName),
    Extension(&'static str, FromExtension),
    Custom(Custom),
}

// Each kind hashes with its own seed: an API key equal to an address's text is another key.
const SEED_ADDRESS: u64 = 1;
const SEED_HEADER: u64 = 2;
const SEED_EXTENSION: u64 = 3;
const SEED_CUSTOM: u64 = 4;

impl Key {
    /// The client's address by `rule` (see [`ClientIp`]: the peer, or behind trusted
    /// proxies the rightmost address they did not write).
    pub fn client_ip(rule: ClientIp) -> Self {
        Self(Repr::ClientIp(rule))
    }

    /// The value of a request header, such as `X-Api-Key`. An empty or missing header is no
    /// key.
    ///
    /// The value is whatever the client sent: a client that makes up a new value for each
    /// request gets a new quota each time. Use it only for a header an earlier layer has
    /// checked, or key by the authenticated principal ([`Key::extension`]), or accept only the
    /// keys you issued with [`Key::custom`] (an unknown value then falls through to the next
    /// rule, such as the client address).
    pub fn header(name: HeaderName) -> Self {
        Self(Repr::Header(name))
    }

    /// A value a layer before this one left in the request's extensions: the authenticated
    /// principal (a user id, a tenant). Hashed with `Hash`; a request without it has no key.
    ///
    /// ```
    /// use http::Request;
    /// use vitals_rate_limit::Key;
    ///
    /// #[derive(Clone, Hash)]
    /// struct UserId(u64);
    ///
    /// let key = Key::extension::<UserId>();
    /// let mut request = Request::new(());
    /// assert!(key.digest(&request).is_none());
    /// request.extensions_mut().insert(UserId(7));
    /// assert!(key.digest(&request).is_some());
    /// ```
    pub fn extension<T: Hash + Send + Sync + 'static>() -> Self {
        let read: FromExtension = Arc::new(|extensions: &Extensions| {
            extensions.get::<T>().map(|value| {
                let mut hasher = Xxh3::with_seed(SEED_EXTENSION);
                value.hash(&mut hasher);
                hasher.digest128()
            })
        });
        Self(Repr::Extension(std::any::type_name::<T>(), read))
    }

    /// Any rule of your own over the request head; `None` is no key.
    pub fn custom(
        find: impl Fn(RequestHead<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self(Repr::Custom(Arc::new(find)))
    }

    /// The request's key digest under this rule, if it has one.
    pub fn digest<B>(&self, request: &Request<B>) -> Option<u128> {
        match &self.0 {
            Repr::ClientIp(rule) => {
                let address = rule.key(request.headers(), peer_address(request.extensions()))?;
                Some(match address {
                    IpAddr::V4(v4) => xxh3_128_with_seed(&v4.octets(), SEED_ADDRESS),
                    IpAddr::V6(v6) => xxh3_128_with_seed(&v6.octets(), SEED_ADDRESS),
                })
            }
            Repr::Header(name) => {
                let value = request.headers().get(name)?.as_bytes();
                (!value.is_empty()).then(|| xxh3_128_with_seed(value, SEED_HEADER))
            }
            Repr::Extension(_, read) => read(request.extensions()),
            Repr::Custom(find) => {
                let value = find(RequestHead::of(request))?;
                Some(xxh3_128_with_seed(value.as_bytes(), SEED_CUSTOM))
            }
        }
    }
}

impl Key {
    /// The request's key as text, for a limit that shows keys in its findings: the client's
    /// address (IPv6 cut to its prefix), the header's value, the custom rule's value. An
    /// extension's value is not text: `None`, and the finding shows its hash.
    pub(crate) fn describe<B>(&self, request: &Request<B>) -> Option<String> {
        match &self.0 {
            Repr::ClientIp(rule) => rule
                .key(request.headers(), peer_address(request.extensions()))
                .map(|address| address.to_string()),
            Repr::Header(name) => request
                .headers()
                .get(name)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
            Repr::Extension(..) => None,
            Repr::Custom(find) => find(RequestHead::of(request)),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::ClientIp(rule) => f.debug_tuple("Key::client_ip").field(rule).finish(),
            Repr::Header(name) => f.debug_tuple("Key::header").field(name).finish(),
            Repr::Extension(name, _) => f.debug_tuple("Key::extension").field(name).finish(),
            Repr::Custom(_) => f.write_str("Key::custom(..)"),
        }
    }
}

/// The address of the peer that sent the request: [`PeerAddr`], or axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`).
pub(crate) fn peer_address(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(address)) = extensions.get::<PeerAddr>() {
        return Some(*address);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(address)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(address.ip());
    }
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder();
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(()).expect("test request");
        request
            .extensions_mut()
            .insert(PeerAddr(peer.parse().expect("test address")));
        request
    }

    #[test]
    fn kinds_do_not_collide() {
        let by_header = Key::header(HeaderName::from_static("x-api-key"));
        let by_custom = Key::custom(|head| {
            head.headers
                .get("x-api-key")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        });
        let request = request("10.0.0.1", &[("x-api-key", "abc")]);
        assert_ne!(by_header.digest(&request), by_custom.digest(&request));
        assert!(by_header.digest(&request).is_some());
    }

    #[test]
    fn empty_headers_are_no_key() {
        let key = Key::header(HeaderName::from_static("x-api-key"));
        assert_eq!(key.digest(&request("10.0.0.1", &[("x-api-key", "")])), None);
        assert_eq!(key.digest(&request("10.0.0.1", &[])), None);
    }

    #[test]
    fn addresses_from_the_peer() {
        let key = Key::client_ip(ClientIp::new());
        let a = key.digest(&request("2001:db8::1", &[("x-forwarded-for", "1.1.1.1")]));
        let b = key.digest(&request("2001:db8::2", &[]));
        let c = key.digest(&request("192.0.2.1", &[]));
        assert_eq!(a, b, "one /64, one key; the header is not trusted");
        assert_ne!(a, c);
        let mut bare = Request::new(());
        assert_eq!(key.digest(&bare), None);
        bare.extensions_mut()
            .insert(SocketAddr::from(([192, 0, 2, 1], 5000)));
        assert_eq!(key.digest(&bare), c);
    }
}
