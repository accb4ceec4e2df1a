//! `Cache-Status` (RFC 9211): what the cache did for a response, on every response of a cached
//! route.

use http::{HeaderName, HeaderValue, StatusCode};

/// The `Cache-Status` header.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why a request went to the handler (RFC 9211 §2.2's `fwd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// The request was not to be answered from the cache (`no-store`, a cookie, the route's
    /// key function).
    Bypass,
    /// An unsafe method: it went through, and invalidated what was stored for its target.
    Method,
    /// Nothing stored for the target.
    UriMiss,
    /// Something stored for the target, but not for this request's `Vary` values.
    VaryMiss,
    /// Not stored (a wait on another request's fill ended without a stored response).
    Miss,
    /// The request asked for a fresh answer (`no-cache`, `max-age`, `min-fresh`).
    Request,
    /// A stored response was stale and was revalidated or replaced.
    Stale,
}

impl Forward {
    /// The parameter's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Miss => "miss",
            Self::Request => "request",
            Self::Stale => "stale",
        }
    }
}

/// One `Cache-Status` member for this cache, `name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from a stored response; `ttl` is its freshness left (negative when stale).
    Hit {
        /// Seconds of freshness left.
        ttl: i64,
    },
    /// Went to the handler.
    Forwarded {
        /// Why.
        fwd: Forward,
        /// The handler's status.
        status: Option<StatusCode>,
        /// The response is being stored.
        stored: bool,
    },
    /// Waited for another request's fill and answered from it.
    Collapsed,
}

impl CacheStatus {
    /// The header value, `name; hit; ttl=12` and the like.
    pub fn render(self, name: &str) -> HeaderValue {
        // Written piece by piece, not through `format!`: one of these per cached response.
        let mut value = String::with_capacity(name.len() + 40);
        value.push_str(name);
        match self {
            Self::Hit { ttl } => {
                value.push_str("; hit; ttl=");
                value.push_str(itoa::Buffer::new().format(ttl));
            }
            Self::Forwarded {
                fwd,
                status,
                stored,
            } => {
                value.push_str("; fwd=");
                value.push_str(fwd.as_str());
                if let Some(status) = status {
                    value.push_str("; fwd-status=");
                    value.push_str(status.as_str());
                }
                if stored {
                    value.push_str("; stored");
                }
            }
            Self::Collapsed => value.push_str("; fwd=miss; collapsed"),
        }
        // The name is checked to be a structured-field token when the layer is built.
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("vitals"))
    }

    /// The word for the shared `Server-Timing` entry.
    pub const fn word(self) -> &'static str {
        match self {
            Self::Hit { ttl } if ttl < 0 => "stale",
            Self::Hit { .. } => "hit",
            Self::Forwarded {
                fwd: Forward::Bypass | Forward::Method,
                ..
            } => "bypass",
            Self::Forwarded { .. } => "miss",
            Self::Collapsed => "collapsed",
        }
    }
}

/// Whether `name` can name the cache in `Cache-Status` (a structured-field token).
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'*')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_kind() {
        assert_eq!(
            CacheStatus::Hit { ttl: 12 }.render("vitals"),
            "vitals; hit; ttl=12"
        );
        assert_eq!(
            CacheStatus::Hit { ttl: -3 }.render("vitals"),
            "vitals; hit; ttl=-3"
        );
        let stored = CacheStatus::Forwarded {
            fwd: Forward::UriMiss,
            status: Some(StatusCode::OK),
            stored: true,
        };
        assert_eq!(
            stored.render("vitals"),
            "vitals; fwd=uri-miss; fwd-status=200; stored"
        );
        assert_eq!(
            CacheStatus::Collapsed.render("edge"),
            "edge; fwd=miss; collapsed"
        );
        assert!(valid_name("vitals"));
        assert!(!valid_name("two words"));
        assert!(!valid_name("1abc"));
    }
}
