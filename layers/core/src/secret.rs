//! Secrets: comparing tokens against request input, and keeping passwords out of logs.
//!
//! ```
//! use vitals_core::secret::constant_time_eq;
//!
//! assert!(constant_time_eq(b"s3cret", b"s3cret"));
//! assert!(!constant_time_eq(b"s3cret", b"s3cre"));
//! ```

/// Whether `a` equals `b`, in time that depends only on their lengths, so response times do not
/// reveal how much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `url` with its credentials hidden (`redis://:secret@host/` → `redis://…@host/`), for logs
/// and `Debug`.
///
/// ```
/// use vitals_core::secret::redact_url;
///
/// assert_eq!(redact_url("redis://:s3cret@10.0.0.5:6379/"), "redis://…@10.0.0.5:6379/");
/// assert_eq!(redact_url("redis://10.0.0.5/"), "redis://10.0.0.5/");
/// ```
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"a", b"ab"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
    }
}
