//! Who the client is, by address, behind proxies you trust and no others.
//!
//! A proxy appends the address it received a request from to `X-Forwarded-For` (or adds a
//! `for=` element to `Forwarded`, RFC 7239). Everything to the left of what your own proxies
//! appended was written by the client and proves nothing: a client can send
//! `X-Forwarded-For: 1.2.3.4` and, read from the left, be anyone it likes. So the rule reads
//! from the **right**: starting at the peer that connected, each hop whose address is in a
//! trusted range is a proxy of yours and passes the question one step left; the first address
//! that is not trusted is the client. With no trusted ranges (the default — loopback is not
//! trusted either), the client is the peer and the headers are not read at all.
//!
//! IPv6 clients are keyed by their network prefix (default /64): one host holds a whole /64
//! and could otherwise rotate addresses to get a fresh quota each time.
//!
//! ```
//! use std::net::IpAddr;
//! use http::HeaderMap;
//! use vitals_rate_limit::ClientIp;
//!
//! let rule = ClientIp::new().with_trusted_proxies(["10.0.0.0/8"])?;
//! let mut headers = HeaderMap::new();
//! // The client wrote the first address; our proxy at 10.0.0.2 appended the second.
//! headers.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9".parse()?);
//! let peer: IpAddr = "10.0.0.2".parse()?;
//! assert_eq!(rule.client(&headers, Some(peer)), Some("203.0.113.9".parse()?));
//! // From a peer we do not trust, the header is not believed.
//! let stranger: IpAddr = "198.51.100.7".parse()?;
//! assert_eq!(rule.client(&headers, Some(stranger)), Some(stranger));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

/// The default IPv6 prefix a client is keyed by.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Which header your proxies write the client's address to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProxyHeader {
    XForwardedFor,
    Forwarded,
}

/// The client-address rule: the peer, or behind trusted proxies the rightmost address they did
/// not write themselves.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
    header: ProxyHeader,
    ipv6_prefix: u8,
}

/// A trusted-proxy range that is not a CIDR (`10.0.0.0/8`) or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidProxy(pub String);

impl fmt::Display for InvalidProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "trusted proxy {:?}: expected an address or a CIDR range such as 10.0.0.0/8",
            self.0
        )
    }
}

impl std::error::Error for InvalidProxy {}

impl Default for ClientIp {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientIp {
    /// No proxy trusted: the client is the peer that connected. IPv6 by /64.
    pub fn new() -> Self {
        Self {
            trusted: Arc::from(Vec::new()),
            header: ProxyHeader::XForwardedFor,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// Trusts these ranges (`"10.0.0.0/8"`, `"fd00::/8"`, or single addresses) as your own
    /// proxies, replacing any given before.
    pub fn with_trusted_proxies<I, S>(mut self, ranges: I) -> Result<Self, InvalidProxy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut trusted = Vec::new();
        for range in ranges {
            let range = range.as_ref().trim();
            let net = range
                .parse::<IpNet>()
                .or_else(|_| range.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| InvalidProxy(range.to_owned()))?;
            trusted.push(net.trunc());
        }
        self.trusted = Arc::from(trusted);
        Ok(self)
    }

    /// Reads the RFC 7239 `Forwarded` header (`for=` elements) instead of `X-Forwarded-For`.
    /// Read the one your proxies write: the other is the client's to forge.
    #[must_use]
    pub fn with_forwarded_header(mut self) -> Self {
        self.header = ProxyHeader::Forwarded;
        self
    }

    /// Keys IPv6 clients by this prefix length (0 to 128; default 64). Larger values are
    /// taken as 128.
    #[must_use]
    pub fn with_ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The client's address (IPv6 not yet cut to its prefix): `peer` when no proxy is trusted
    /// or the peer is not one; else the rightmost forwarded address that is not a trusted
    /// proxy. `None` without a peer address.
    pub fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let mut found = None;
        let mut visit = |address: Option<IpAddr>| {
            if found.is_some() {
                return;
            }
            match address {
                Some(address) if self.is_trusted(address) => client = address,
                Some(address) => found = Some(address),
                // A hop we cannot read (`unknown`, an obfuscated name, garbage): the proxy
                // that passed it on is the last one we can vouch for.
                None => found = Some(client),
            }
        };
        match self.header {
            ProxyHeader::XForwardedFor => each_from_right(
                headers,
                &HeaderName::from_static("x-forwarded-for"),
                &mut |item| visit(parse_address(item)),
            ),
            ProxyHeader::Forwarded => each_from_right(headers, &FORWARDED, &mut |element| {
                visit(forwarded_for(element).and_then(parse_address));
            }),
        }
        // Every hop trusted: the farthest one is the best we know.
        Some(found.unwrap_or(client))
    }

    /// The client's key: its address, IPv6 cut to the configured prefix (an IPv4-mapped IPv6
    /// address counts as the IPv4 address).
    pub fn key(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        self.client(headers, peer).map(|address| match address {
            IpAddr::V4(_) => address,
            IpAddr::V6(v6) => IpAddr::V6(prefix_of(v6, self.ipv6_prefix)),
        })
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&address))
    }

    /// Whether any proxy is trusted (so the headers are read).
    pub fn trusts_proxies(&self) -> bool {
        !self.trusted.is_empty()
    }
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted", &self.trusted)
            .field("header", &self.header)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .finish()
    }
}

fn prefix_of(address: Ipv6Addr, bits: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(u32::from(128 - bits)).unwrap_or(0);
    Ipv6Addr::from(u128::from(address) & mask)
}

/// Calls `visit` with each comma-separated member of every `name` line, last line and last
/// member first. Lines that are not visible ASCII count as one unreadable member.
fn each_from_right(headers: &HeaderMap, name: &HeaderName, visit: &mut dyn FnMut(&str)) {
    for line in headers.get_all(name).iter().rev() {
        let Ok(line) = line.to_str() else {
            visit("");
            return;
        };
        for member in line.rsplit(',') {
            visit(member.trim());
        }
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.60;proto=http`), unquoted.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:443`.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| IpAddr::V6(v6).to_canonical());
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
                value.parse().expect("test header value"),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let rule = ClientIp::new();
        let spoofed = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(
            rule.client(&spoofed, Some(ip("127.0.0.1"))),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(rule.client(&spoofed, None), None);
    }

    #[test]
    fn a_spoofed_leftmost_value_changes_nothing() {
        let rule = ClientIp::new()
            .with_trusted_proxies(["10.0.0.0/8", "192.168.1.1"])
            .expect("valid ranges");
        let peer = Some(ip("10.1.2.3"));
        let honest = headers("x-forwarded-for", &["203.0.113.5"]);
        let spoofed = headers("x-forwarded-for", &["1.2.3.4, 203.0.113.5"]);
        assert_eq!(rule.client(&honest, peer), Some(ip("203.0.113.5")));
        assert_eq!(rule.client(&spoofed, peer), Some(ip("203.0.113.5")));
        // Two of our proxies in a row, the header split over two lines.
        let chain = headers("x-forwarded-for", &["1.2.3.4, 203.0.113.5", "192.168.1.1"]);
        assert_eq!(rule.client(&chain, peer), Some(ip("203.0.113.5")));
        // Only our proxies: the farthest one.
        let ours = headers("x-forwarded-for", &["192.168.1.1"]);
        assert_eq!(rule.client(&ours, peer), Some(ip("192.168.1.1")));
        // No header: the proxy itself.
        assert_eq!(rule.client(&HeaderMap::new(), peer), Some(ip("10.1.2.3")));
        // Garbage next to us: the proxy that passed it on.
        let garbage = headers("x-forwarded-for", &["1.2.3.4, unknown"]);
        assert_eq!(rule.client(&garbage, peer), Some(ip("10.1.2.3")));
    }

    #[test]
    fn forwarded_elements() {
        let rule = ClientIp::new()
            .with_trusted_proxies(["10.0.0.0/8"])
            .expect("valid range")
            .with_forwarded_header();
        let peer = Some(ip("10.0.0.1"));
        let value = headers(
            "forwarded",
            &[r#"for=1.2.3.4, for="[2001:db8:cafe::17]:4711";proto=https, For=10.9.9.9"#],
        );
        assert_eq!(rule.client(&value, peer), Some(ip("2001:db8:cafe::17")));
        let quoted_v4 = headers("forwarded", &[r#"for="198.51.100.17:80""#]);
        assert_eq!(rule.client(&quoted_v4, peer), Some(ip("198.51.100.17")));
        // X-Forwarded-For is the client's to forge when the proxies write Forwarded.
        let other = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(rule.client(&other, peer), Some(ip("10.0.0.1")));
    }

    #[test]
    fn ipv6_clients_share_their_prefix() {
        let rule = ClientIp::new();
        let a = rule.key(&HeaderMap::new(), Some(ip("2001:db8:1:2:aaaa::1")));
        let b = rule.key(&HeaderMap::new(), Some(ip("2001:db8:1:2:bbbb::9")));
        let c = rule.key(&HeaderMap::new(), Some(ip("2001:db8:1:3::1")));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let exact = ClientIp::new().with_ipv6_prefix(200);
        assert_ne!(
            exact.key(&HeaderMap::new(), Some(ip("2001:db8::1"))),
            exact.key(&HeaderMap::new(), Some(ip("2001:db8::2")))
        );
        let everyone = ClientIp::new().with_ipv6_prefix(0);
        assert_eq!(
            everyone.key(&HeaderMap::new(), Some(ip("2001:db8::1"))),
            Some(ip("::"))
        );
        // An IPv4-mapped peer is its IPv4 address.
        assert_eq!(
            rule.key(&HeaderMap::new(), Some(ip("::ffff:192.0.2.1"))),
            Some(ip("192.0.2.1"))
        );
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert_eq!(
            ClientIp::new().with_trusted_proxies(["10.0.0.0/33"]),
            Err(InvalidProxy("10.0.0.0/33".to_owned()))
        );
        assert!(ClientIp::new().with_trusted_proxies(["nonsense"]).is_err());
        assert!(ClientIp::new().with_trusted_proxies([" ::1 "]).is_ok());
    }

    #[test]
    fn addresses_as_proxies_write_them() {
        assert_eq!(parse_address("1.2.3.4:8080"), Some(ip("1.2.3.4")));
        assert_eq!(parse_address("[::1]:8080"), Some(ip("::1")));
        assert_eq!(parse_address("[::1]"), Some(ip("::1")));
        assert_eq!(parse_address("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_address("_hidden"), None);
        assert_eq!(parse_address("1.2.3.4:99999"), None);
        assert_eq!(parse_address(""), None);
    }
}
