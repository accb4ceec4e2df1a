//! A quota: how many requests one key may make, as a rate and a burst (GCRA, the generic cell
//! rate algorithm).
//!
//! A quota of `n` per period lets a key make `n` requests at once and then one more every
//! `period / n`: over any window of length `T` a key gets at most `burst + T · rate` requests,
//! and a client that keeps to the rate is never refused. [`Quota::with_burst`] changes how many
//! may come at once without changing the rate.
//!
//! ```
//! use std::time::Duration;
//! use vitals_rate_limit::Quota;
//!
//! // 5 requests a second, up to 10 at once.
//! let quota = Quota::per_second(5).with_burst(10);
//! assert_eq!(quota.burst(), 10);
//! assert_eq!(quota.interval(), Duration::from_millis(200));
//! // Advertised as a window: 10 requests per 2 seconds.
//! assert_eq!(quota.window_seconds(), 2);
//! assert_eq!(quota.name(), "per-second");
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A rate and a burst for one key, with the name its `RateLimit` headers carry.
#[derive(Clone, PartialEq, Eq)]
pub struct Quota {
    name: Arc<str>,
    burst: NonZeroU32,
    /// The time one request's share of the quota takes to come back.
    interval: Duration,
    /// Refuse (503) rather than allow when the quotas' store does not answer.
    fail_closed: bool,
}

/// Why a quota could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// A quota of zero requests, or a zero burst.
    Zero,
    /// The period is zero, too short to hand out one request per nanosecond, or so long
    /// (with the burst) that the time a spent burst takes to come back passes 100 years.
    Period,
    /// A name that is empty, longer than 64 characters, or not printable ASCII (it is sent as a
    /// structured-field string).
    Name(String),
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("a quota needs at least one request and a burst of one"),
            Self::Period => f.write_str(
                "a quota's period must be at least one nanosecond per request, and a spent burst \
                 must come back within 100 years",
            ),
            Self::Name(name) => write!(
                f,
                "quota name {name:?}: 1 to 64 printable ASCII characters, no double quote or backslash"
            ),
        }
    }
}

impl std::error::Error for QuotaError {}

impl Quota {
    /// `requests` per `period`, all of them allowed at once (burst = `requests`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use vitals_rate_limit::{Quota, QuotaError};
    ///
    /// let quota = Quota::try_new(100, Duration::from_secs(60))?;
    /// assert_eq!(quota.interval(), Duration::from_millis(600));
    /// assert_eq!(Quota::try_new(0, Duration::from_secs(1)), Err(QuotaError::Zero));
    /// # Ok::<(), QuotaError>(())
    /// ```
    pub fn try_new(requests: u32, period: Duration) -> Result<Self, QuotaError> {
        let burst = NonZeroU32::new(requests).ok_or(QuotaError::Zero)?;
        let interval = period / requests;
        check_window(interval, burst)?;
        Ok(Self {
            name: Arc::from(default_name(period)),
            burst,
            interval,
            fail_closed: false,
        })
    }

    /// `requests` a second. Named `per-second`.
    ///
    /// # Panics
    ///
    /// When `requests` is zero or over 1,000,000,000 (less than a nanosecond each: settings
    /// written in code; use [`try_new`](Self::try_new) for values from outside).
    pub fn per_second(requests: u32) -> Self {
        Self::checked(requests, Duration::from_secs(1))
    }

    /// `requests` a minute. Named `per-minute`.
    ///
    /// # Panics
    ///
    /// When `requests` is zero.
    pub fn per_minute(requests: u32) -> Self {
        Self::checked(requests, Duration::from_mins(1))
    }

    /// `requests` an hour. Named `per-hour`.
    ///
    /// # Panics
    ///
    /// When `requests` is zero.
    pub fn per_hour(requests: u32) -> Self {
        Self::checked(requests, Duration::from_hours(1))
    }

    /// `requests` a day. Named `per-day`.
    ///
    /// # Panics
    ///
    /// When `requests` is zero.
    pub fn per_day(requests: u32) -> Self {
        Self::checked(requests, Duration::from_hours(24))
    }

    fn checked(requests: u32, period: Duration) -> Self {
        match Self::try_new(requests, period) {
            Ok(quota) => quota,
            Err(error) => panic!("vitals_rate_limit::Quota: {error}"),
        }
    }

    /// Up to `burst` requests at once; the rate stays as it was.
    ///
    /// # Panics
    ///
    /// When `burst` is zero (use [`try_with_burst`](Self::try_with_burst) for values from
    /// outside).
    #[must_use]
    pub fn with_burst(self, burst: u32) -> Self {
        match self.try_with_burst(burst) {
            Ok(quota) => quota,
            Err(error) => panic!("vitals_rate_limit::Quota::with_burst: {error}"),
        }
    }

    /// [`with_burst`](Self::with_burst), with an error for a zero burst.
    pub fn try_with_burst(mut self, burst: u32) -> Result<Self, QuotaError> {
        self.burst = NonZeroU32::new(burst).ok_or(QuotaError::Zero)?;
        check_window(self.interval, self.burst)?;
        Ok(self)
    }

    /// The name the `RateLimit-Policy` and `RateLimit` headers, the metrics and the dashboard
    /// show: give two quotas on one route different names.
    ///
    /// # Panics
    ///
    /// When the name is not 1 to 64 printable ASCII characters, or holds `"` or `\` (use
    /// [`try_named`](Self::try_named) for values from outside).
    #[must_use]
    pub fn named(self, name: &str) -> Self {
        match self.try_named(name) {
            Ok(quota) => quota,
            Err(error) => panic!("vitals_rate_limit::Quota::named: {error}"),
        }
    }

    /// [`named`](Self::named), with an error for a name the headers cannot carry.
    pub fn try_named(mut self, name: &str) -> Result<Self, QuotaError> {
        if !is_valid_name(name) {
            return Err(QuotaError::Name(name.to_owned()));
        }
        self.name = Arc::from(name);
        Ok(self)
    }

    /// When the quotas' store (Redis) does not answer, refuse the request with `503` and
    /// `Retry-After: 1` instead of allowing it (the default: a rate limit outage should not
    /// become a service outage). For quotas that protect something worse than the service
    /// answering: a paid downstream, an abuse-prone endpoint. In process, nothing can fail.
    #[must_use]
    pub fn with_fail_closed(mut self) -> Self {
        self.fail_closed = true;
        self
    }

    /// Whether the quota refuses when its store does not answer.
    pub fn fails_closed(&self) -> bool {
        self.fail_closed
    }

    /// The quota's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many requests may come at once.
    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The time one request's share of the quota takes to come back (the period divided by
    /// the requests).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The window the headers advertise: the time a spent burst takes to come back, in whole
    /// seconds rounded up (the draft's `w` has no fractions), at least 1.
    pub fn window_seconds(&self) -> u64 {
        let nanos = self.interval.as_nanos() * u128::from(self.burst.get());
        u64::try_from(nanos.div_ceil(1_000_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn to_governor(&self) -> governor::Quota {
        // `interval` is never zero (checked when made), so `with_period` always answers.
        governor::Quota::with_period(self.interval)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("name", &self.name)
            .field("burst", &self.burst)
            .field("interval", &self.interval)
            .field("fail_closed", &self.fail_closed)
            .finish()
    }
}

/// The longest time a spent burst may take to come back: GCRA adds it to the clock in 64-bit
/// nanoseconds (governor) and microseconds (the Redis script), so it is kept far from either's
/// limit.
const LONGEST_WINDOW: Duration = Duration::from_hours(100 * 365 * 24);

fn check_window(interval: Duration, burst: NonZeroU32) -> Result<(), QuotaError> {
    let window = interval.as_nanos() * u128::from(burst.get());
    if interval.is_zero() || window > LONGEST_WINDOW.as_nanos() {
        return Err(QuotaError::Period);
    }
    Ok(())
}

fn default_name(period: Duration) -> String {
    match period.as_secs() {
        1 if period.subsec_nanos() == 0 => "per-second".to_owned(),
        60 if period.subsec_nanos() == 0 => "per-minute".to_owned(),
        3_600 if period.subsec_nanos() == 0 => "per-hour".to_owned(),
        86_400 if period.subsec_nanos() == 0 => "per-day".to_owned(),
        _ => format!("per-{}ms", period.as_millis()),
    }
}

/// A name a structured-field string carries as it is: printable ASCII without `"` and `\`
/// (which would need escapes), 1 to 64 characters.
fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_bursts() {
        let quota = Quota::per_minute(30);
        assert_eq!(quota.burst(), 30);
        assert_eq!(quota.interval(), Duration::from_secs(2));
        assert_eq!(quota.window_seconds(), 60);
        let quota = quota.with_burst(3);
        assert_eq!(quota.interval(), Duration::from_secs(2));
        assert_eq!(quota.window_seconds(), 6);
        // 3 a second with a burst of 10: a spent burst is back in 3.33 s, advertised as 4.
        assert_eq!(Quota::per_second(3).with_burst(10).window_seconds(), 4);
        assert_eq!(Quota::per_second(1000).with_burst(1).window_seconds(), 1);
    }

    #[test]
    fn bad_settings_are_errors() {
        assert_eq!(
            Quota::try_new(0, Duration::from_secs(1)),
            Err(QuotaError::Zero)
        );
        assert_eq!(Quota::try_new(5, Duration::ZERO), Err(QuotaError::Period));
        assert_eq!(
            Quota::try_new(10, Duration::from_nanos(5)),
            Err(QuotaError::Period)
        );
        assert_eq!(
            Quota::per_second(1).try_with_burst(0),
            Err(QuotaError::Zero)
        );
        // A spent burst that would take a million years to come back.
        assert_eq!(
            Quota::per_day(1).try_with_burst(u32::MAX),
            Err(QuotaError::Period)
        );
        assert_eq!(
            Quota::try_new(1, Duration::from_secs(u64::MAX)),
            Err(QuotaError::Period)
        );
        assert!(Quota::per_day(1).try_with_burst(30 * 365).is_ok());
        for bad in ["", "say \"hi\"", "a\\b", "tab\there", "é", &"x".repeat(65)] {
            assert_eq!(
                Quota::per_second(1).try_named(bad),
                Err(QuotaError::Name(bad.to_owned()))
            );
        }
        assert_eq!(Quota::per_second(1).named("burst 1/s").name(), "burst 1/s");
    }

    #[test]
    fn default_names() {
        assert_eq!(Quota::per_second(1).name(), "per-second");
        assert_eq!(Quota::per_hour(1).name(), "per-hour");
        assert_eq!(Quota::per_day(1).name(), "per-day");
        let odd =
            Quota::try_new(1, Duration::from_millis(1_500)).map(|quota| quota.name().to_owned());
        assert_eq!(odd.as_deref(), Ok("per-1500ms"));
    }

    #[test]
    #[should_panic(expected = "at least one request")]
    fn zero_in_code_panics_with_the_reason() {
        let _ = Quota::per_second(0);
    }
}
