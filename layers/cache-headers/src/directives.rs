//! Reading a `Cache-Control` value a handler set: is it valid, and does it let shared caches
//! store the response?

use http::HeaderMap;
use http::header::CACHE_CONTROL;

use crate::grammar::{is_quoted_string, is_token, list_elements};

/// What matters about a handler's `Cache-Control`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) public: bool,
    pub(crate) private: bool,
    pub(crate) no_store: bool,
}

/// Parses every `Cache-Control` line of `headers` (`cache-directive = token [ "=" ( token /
/// quoted-string ) ]`). `Ok(None)` without the header; `Err(())` when a line does not follow
/// the grammar (the caller leaves it alone and logs it).
pub(crate) fn parse(headers: &HeaderMap) -> Result<Option<Directives>, ()> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let directives: &mut Directives = found.get_or_insert_with(Directives::default);
        for element in list_elements(value.as_bytes()) {
            let (name, argument) = match element.iter().position(|&b| b == b'=') {
                Some(at) => (&element[..at], Some(&element[at + 1..])),
                None => (element, None),
            };
            if !is_token(name) {
                return Err(());
            }
            if let Some(argument) = argument
                && !is_token(argument)
                && !is_quoted_string(argument)
            {
                return Err(());
            }
            if name.eq_ignore_ascii_case(b"public") {
                directives.public = true;
            } else if name.eq_ignore_ascii_case(b"private") {
                directives.private = true;
            } else if name.eq_ignore_ascii_case(b"no-store") {
                directives.no_store = true;
            }
        }
    }
    Ok(found)
}

/// Rewrites a valid `Cache-Control` so that only the user's cache may store the response:
/// `public` becomes `private`, `s-maxage` (for shared caches) goes, the rest stays.
pub(crate) fn make_private(headers: &mut HeaderMap) {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut private = false;
    for value in headers.get_all(CACHE_CONTROL) {
        for element in list_elements(value.as_bytes()) {
            let name = element.split(|&b| b == b'=').next().unwrap_or_default();
            if name.eq_ignore_ascii_case(b"public") || name.eq_ignore_ascii_case(b"s-maxage") {
                continue;
            }
            private |= name.eq_ignore_ascii_case(b"private");
            kept.push(element.to_vec());
        }
    }
    if !private {
        kept.insert(0, b"private".to_vec());
    }
    if let Ok(value) = http::HeaderValue::from_bytes(&kept.join(&b", "[..])) {
        headers.insert(CACHE_CONTROL, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn directives(lines: &[&'static str]) -> Result<Option<Directives>, ()> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(CACHE_CONTROL, HeaderValue::from_static(line));
        }
        parse(&headers)
    }

    #[test]
    fn valid_values_are_read_across_lines() {
        assert_eq!(directives(&[]), Ok(None));
        let read = directives(&["max-age=60", "PUBLIC, community=\"UCI, x\""]).unwrap();
        assert_eq!(
            read,
            Some(Directives {
                public: true,
                private: false,
                no_store: false
            })
        );
        assert!(directives(&["no-store"]).unwrap().unwrap().no_store);
        assert!(
            directives(&["private=\"set-cookie\""])
                .unwrap()
                .unwrap()
                .private
        );
    }

    #[test]
    fn a_public_value_is_made_private() {
        let mut headers = HeaderMap::new();
        headers.append(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        headers.append(
            CACHE_CONTROL,
            HeaderValue::from_static("s-maxage=600, no-transform"),
        );
        make_private(&mut headers);
        assert_eq!(headers[CACHE_CONTROL], "private, max-age=60, no-transform");
        assert_eq!(headers.get_all(CACHE_CONTROL).iter().count(), 1);
    }

    #[test]
    fn values_off_the_grammar_are_errors() {
        assert_eq!(directives(&["max-age=60 public"]), Err(()));
        assert_eq!(directives(&["max-age=\"60"]), Err(()));
        assert_eq!(directives(&["=60"]), Err(()));
        assert_eq!(directives(&["public", "max age"]), Err(()));
    }
}
