//! What may be retried, and after how long: plain rules, no I/O, each tested by itself.

use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, Method, StatusCode};

/// The request header that makes a non-idempotent request safe to send twice.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether sending the request twice does no more than sending it once: an idempotent method
/// (RFC 9110 §9.2.2), or a request carrying `Idempotency-Key`.
pub(crate) fn may_repeat(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key(IDEMPOTENCY_KEY)
}

/// Whether an answer with `status` is worth trying again: the downstream (or a proxy before
/// it) was unavailable or overloaded, not the request wrong.
pub(crate) fn retriable_status(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// The wait a response asks for with `Retry-After` (delta-seconds or an HTTP date), from `now`;
/// `None` without one, or with one that does not parse. A date in the past is no wait.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before retry number `retry` (1 for the first): "full jitter" — a uniform draw from
/// zero to the exponential bound `base · 2^(retry−1)`, capped at `cap` — so that clients that
/// failed together do not come back together. `unit` is a uniform draw from `[0, 1)`.
pub(crate) fn backoff(retry: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(30);
    let bound = base.saturating_mul(1 << exponent).min(cap);
    bound.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_that_can_repeat_are_retried() {
        let none = HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(may_repeat(&method, &none), "{method}");
        }
        assert!(!may_repeat(&Method::POST, &none));
        assert!(!may_repeat(&Method::PATCH, &none));
        let mut keyed = HeaderMap::new();
        keyed.insert(
            IDEMPOTENCY_KEY,
            http::HeaderValue::from_static("\"order-7\""),
        );
        assert!(may_repeat(&Method::POST, &keyed));
    }

    #[test]
    fn retriable_statuses_are_the_downstreams_trouble_only() {
        for status in [429, 502, 503, 504] {
            assert!(retriable_status(StatusCode::from_u16(status).unwrap()));
        }
        for status in [200, 400, 404, 409, 500, 501] {
            assert!(!retriable_status(StatusCode::from_u16(status).unwrap()));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, http::HeaderValue::from_static(value));
            retry_after(&headers, now)
        };
        assert_eq!(with("3"), Some(Duration::from_secs(3)));
        assert_eq!(with(" 0 "), Some(Duration::ZERO));
        // 1,000,000,120 seconds after the epoch; and one in the past.
        assert_eq!(
            with("Sun, 09 Sep 2001 01:48:40 GMT"),
            Some(Duration::from_mins(2))
        );
        assert_eq!(with("Sun, 09 Sep 2001 01:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(with("soon"), None);
        assert_eq!(with("-1"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_is_a_full_jitter_draw_under_a_capped_exponential_bound() {
        let base = Duration::from_millis(50);
        let cap = Duration::from_secs(1);
        assert_eq!(
            backoff(1, base, cap, 0.999_999),
            Duration::from_millis(50).mul_f64(0.999_999)
        );
        assert_eq!(backoff(3, base, cap, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(6, base, cap, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(u32::MAX, base, cap, 1.0), cap);
        assert_eq!(backoff(2, base, cap, 0.0), Duration::ZERO);
    }
}
