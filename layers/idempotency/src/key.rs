//! The `Idempotency-Key` request header: a structured-field string
//! (draft-ietf-httpapi-idempotency-key-header), length-limited.

use http::HeaderMap;

/// The header's name.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header's name, parsed once: a lookup by it skips checking and lowercasing the name.
pub(crate) static IDEMPOTENCY_KEY_NAME: http::HeaderName =
    http::HeaderName::from_static(IDEMPOTENCY_KEY);

/// The longest key accepted by default, in characters (Stripe's limit is 255).
pub const DEFAULT_MAX_KEY_LEN: usize = 255;

/// Why a request's key was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The header appears more than once.
    Repeated,
    /// The value is not a structured-field string (`"…"`), or is empty.
    Malformed,
    /// The key is longer than the limit.
    TooLong {
        /// The limit.
        max: usize,
    },
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Repeated => f.write_str("Idempotency-Key must appear once"),
            Self::Malformed => f.write_str(
                "Idempotency-Key must be a non-empty structured-field string, e.g. \"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
            ),
            Self::TooLong { max } => write!(f, "Idempotency-Key is longer than {max} characters"),
        }
    }
}

/// The request's key: `Ok(None)` without the header, the key's text, or why it is refused.
///
/// ```
/// use http::HeaderMap;
/// use vitals_idempotency::key::{key_of, KeyError};
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(key_of(&headers, 255), Ok(None));
/// headers.insert("idempotency-key", "\"order-1\"".parse().unwrap());
/// assert_eq!(key_of(&headers, 255), Ok(Some("order-1".to_owned())));
/// headers.insert("idempotency-key", "order-1".parse().unwrap());
/// assert_eq!(key_of(&headers, 255), Err(KeyError::Malformed), "a token, not a string");
/// ```
pub fn key_of(headers: &HeaderMap, max_len: usize) -> Result<Option<String>, KeyError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated);
    }
    let item: sfv::Item = sfv::Parser::new(value.as_bytes())
        .parse()
        .map_err(|_| KeyError::Malformed)?;
    let key = item
        .bare_item
        .as_string()
        .map(sfv::StringRef::as_str)
        .filter(|key| !key.is_empty())
        .ok_or(KeyError::Malformed)?;
    if key.chars().count() > max_len {
        return Err(KeyError::TooLong { max: max_len });
    }
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(IDEMPOTENCY_KEY, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(
            key_of(&with(&["\"a\"", "\"b\""]), 255),
            Err(KeyError::Repeated)
        );
        for bad in ["", "\"\"", "\"unterminated", "1", "?1", "\"a\", \"b\""] {
            assert_eq!(
                key_of(&with(&[bad]), 255),
                Err(KeyError::Malformed),
                "{bad:?}"
            );
        }
        let long = format!("\"{}\"", "k".repeat(256));
        assert_eq!(
            key_of(&with(&[&long]), 255),
            Err(KeyError::TooLong { max: 255 })
        );
        let fits = format!("\"{}\"", "k".repeat(255));
        assert!(key_of(&with(&[&fits]), 255).unwrap().is_some());
    }

    #[test]
    fn parameters_and_escapes_are_read_as_the_grammar_says() {
        assert_eq!(
            key_of(&with(&["\"a\\\"b\";x=1"]), 255),
            Ok(Some("a\"b".to_owned()))
        );
    }
}
