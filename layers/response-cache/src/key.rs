//! The cache key: what makes two requests the same for the cache.
//!
//! The primary key is the route, the path and the query with its parameters in a stable order
//! (`?b=2&a=1` and `?a=1&b=2` are one key), hashed (xxh3, 128 bits) with the cache's namespace.
//! `GET` and `HEAD` share it: a `HEAD` is answered from a stored `GET`. A response's `Vary`
//! names the request headers that select one of its variants under that key; their values,
//! normalised (lines joined, spaces around commas removed), must match for a stored variant to
//! serve a request (RFC 9111 §4.1).

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Uri};
use vitals_core::route::RequestHead;
use xxhash_rust::xxh3::Xxh3;

/// A route's own key: the part of the request that tells its responses apart, in place of the
/// path and query. `None` sends the request past the cache.
pub type KeyFn = Arc<dyn Fn(RequestHead<'_>) -> Option<String> + Send + Sync>;

/// The largest number of headers a `Vary` may name before the response is not stored.
pub const MAX_VARY_NAMES: usize = 16;

/// A request's primary key: its route and its path and normalised query (or what the route's
/// key function made of it), in `namespace`.
pub fn primary_key(namespace: &str, route: &str, target: &str) -> u128 {
    let mut hasher = Xxh3::new();
    for part in [namespace, route, target] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.digest128()
}

/// The path and the query with its parameters sorted (an empty parameter dropped). Borrowed
/// when there is no query: the common request builds nothing to be keyed.
pub fn target(uri: &Uri) -> Cow<'_, str> {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return Cow::Borrowed(path);
    };
    let mut pairs: Vec<&str> = query.split('&').filter(|pair| !pair.is_empty()).collect();
    if pairs.is_empty() {
        return Cow::Borrowed(path);
    }
    pairs.sort_unstable();
    let mut target = String::with_capacity(path.len() + query.len() + 1);
    target.push_str(path);
    target.push('?');
    for (index, pair) in pairs.iter().enumerate() {
        if index > 0 {
            target.push('&');
        }
        target.push_str(pair);
    }
    Cow::Owned(target)
}

/// The host a request is for (its URI's authority, else its `Host`): stored responses answer
/// requests to the same host only (compared without regard to case).
pub fn host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let host = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    Some(host.trim())
}

/// What a response's `Vary` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vary {
    /// These request headers select the variant (lower case, no repeats; empty: none).
    Names(Vec<HeaderName>),
    /// `Vary: *`, or more names than [`MAX_VARY_NAMES`], or one that is not a header name: the
    /// response cannot be matched to a later request, and is not stored.
    Unmatchable,
}

/// The response's `Vary`, every line of it.
pub fn vary(headers: &HeaderMap) -> Vary {
    let mut names: Vec<HeaderName> = Vec::new();
    for line in headers.get_all(http::header::VARY) {
        let Ok(line) = line.to_str() else {
            return Vary::Unmatchable;
        };
        for name in line
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            if name == "*" {
                return Vary::Unmatchable;
            }
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
                return Vary::Unmatchable;
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.len() > MAX_VARY_NAMES {
        return Vary::Unmatchable;
    }
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    Vary::Names(names)
}

/// The request's values of the `names` a variant varies on, normalised: every line of a field
/// joined by `,`, spaces around the commas and at the ends removed. `None` for a header the
/// request does not have (which only matches a variant stored for a request without it).
pub fn vary_values(names: &[HeaderName], request: &HeaderMap) -> Vec<Option<Vec<u8>>> {
    names
        .iter()
        .map(|name| {
            let mut lines = request.get_all(name).iter().peekable();
            lines.peek()?;
            let mut value = Vec::new();
            for line in lines {
                for item in line.as_bytes().split(|&byte| byte == b',') {
                    let item = item.trim_ascii();
                    if !value.is_empty() {
                        value.push(b',');
                    }
                    value.extend_from_slice(item);
                }
            }
            Some(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_query_order_does_not_matter_but_its_content_does() {
        let a: Uri = "/products?b=2&a=1".parse().unwrap_or_default();
        let b: Uri = "/products?a=1&b=2&".parse().unwrap_or_default();
        let c: Uri = "/products?a=1&b=3".parse().unwrap_or_default();
        assert_eq!(target(&a), "/products?a=1&b=2");
        assert_eq!(target(&a), target(&b));
        assert_ne!(target(&a), target(&c));
        assert_eq!(target(&"/p?".parse().unwrap_or_default()), "/p");
    }

    #[test]
    fn the_parts_of_a_key_cannot_be_shifted_into_each_other() {
        assert_ne!(primary_key("", "/a", "/b"), primary_key("", "/a/", "b"));
        assert_ne!(primary_key("x", "/a", "/b"), primary_key("", "/a", "/b"));
    }

    #[test]
    fn vary_names_are_normalised_and_star_is_unmatchable() {
        let mut headers = HeaderMap::new();
        headers.append("vary", HeaderValue::from_static("Accept-Language,  accept"));
        headers.append("vary", HeaderValue::from_static("accept-language"));
        assert_eq!(
            vary(&headers),
            Vary::Names(vec![
                HeaderName::from_static("accept"),
                HeaderName::from_static("accept-language")
            ])
        );
        headers.append("vary", HeaderValue::from_static("*"));
        assert_eq!(vary(&headers), Vary::Unmatchable);
    }

    #[test]
    fn vary_values_ignore_spacing_and_line_splits() {
        let names = [HeaderName::from_static("foo")];
        let mut one = HeaderMap::new();
        one.append("foo", HeaderValue::from_static("a, b"));
        let mut two = HeaderMap::new();
        two.append("foo", HeaderValue::from_static("a"));
        two.append("foo", HeaderValue::from_static(" b "));
        assert_eq!(vary_values(&names, &one), vary_values(&names, &two));
        assert_eq!(vary_values(&names, &HeaderMap::new()), vec![None]);
    }
}
