//! What makes two requests with one key "the same request": method, route, path and query,
//! the configured headers, and the body — hashed, so the store keeps 16 bytes, not the request.

use http::{HeaderMap, HeaderName, Method, Uri};
use xxhash_rust::xxh3::Xxh3;

/// The fingerprint of a request (128-bit xxh3 of its parts, each length-prefixed so no two
/// different requests hash the same input).
///
/// ```
/// use http::{HeaderMap, Method, Uri};
/// use vitals_idempotency::fingerprint::fingerprint;
///
/// let uri: Uri = "/orders".parse().unwrap();
/// let headers = HeaderMap::new();
/// let a = fingerprint(&Method::POST, "/orders", &uri, &headers, &[], b"{\"quantity\":1}");
/// let b = fingerprint(&Method::POST, "/orders", &uri, &headers, &[], b"{\"quantity\":2}");
/// assert_ne!(a, b);
/// ```
pub fn fingerprint(
    method: &Method,
    route: &str,
    uri: &Uri,
    headers: &HeaderMap,
    names: &[HeaderName],
    body: &[u8],
) -> u128 {
    let mut hasher = Xxh3::new();
    let mut part = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(method.as_str().as_bytes());
    part(route.as_bytes());
    part(uri.path().as_bytes());
    part(uri.query().unwrap_or_default().as_bytes());
    for name in names {
        part(name.as_str().as_bytes());
        for value in headers.get_all(name) {
            part(value.as_bytes());
        }
    }
    part(body);
    hasher.digest128()
}

/// The store's key for `key` sent by `principal` (a client's own keys never meet another
/// client's).
pub fn scope(principal: Option<&str>, key: &str) -> u128 {
    let mut hasher = Xxh3::new();
    match principal {
        Some(principal) => {
            hasher.update(&[1]);
            hasher.update(&(principal.len() as u64).to_le_bytes());
            hasher.update(principal.as_bytes());
        }
        None => hasher.update(&[0]),
    }
    hasher.update(key.as_bytes());
    hasher.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_counts_and_parts_do_not_run_into_each_other() {
        let headers = HeaderMap::new();
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let base = fingerprint(&Method::POST, "/o", &uri("/o?a=1"), &headers, &[], b"x");
        assert_ne!(
            base,
            fingerprint(&Method::PATCH, "/o", &uri("/o?a=1"), &headers, &[], b"x")
        );
        assert_ne!(
            base,
            fingerprint(&Method::POST, "/o", &uri("/o?a=2"), &headers, &[], b"x")
        );
        assert_ne!(
            base,
            fingerprint(&Method::POST, "/o", &uri("/o?a=1"), &headers, &[], b"y")
        );
        // "/o" + "x" against "/ox" + "": length prefixes keep them apart.
        assert_ne!(
            fingerprint(&Method::POST, "/o", &uri("/o"), &headers, &[], b"x"),
            fingerprint(&Method::POST, "/ox", &uri("/o"), &headers, &[], b"")
        );
        let mut with_tenant = HeaderMap::new();
        with_tenant.insert("x-tenant", "a".parse().unwrap());
        let names = [HeaderName::from_static("x-tenant")];
        assert_ne!(
            fingerprint(&Method::POST, "/o", &uri("/o"), &headers, &names, b""),
            fingerprint(&Method::POST, "/o", &uri("/o"), &with_tenant, &names, b"")
        );
    }

    #[test]
    fn principals_scope_keys() {
        assert_ne!(scope(Some("alice"), "k"), scope(Some("bob"), "k"));
        assert_ne!(scope(None, "k"), scope(Some(""), "k"));
        assert_eq!(scope(Some("alice"), "k"), scope(Some("alice"), "k"));
    }
}
