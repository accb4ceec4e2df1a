//! `Cache-Control` (RFC 9111 §5.2), read from a request or a response, and the few other fields
//! freshness depends on (`Pragma`, `Expires`, `Date`, `Age`). Pure functions of the headers.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, PRAGMA};

/// The largest delta-seconds a directive can carry: a larger one counts as this (RFC 9111
/// §1.2.2: 2^31).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// A directive's delta-seconds value.
///
/// `Some(0)` for a value that is not a number: a response with `max-age=soon` is stale, never
/// fresh forever.
fn delta_seconds(value: Option<&str>) -> u64 {
    let Some(value) = value else { return 0 };
    let value = value.trim_matches('"');
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return 0;
    }
    // All digits: only an overflow fails, and it means "more than 2^31".
    value
        .parse::<u64>()
        .map_or(MAX_DELTA_SECONDS, |seconds| seconds.min(MAX_DELTA_SECONDS))
}

/// The directives of a `Cache-Control` field, every line of it. Unknown directives are
/// ignored (RFC 9111 §5.2.3); a repeated one keeps its first value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // One field per directive, as RFC 9111 lists them.
pub struct CacheControl {
    /// `max-age`, in seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, in seconds (responses; a shared cache's own `max-age`).
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`, with or without field names (treated alike: the whole response is
    /// revalidated).
    pub no_cache: bool,
    /// `private`, with or without field names (treated alike: a shared cache stores none of
    /// it).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate` (a shared cache's `must-revalidate`).
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate` (RFC 5861), in seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861), in seconds.
    pub stale_if_error: Option<u64>,
    /// `max-stale` (requests): `Some(None)` for any staleness.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh` (requests), in seconds.
    pub min_fresh: Option<u64>,
    /// `only-if-cached` (requests).
    pub only_if_cached: bool,
    /// `must-understand` (responses).
    pub must_understand: bool,
}

impl CacheControl {
    /// Every `Cache-Control` line of `headers`, read as one list.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        for line in headers.get_all(CACHE_CONTROL) {
            let Ok(line) = line.to_str() else { continue };
            for (name, value) in split(line) {
                directives.apply(name, value);
            }
        }
        directives
    }

    fn apply(&mut self, name: &str, value: Option<&str>) {
        fn first(slot: &mut Option<u64>, value: Option<&str>) {
            if slot.is_none() {
                *slot = Some(delta_seconds(value));
            }
        }
        let is = |known: &str| name.eq_ignore_ascii_case(known);
        if is("max-age") {
            first(&mut self.max_age, value);
        } else if is("s-maxage") {
            first(&mut self.s_maxage, value);
        } else if is("no-store") {
            self.no_store = true;
        } else if is("no-cache") {
            self.no_cache = true;
        } else if is("private") {
            self.private = true;
        } else if is("public") {
            self.public = true;
        } else if is("must-revalidate") {
            self.must_revalidate = true;
        } else if is("proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if is("stale-while-revalidate") {
            first(&mut self.stale_while_revalidate, value);
        } else if is("stale-if-error") {
            first(&mut self.stale_if_error, value);
        } else if is("max-stale") {
            if self.max_stale.is_none() {
                self.max_stale = Some(value.map(|value| delta_seconds(Some(value))));
            }
        } else if is("min-fresh") {
            first(&mut self.min_fresh, value);
        } else if is("only-if-cached") {
            self.only_if_cached = true;
        } else if is("must-understand") {
            self.must_understand = true;
        }
    }

    /// Whether a stale response must not be served without revalidation, whatever a
    /// request's `max-stale` or a stale rule says (`must-revalidate`, `proxy-revalidate`, and
    /// `s-maxage`, which implies it for a shared cache).
    pub fn forbids_stale(&self) -> bool {
        self.must_revalidate || self.proxy_revalidate || self.s_maxage.is_some()
    }
}

/// The directives of one `Cache-Control` line: `name` or `name=value`, the value unquoted
/// when quoted. Commas inside a quoted value do not split it.
fn split(line: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    let mut rest = line;
    std::iter::from_fn(move || {
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                return None;
            }
            let mut in_quotes = false;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    if c == '"' {
                        in_quotes = !in_quotes;
                    }
                    c == ',' && !in_quotes
                })
                .map_or(rest.len(), |(index, _)| index);
            let (item, after) = rest.split_at(end);
            rest = after;
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            return Some(match item.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (item, None),
            });
        }
    })
}

/// Whether a request without `Cache-Control` says `Pragma: no-cache` (RFC 9111 §5.4: a
/// request's `Cache-Control` wins over it).
pub fn pragma_no_cache(headers: &HeaderMap) -> bool {
    !headers.contains_key(CACHE_CONTROL)
        && headers.get_all(PRAGMA).iter().any(|line| {
            line.to_str().is_ok_and(|line| {
                line.split(',')
                    .any(|item| item.trim().eq_ignore_ascii_case("no-cache"))
            })
        })
}

/// A date field (`Date`, `Expires`, `Last-Modified`), when there is exactly one and it parses.
pub fn date(headers: &HeaderMap, name: &http::HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(line.to_str().ok()?.trim()).ok()
}

/// The response's `Age`, in seconds: 0 when absent; [`MAX_DELTA_SECONDS`] (stale) when it is
/// not exactly one non-negative integer — a negative, fractional, suffixed or repeated `Age`
/// is not trusted to make a response fresh.
pub fn age(headers: &HeaderMap) -> u64 {
    let mut lines = headers.get_all(AGE).iter();
    let Some(line) = lines.next() else { return 0 };
    if lines.next().is_some() {
        return MAX_DELTA_SECONDS;
    }
    let value = line.as_bytes().trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return MAX_DELTA_SECONDS;
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
        .map_or(MAX_DELTA_SECONDS, |seconds| seconds.min(MAX_DELTA_SECONDS))
}

/// The `Surrogate-Control` header (W3C Edge Architecture): a response's instructions to
/// the caches in front of its origin, over `Cache-Control`, never seen by clients.
pub const SURROGATE_CONTROL: http::HeaderName = http::HeaderName::from_static("surrogate-control");

/// What `Surrogate-Control` tells the cache named `target`: `None` when it says nothing to it
/// (absent, or every directive targeted at another cache with `;name`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SurrogateControl {
    /// `max-age`, in seconds.
    pub max_age: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
}

impl SurrogateControl {
    /// The directives of `headers`' `Surrogate-Control` that apply to the cache `target`.
    pub fn of(headers: &HeaderMap, target: &str) -> Option<Self> {
        let mut directives = None;
        for line in headers.get_all(SURROGATE_CONTROL) {
            let Ok(line) = line.to_str() else { continue };
            for (name, value) in split(line) {
                // `max-age=60;edge`: for the cache named `edge` only.
                let (value, aimed) = match value.map(|value| value.split_once(';')) {
                    Some(Some((value, aimed))) => (Some(value.trim_end_matches('"')), Some(aimed)),
                    _ => match name.split_once(';') {
                        Some((_, aimed)) => (value, Some(aimed)),
                        None => (value, None),
                    },
                };
                let name = name.split_once(';').map_or(name, |(name, _)| name).trim();
                if aimed.is_some_and(|aimed| !aimed.trim().eq_ignore_ascii_case(target)) {
                    continue;
                }
                let found: &mut Self = directives.get_or_insert_default();
                if name.eq_ignore_ascii_case("max-age") {
                    if found.max_age.is_none() {
                        found.max_age = Some(delta_seconds(value));
                    }
                } else if name.eq_ignore_ascii_case("no-store") {
                    found.no_store = true;
                }
            }
        }
        directives
    }
}

/// The explicit freshness lifetime a shared cache gives a response (RFC 9111 §4.2.1):
/// `s-maxage`, else `max-age`, else `Expires` less `Date` (an `Expires` that does not parse,
/// such as `0`, means already stale). `None`: the response gives none.
pub fn explicit_lifetime(directives: &CacheControl, headers: &HeaderMap) -> Option<Duration> {
    if let Some(seconds) = directives.s_maxage.or(directives.max_age) {
        return Some(Duration::from_secs(seconds));
    }
    if !headers.contains_key(EXPIRES) {
        return None;
    }
    let Some(expires) = date(headers, &EXPIRES) else {
        return Some(Duration::ZERO);
    };
    let date = date(headers, &DATE).unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn reads_every_line_and_keeps_the_first_value() {
        let directives = CacheControl::of(&headers(&[
            ("cache-control", "public, max-age=60"),
            (
                "cache-control",
                "Max-Age=5, s-maxage=\"30\", stale-while-revalidate=10",
            ),
        ]));
        assert!(directives.public);
        assert_eq!(directives.max_age, Some(60));
        assert_eq!(directives.s_maxage, Some(30));
        assert_eq!(directives.stale_while_revalidate, Some(10));
        assert!(directives.forbids_stale());
    }

    #[test]
    fn bad_numbers_mean_stale_and_huge_ones_are_capped() {
        let directives = CacheControl::of(&headers(&[(
            "cache-control",
            "max-age=-1, s-maxage=99999999999999999999999",
        )]));
        assert_eq!(directives.max_age, Some(0));
        assert_eq!(directives.s_maxage, Some(MAX_DELTA_SECONDS));
        let directives = CacheControl::of(&headers(&[("cache-control", "max-age")]));
        assert_eq!(directives.max_age, Some(0));
    }

    #[test]
    fn quoted_commas_do_not_split_and_field_names_are_ignored() {
        let directives = CacheControl::of(&headers(&[(
            "cache-control",
            "private=\"set-cookie, x-user\", no-cache=\"x-a\",,max-stale",
        )]));
        assert!(directives.private);
        assert!(directives.no_cache);
        assert_eq!(directives.max_stale, Some(None));
        assert_eq!(directives.max_age, None);
    }

    #[test]
    fn pragma_counts_only_without_cache_control() {
        assert!(pragma_no_cache(&headers(&[("pragma", "no-cache")])));
        assert!(!pragma_no_cache(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5")
        ])));
    }

    #[test]
    fn expires_against_date_and_invalid_expires_is_stale() {
        let lifetime = explicit_lifetime(
            &CacheControl::default(),
            &headers(&[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
            ]),
        );
        assert_eq!(lifetime, Some(Duration::from_mins(1)));
        let lifetime = explicit_lifetime(&CacheControl::default(), &headers(&[("expires", "0")]));
        assert_eq!(lifetime, Some(Duration::ZERO));
        assert_eq!(
            explicit_lifetime(&CacheControl::default(), &HeaderMap::new()),
            None
        );
    }
}
