//! The `RateLimit-Policy` and `RateLimit` response headers of draft-ietf-httpapi-ratelimit-headers-10
//! (structured-field lists, RFC 9651), and the `429` answer.
//!
//! Each quota of a route is one list member named by the quota:
//!
//! ```text
//! RateLimit-Policy: "per-second";q=10;w=2, "per-hour";q=1000;w=3600
//! RateLimit: "per-second";r=7;t=1, "per-hour";r=993;t=4
//! ```
//!
//! `q` is the burst and `w` the time a spent burst takes to come back, so `q` per `w` is the
//! rate; `r` is how many requests may still come at once, and `t` the seconds until more
//! quota comes back (0 when the burst is whole; on a refusal, the `Retry-After` of that quota).

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use vitals_core::outcome::OutcomeHint;

use crate::quota::Quota;

/// `RateLimit-Policy`: the quotas of a route.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of each quota for this client.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Whole seconds, rounded up (a client told 0 would come back too early).
pub(crate) fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` value of `quotas` (fixed for a route: rendered once).
pub(crate) fn policy(quotas: &[Quota]) -> Option<HeaderValue> {
    let mut value = String::new();
    for quota in quotas {
        if !value.is_empty() {
            value.push_str(", ");
        }
        let _ = write!(
            value,
            "\"{}\";q={};w={}",
            quota.name(),
            quota.burst(),
            quota.window_seconds()
        );
    }
    // Names are printable ASCII without quotes (checked when set): always a valid value.
    HeaderValue::try_from(value).ok()
}

/// One quota's state for the `RateLimit` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Left {
    pub(crate) remaining: u32,
    pub(crate) reset: Duration,
}

/// The `RateLimit` value: each quota's `r` and `t`.
pub(crate) fn remaining<'a>(
    quotas: impl Iterator<Item = (&'a Quota, Left)>,
) -> Option<HeaderValue> {
    let mut value = String::with_capacity(48);
    for (quota, left) in quotas {
        if !value.is_empty() {
            value.push_str(", ");
        }
        let _ = write!(
            value,
            "\"{}\";r={};t={}",
            quota.name(),
            left.remaining,
            seconds_up(left.reset)
        );
    }
    HeaderValue::try_from(value).ok()
}

/// The `429 Too Many Requests` answer: `Retry-After`, `Cache-Control: no-store`, and a JSON
/// body naming the quotas the request went over (the draft's `violated-policies`).
pub(crate) fn too_many_requests<D: From<Bytes> + Buf>(
    retry_after: Duration,
    violated: &[&Quota],
) -> Response<Full<D>> {
    let mut body = String::from(r#"{"error":"too many requests","violated-policies":["#);
    for (i, quota) in violated.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        // Names hold no quote or backslash (checked when set): nothing to escape.
        let _ = write!(body, "\"{}\"", quota.name());
    }
    body.push_str("]}");
    let mut response = Response::new(Full::new(D::from(Bytes::from(body))));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A refusal says nothing about the resource: no cache may keep it.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        RETRY_AFTER,
        HeaderValue::from(seconds_up(retry_after).max(1)),
    );
    OutcomeHint::Rejected.mark(&mut response);
    response
}

/// The `503 Service Unavailable` of a quota that fails closed while its store (Redis) does
/// not answer: `Retry-After: 1`, `no-store`, a JSON body.
pub(crate) fn store_unavailable<D: From<Bytes> + Buf>() -> Response<Full<D>> {
    let body = r#"{"error":"rate limit unavailable: its store did not answer"}"#;
    let mut response = Response::new(Full::new(D::from(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    OutcomeHint::Rejected.mark(&mut response);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_list(value: &HeaderValue) -> sfv::List {
        sfv::Parser::new(value.as_bytes())
            .parse::<sfv::List>()
            .expect("a structured-field list")
    }

    fn member(list: &sfv::List, index: usize) -> (String, Vec<(String, i64)>) {
        let Some(sfv::ListEntry::Item(item)) = list.get(index) else {
            panic!("member {index} is not an item");
        };
        let sfv::BareItem::String(name) = &item.bare_item else {
            panic!("member {index} is not a string: the draft requires one");
        };
        let params = item
            .params
            .iter()
            .map(|(key, value)| {
                let sfv::BareItem::Integer(number) = value else {
                    panic!("{key} is not an integer");
                };
                (key.as_str().to_owned(), i64::from(*number))
            })
            .collect();
        (name.as_str().to_owned(), params)
    }

    #[test]
    fn the_policy_parses_as_the_draft_says() {
        let quotas = [
            Quota::per_second(5).with_burst(10),
            Quota::per_hour(1000).named("hourly budget"),
        ];
        let value = policy(&quotas).expect("a header value");
        assert_eq!(
            value,
            r#""per-second";q=10;w=2, "hourly budget";q=1000;w=3600"#
        );
        let list = parse_list(&value);
        assert_eq!(list.len(), 2);
        assert_eq!(
            member(&list, 0),
            (
                "per-second".to_owned(),
                vec![("q".to_owned(), 10), ("w".to_owned(), 2)]
            )
        );
        assert_eq!(
            member(&list, 1).1,
            vec![("q".to_owned(), 1000), ("w".to_owned(), 3600)]
        );
    }

    #[test]
    fn the_remaining_quota_parses_as_the_draft_says() {
        let quotas = [Quota::per_second(5).with_burst(10), Quota::per_day(100)];
        let value = remaining(quotas.iter().zip([
            Left {
                remaining: 7,
                reset: Duration::from_millis(200),
            },
            Left {
                remaining: 100,
                reset: Duration::ZERO,
            },
        ]))
        .expect("a header value");
        let list = parse_list(&value);
        assert_eq!(
            member(&list, 0),
            (
                "per-second".to_owned(),
                vec![("r".to_owned(), 7), ("t".to_owned(), 1)]
            )
        );
        assert_eq!(
            member(&list, 1),
            (
                "per-day".to_owned(),
                vec![("r".to_owned(), 100), ("t".to_owned(), 0)]
            )
        );
    }

    #[test]
    fn the_refusal() {
        let quota = Quota::per_second(1);
        let response: Response<Full<Bytes>> =
            too_many_requests(Duration::from_millis(1_500), &[&quota]);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(OutcomeHint::of(&response), Some(OutcomeHint::Rejected));
        let short: Response<Full<Bytes>> = too_many_requests(Duration::ZERO, &[&quota]);
        assert_eq!(short.headers()[RETRY_AFTER], "1");
    }
}
