//! The pieces of RFC 9110's grammar the header parsers share: tokens, quoted strings, lists.
//! Everything works on bytes and never panics: header values from outside are arbitrary.

/// `tchar`: the characters of a token.
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`'
        | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// Whether `bytes` is a non-empty token.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// `OWS` skipped from the front.
pub(crate) fn skip_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// `OWS` trimmed from both ends.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let bytes = skip_ows(bytes);
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Splits a `#rule` list at commas outside quoted strings; empty elements are skipped, as the
/// list rule allows. Elements are trimmed of `OWS`. Inside quotes, a backslash escapes the next
/// byte (quoted-string); see [`tag_list_elements`] for entity tags, where it does not.
pub(crate) fn list_elements(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_list(bytes, true)
}

/// [`list_elements`] for entity-tag lists: an entity tag has no escapes.
pub(crate) fn tag_list_elements(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    split_list(bytes, false)
}

fn split_list(bytes: &[u8], backslash_escapes: bool) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut quoted = false;
            let mut escaped = false;
            let mut end = rest.len();
            for (i, &b) in rest.iter().enumerate() {
                if escaped {
                    escaped = false;
                } else if backslash_escapes && quoted && b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = !quoted;
                } else if b == b',' && !quoted {
                    end = i;
                    break;
                }
            }
            let element = trim_ows(&rest[..end]);
            rest = rest.get(end + 1..).unwrap_or(&[]);
            if !element.is_empty() {
                return Some(element);
            }
        }
    })
}

/// Whether `bytes` is exactly one `quoted-string`.
pub(crate) fn is_quoted_string(bytes: &[u8]) -> bool {
    let [b'"', inner @ .., b'"'] = bytes else {
        return false;
    };
    let mut escaped = false;
    for &b in inner {
        if escaped {
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            if !(b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80) {
                return false;
            }
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if !(b == b'\t'
            || b == b' '
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)
            || b >= 0x80)
        {
            return false;
        }
    }
    !escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_split_outside_quotes_and_skip_empty_elements() {
        let elements: Vec<_> = list_elements(br#" a , "b,c" ,, d=" x\", y" ,"#).collect();
        assert_eq!(elements, vec![&b"a"[..], br#""b,c""#, br#"d=" x\", y""#]);
        assert_eq!(list_elements(b" , ,").count(), 0);
    }

    #[test]
    fn entity_tag_lists_have_no_escapes() {
        let tags: Vec<_> = tag_list_elements(br#""a\", "b""#).collect();
        assert_eq!(tags, vec![&br#""a\""#[..], br#""b""#]);
    }

    #[test]
    fn quoted_strings_follow_the_grammar() {
        assert!(is_quoted_string(br#""abc""#));
        assert!(is_quoted_string(br#""a\"b""#));
        assert!(is_quoted_string(br#""""#));
        assert!(!is_quoted_string(br#""abc"#));
        assert!(!is_quoted_string(br#""a"b""#));
        assert!(!is_quoted_string(br#""a\""#));
        assert!(!is_quoted_string(b"\"a\x01\""));
    }

    #[test]
    fn tokens_and_whitespace() {
        assert!(is_token(b"max-age"));
        assert!(!is_token(b"max age"));
        assert!(!is_token(b""));
        assert_eq!(trim_ows(b" \t x y \t"), b"x y");
    }
}
