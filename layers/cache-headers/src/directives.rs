//! Reading a `Cache-Control` value a handler set: does it follow the grammar, and what does it
//! say?

use http::HeaderMap;
use http::header::CACHE_CONTROL;

use crate::grammar::{is_quoted_string, is_token, list_elements};

/// What matters about a handler's `Cache-Control` once the privacy rule has run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
}

/// Calls `each` with the name and argument of every directive of every `Cache-Control` line of
/// `headers`, in order (`cache-directive = token [ "=" ( token / quoted-string ) ]`). `Ok(false)`
/// without the header; `Err(())` as soon as an element does not follow the grammar (`each` has
/// seen the elements before it: callers that act on the whole value validate it first).
pub(crate) fn for_each(
    headers: &HeaderMap,
    mut each: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<bool, ()> {
    let mut found = false;
    for value in headers.get_all(CACHE_CONTROL) {
        found = true;
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
            each(name, argument);
        }
    }
    Ok(found)
}

/// Parses every `Cache-Control` line of `headers`. `Ok(None)` without the header; `Err(())`
/// when a line does not follow the grammar (the caller leaves it alone and logs it).
pub(crate) fn parse(headers: &HeaderMap) -> Result<Option<Directives>, ()> {
    let mut directives = Directives::default();
    let found = for_each(headers, |name, _| {
        directives.no_store |= name.eq_ignore_ascii_case(b"no-store");
    })?;
    Ok(found.then_some(directives))
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
        assert_eq!(
            directives(&["max-age=60", "PUBLIC, community=\"UCI, x\""]),
            Ok(Some(Directives { no_store: false }))
        );
        assert_eq!(
            directives(&["max-age=60", "No-Store"]),
            Ok(Some(Directives { no_store: true }))
        );
        assert_eq!(directives(&[""]), Ok(Some(Directives::default())));
    }

    #[test]
    fn every_directive_is_seen_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        headers.append(
            CACHE_CONTROL,
            HeaderValue::from_static("private=\"set-cookie, x\""),
        );
        let mut seen = Vec::new();
        let found = for_each(&headers, |name, argument| {
            seen.push((name.to_vec(), argument.map(<[u8]>::to_vec)));
        });
        assert_eq!(found, Ok(true));
        assert_eq!(
            seen,
            vec![
                (b"public".to_vec(), None),
                (b"max-age".to_vec(), Some(b"60".to_vec())),
                (b"private".to_vec(), Some(b"\"set-cookie, x\"".to_vec())),
            ]
        );
    }

    #[test]
    fn values_off_the_grammar_are_errors() {
        assert_eq!(directives(&["max-age=60 public"]), Err(()));
        assert_eq!(directives(&["max-age=\"60"]), Err(()));
        assert_eq!(directives(&["=60"]), Err(()));
        assert_eq!(directives(&["public", "max age"]), Err(()));
    }
}
