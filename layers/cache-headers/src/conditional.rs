//! Conditional requests (RFC 9110 §13): the four preconditions, read from the request and
//! evaluated in the order §13.2.2 gives. Invalid conditionals are ignored, as the RFC asks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, HeaderValue, Method};

use crate::etag::{EntityTag, TagList};

/// An HTTP date (`IMF-fixdate`, or the obsolete RFC 850 and asctime forms recipients must
/// accept); `None` for anything else.
pub(crate) fn parse_date(value: &HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?;
    httpdate::parse_http_date(text.trim()).ok()
}

/// Seconds since the epoch: HTTP dates have one-second resolution, so compare at that.
fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The preconditions of a request, parsed. Empty for most requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_field_names)] // Named after their headers.
pub struct Preconditions {
    if_match: Option<TagList>,
    /// `If-Match` was sent but is not a valid list: a write fails closed on it.
    if_match_malformed: bool,
    if_none_match: Option<TagList>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

/// What the preconditions say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: serve or perform the request.
    Proceed,
    /// `304 Not Modified`: the client's copy is current (GET and HEAD).
    NotModified,
    /// `412 Precondition Failed`.
    PreconditionFailed,
}

/// The validators of the current representation of a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validators {
    /// Its entity tag.
    pub etag: Option<EntityTag>,
    /// When it last changed.
    pub last_modified: Option<SystemTime>,
}

impl Preconditions {
    /// Reads the four conditional headers; a malformed one is treated as absent.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // A date field with more than one line is not one date: ignored (RFC 9110 §13.1.3).
        let date = |name| {
            let mut lines = headers.get_all(name).iter();
            let first = lines.next()?;
            if lines.next().is_some() {
                return None;
            }
            parse_date(first)
        };
        let tags = |name| {
            let mut lines = headers.get_all(name).iter().peekable();
            lines.peek()?;
            TagList::parse(lines)
        };
        let if_match = tags(IF_MATCH);
        Self {
            if_match_malformed: if_match.is_none() && headers.contains_key(IF_MATCH),
            if_match,
            if_none_match: tags(IF_NONE_MATCH),
            if_modified_since: date(IF_MODIFIED_SINCE),
            if_unmodified_since: date(IF_UNMODIFIED_SINCE),
        }
    }

    /// Whether the request carries no (valid) precondition.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Whether the request carries `If-Match` or `If-Unmodified-Since`: what a state-changing
    /// request sends for optimistic concurrency.
    pub fn has_write_condition(&self) -> bool {
        self.if_match.is_some() || self.if_match_malformed || self.if_unmodified_since.is_some()
    }

    /// Whether a write is guarded: by `If-Match` / `If-Unmodified-Since`, or as create-only by
    /// `If-None-Match: *`.
    pub fn guards_write(&self) -> bool {
        self.has_write_condition() || self.if_none_match == Some(TagList::Any)
    }

    /// Evaluates the preconditions for `method` against the resource's current validators
    /// (`exists`: whether it has a current representation at all), in RFC 9110's order.
    pub fn evaluate(&self, method: &Method, current: &Validators, exists: bool) -> Verdict {
        let safe = method == Method::GET || method == Method::HEAD;
        if self.if_match_malformed && !safe {
            // Which version the client meant cannot be known: refuse rather than overwrite.
            return Verdict::PreconditionFailed;
        }
        // 1. If-Match (strong comparison).
        if let Some(if_match) = &self.if_match {
            if !if_match.matches(current.etag.as_ref(), exists, EntityTag::strong_eq) {
                return Verdict::PreconditionFailed;
            }
        } else if let (Some(since), Some(modified)) =
            // 2. If-Unmodified-Since, only without If-Match.
            (self.if_unmodified_since, current.last_modified)
            && seconds(modified) > seconds(since)
        {
            return Verdict::PreconditionFailed;
        }
        // 3. If-None-Match (weak comparison).
        if let Some(if_none_match) = &self.if_none_match {
            if if_none_match.matches(current.etag.as_ref(), exists, EntityTag::weak_eq) {
                return if safe {
                    Verdict::NotModified
                } else {
                    Verdict::PreconditionFailed
                };
            }
        } else if safe
            // 4. If-Modified-Since, only without If-None-Match, only for GET and HEAD.
            && let (Some(since), Some(modified)) = (self.if_modified_since, current.last_modified)
            && seconds(modified) <= seconds(since)
        {
            return Verdict::NotModified;
        }
        Verdict::Proceed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&'static str, &'static str)]) -> Preconditions {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        Preconditions::from_headers(&map)
    }

    fn current() -> Validators {
        Validators {
            etag: EntityTag::strong("v2"),
            last_modified: httpdate::parse_http_date("Sun, 22 Nov 2026 10:00:00 GMT").ok(),
        }
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let get = &Method::GET;
        let check = |h: &[(&'static str, &'static str)]| request(h).evaluate(get, &current(), true);
        assert_eq!(
            check(&[("if-none-match", r#"W/"v2""#)]),
            Verdict::NotModified
        );
        assert_eq!(
            check(&[("if-none-match", r#""v1", "v2""#)]),
            Verdict::NotModified
        );
        assert_eq!(check(&[("if-none-match", "*")]), Verdict::NotModified);
        assert_eq!(check(&[("if-none-match", r#""v1""#)]), Verdict::Proceed);
        // A match on a state-changing method fails instead.
        let put = request(&[("if-none-match", "*")]).evaluate(&Method::PUT, &current(), true);
        assert_eq!(put, Verdict::PreconditionFailed);
        let create = request(&[("if-none-match", "*")]).evaluate(
            &Method::PUT,
            &Validators::default(),
            false,
        );
        assert_eq!(create, Verdict::Proceed);
    }

    #[test]
    fn if_modified_since_only_without_if_none_match() {
        let get = &Method::GET;
        let later = ("if-modified-since", "Sun, 22 Nov 2026 11:00:00 GMT");
        let earlier = ("if-modified-since", "Sun, 22 Nov 2026 09:00:00 GMT");
        assert_eq!(
            request(&[later]).evaluate(get, &current(), true),
            Verdict::NotModified
        );
        assert_eq!(
            request(&[earlier]).evaluate(get, &current(), true),
            Verdict::Proceed
        );
        let both = request(&[later, ("if-none-match", r#""v1""#)]);
        assert_eq!(both.evaluate(get, &current(), true), Verdict::Proceed);
        assert_eq!(
            request(&[later]).evaluate(&Method::POST, &current(), true),
            Verdict::Proceed
        );
        // The obsolete date forms count too.
        let rfc850 = ("if-modified-since", "Sunday, 22-Nov-26 11:00:00 GMT");
        assert_eq!(
            request(&[rfc850]).evaluate(get, &current(), true),
            Verdict::NotModified
        );
    }

    #[test]
    fn if_match_and_if_unmodified_since_guard_writes() {
        let put = &Method::PUT;
        let check = |h: &[(&'static str, &'static str)]| request(h).evaluate(put, &current(), true);
        assert_eq!(check(&[("if-match", r#""v2""#)]), Verdict::Proceed);
        assert_eq!(
            check(&[("if-match", r#""v1""#)]),
            Verdict::PreconditionFailed
        );
        assert_eq!(
            check(&[("if-match", r#"W/"v2""#)]),
            Verdict::PreconditionFailed,
            "strong"
        );
        assert_eq!(check(&[("if-match", "*")]), Verdict::Proceed);
        let gone = request(&[("if-match", "*")]).evaluate(put, &Validators::default(), false);
        assert_eq!(gone, Verdict::PreconditionFailed);
        let stale = ("if-unmodified-since", "Sun, 22 Nov 2026 09:00:00 GMT");
        assert_eq!(check(&[stale]), Verdict::PreconditionFailed);
        // If-Unmodified-Since is ignored when If-Match is there.
        assert_eq!(check(&[stale, ("if-match", r#""v2""#)]), Verdict::Proceed);
        // Unmodified since exactly then: not modified *after* it, so the write proceeds.
        let same = ("if-unmodified-since", "Sun, 22 Nov 2026 10:00:00 GMT");
        assert_eq!(check(&[same]), Verdict::Proceed);
    }

    #[test]
    fn malformed_conditionals_are_ignored() {
        let junk = request(&[
            ("if-none-match", "v2"),
            ("if-modified-since", "yesterday"),
            ("if-match", "\"unterminated"),
            ("if-unmodified-since", "Sun, 99 Nov 2026 99:00:00 GMT"),
        ]);
        assert_eq!(
            junk.evaluate(&Method::GET, &current(), true),
            Verdict::Proceed
        );
        // ...but a write with an If-Match nobody can read fails closed.
        assert_eq!(
            junk.evaluate(&Method::PUT, &current(), true),
            Verdict::PreconditionFailed
        );
        assert!(junk.has_write_condition());
        let two_dates = request(&[
            ("if-modified-since", "Sun, 22 Nov 2026 11:00:00 GMT"),
            ("if-modified-since", "Sun, 22 Nov 2026 11:00:00 GMT"),
        ]);
        assert!(two_dates.is_empty());
    }
}
