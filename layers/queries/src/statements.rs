//! Every statement a tracked request runs, watched as it is recorded: slow statements reported
//! (a WARN and a finding), statement timeouts told apart from other errors, the statement-time
//! histogram per fingerprint, and new statement shapes handed to the missing-index detector.
//!
//! The check on the hot path is one comparison of the statement's duration with the route's
//! threshold; what follows a slow statement is cold and rate-limited: one report per
//! fingerprint a minute, so a slow statement that runs a thousand times a second logs once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use vitals_core::findings::Finding;
use vitals_core::identity::TraceId;
use vitals_core::route::RouteLabel;

use crate::layer::Config;

/// The slow-statement threshold when none is set: 100 ms.
pub const DEFAULT_SLOW_STATEMENT: Duration = Duration::from_millis(100);

/// Mixed into a shape's key to rate-limit its timeouts apart from its slow runs.
const TIMEOUT_SALT: u64 = 0x7469_6d65_6f75_7421;

/// How often one statement shape is reported slow at most.
pub const SLOW_REPORT_INTERVAL: Duration = Duration::from_mins(1);

/// The most statement shapes whose last report time is remembered; past it reports older than
/// the interval are forgotten, then the oldest one.
const MAX_REMEMBERED: usize = 4_096;

/// What the layer shares between the requests it watches: when each shape was last
/// reported slow, where findings go, the histogram series, the detector.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    reported: Mutex<HashMap<u64, Instant>>,
    #[cfg(feature = "metrics")]
    pub(crate) series: crate::metrics::StatementSeries,
}

/// One request's view of the layer's [`Watch`]: its route, trace id and threshold.
#[derive(Clone, Debug)]
pub(crate) struct RequestWatch {
    pub(crate) route: RouteLabel,
    pub(crate) trace_id: Option<TraceId>,
    /// `None`: slow statements are not reported on this route.
    pub(crate) threshold: Option<Duration>,
    pub(crate) config: Arc<Config>,
}

/// What the ledger tells the watch about one statement.
pub(crate) struct Seen<'a> {
    pub(crate) fingerprint: &'a Arc<str>,
    pub(crate) key: u64,
    pub(crate) statement: &'a str,
    pub(crate) duration: Duration,
    pub(crate) timed_out: bool,
}

impl RequestWatch {
    /// Called for every statement the request's ledger records.
    pub(crate) fn observe(&self, seen: &Seen<'_>) {
        let slow = is_slow(seen.duration, self.threshold);
        if slow || seen.timed_out {
            self.slow(seen);
        }
        #[cfg(feature = "metrics")]
        self.config
            .watch
            .series
            .record(seen.key, seen.fingerprint, seen.duration);
        if let Some(detector) = &self.config.detector {
            detector.consider(seen, &self.route, slow);
        }
    }

    /// A statement recorded before was cut at the statement timeout: reported as such (its
    /// time was already counted).
    #[cold]
    pub(crate) fn report_timeout(&self, seen: &Seen<'_>) {
        self.slow(seen);
    }

    #[cold]
    fn slow(&self, seen: &Seen<'_>) {
        // Timeouts of a shape are rate-limited apart from its slow runs: a statement both slow
        // and then cut is reported as cut.
        let key = if seen.timed_out {
            seen.key ^ TIMEOUT_SALT
        } else {
            seen.key
        };
        if !self.config.watch.due(key, Instant::now()) {
            return;
        }
        let duration_ms = millis(seen.duration);
        let threshold_ms = self.threshold.map_or(0.0, millis);
        let trace_id = self.trace_id.map(tracing::field::display);
        if seen.timed_out {
            tracing::warn!(
                target: "vitals_queries",
                fingerprint = %seen.fingerprint,
                http.route = %self.route,
                duration_ms,
                trace_id,
                "statement cut by the database's statement timeout after {duration_ms} ms"
            );
        } else {
            tracing::warn!(
                target: "vitals_queries",
                fingerprint = %seen.fingerprint,
                http.route = %self.route,
                duration_ms,
                threshold_ms,
                trace_id,
                "slow statement: {duration_ms} ms, threshold {threshold_ms} ms"
            );
        }
        if let Some(findings) = &self.config.findings {
            findings.push(Finding::SlowStatement {
                route: self.route.as_str().to_owned(),
                fingerprint: seen.fingerprint.to_string(),
                duration_ms,
                threshold_ms,
                timed_out: seen.timed_out,
                trace_id: self.trace_id.map(|id| id.to_string()),
            });
        }
    }
}

impl Watch {
    /// Whether the shape `key` may be reported now (and, if so, it is marked reported).
    fn due(&self, key: u64, now: Instant) -> bool {
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = reported.get(&key)
            && now.saturating_duration_since(*last) < SLOW_REPORT_INTERVAL
        {
            return false;
        }
        if reported.len() >= MAX_REMEMBERED {
            reported.retain(|_, last| now.saturating_duration_since(*last) < SLOW_REPORT_INTERVAL);
            // Every shape reported within the minute: the oldest report is forgotten.
            if reported.len() >= MAX_REMEMBERED
                && let Some(oldest) = reported
                    .iter()
                    .min_by_key(|(_, last)| **last)
                    .map(|(key, _)| *key)
            {
                reported.remove(&oldest);
            }
        }
        reported.insert(key, now);
        true
    }
}

/// Whether a statement that ran `duration` is slow under `threshold` (the hot-path rule).
#[inline]
pub fn is_slow(duration: Duration, threshold: Option<Duration>) -> bool {
    threshold.is_some_and(|threshold| duration >= threshold)
}

/// Whether a database error is a statement cut at the database's statement timeout, from its
/// SQLSTATE or SQLite result code and its message: PostgreSQL's `57014` with
/// "canceling statement due to statement timeout"; SQLite's `SQLITE_BUSY` (5) and
/// `SQLITE_LOCKED` (6) with their extended codes (`SQLITE_BUSY_TIMEOUT` 773,
/// `SQLITE_LOCKED_SHAREDCACHE` 262, …) — a statement that gave up waiting for a lock.
///
/// ```
/// use vitals_queries::is_timeout_error;
///
/// assert!(is_timeout_error(Some("57014"), "canceling statement due to statement timeout"));
/// assert!(!is_timeout_error(Some("57014"), "canceling statement due to user request"));
/// assert!(is_timeout_error(Some("5"), "database is locked"));
/// assert!(is_timeout_error(Some("262"), "database table is locked"));
/// assert!(!is_timeout_error(Some("42501"), "permission denied"));
/// assert!(is_timeout_error(None, "database is locked"));
/// assert!(!is_timeout_error(Some("23505"), "duplicate key value"));
/// ```
pub fn is_timeout_error(code: Option<&str>, message: &str) -> bool {
    let by_message = message.contains("statement timeout")
        || message.contains("database is locked")
        || message.contains("database table is locked");
    match code {
        // query_canceled: also a user's cancel, told apart by the message.
        Some("57014") => message.contains("statement timeout"),
        // Any other SQLSTATE (five characters) is no timeout.
        Some(code) if code.len() == 5 => false,
        // SQLite's result codes: the primary code is the low byte.
        Some(code) => code
            .parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6)),
        None => by_message,
    }
}

/// Whether sqlx's error is a statement cut at the database's statement timeout (see
/// [`is_timeout_error`]).
#[cfg(feature = "sqlx")]
pub fn is_sqlx_timeout(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => is_timeout_error(error.code().as_deref(), error.message()),
        _ => false,
    }
}

/// Marks a statement that failed with sqlx's `error` after `elapsed` in the current request's
/// ledger ([`QueryLedger::record_failure`](crate::QueryLedger::record_failure): sqlx's own
/// event recorded its time, not its error), as timed out when the database cut it at its
/// statement timeout — then reported as such (a WARN and a slow-statement finding marked
/// `timed_out`) and counted in `vitals.queries.statement_timeouts`. Returns whether it was a
/// timeout.
///
/// ```
/// use std::time::Duration;
///
/// let error = sqlx::Error::RowNotFound;
/// assert!(!vitals_queries::record_sqlx_error("SELECT 1", Duration::ZERO, &error));
/// ```
#[cfg(feature = "sqlx")]
pub fn record_sqlx_error(statement: &str, elapsed: Duration, error: &sqlx::Error) -> bool {
    let timed_out = is_sqlx_timeout(error);
    if matches!(error, sqlx::Error::Database(_))
        && let Some(ledger) = crate::current_ledger()
    {
        let message = error.to_string();
        let mut query = crate::Query::new(statement, elapsed).with_error(&message);
        if timed_out {
            query = query.with_timed_out();
        }
        ledger.record_failure(query);
    }
    timed_out
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_at_or_over_the_threshold_and_off_without_one() {
        let ms = Duration::from_millis;
        assert!(!is_slow(ms(99), Some(ms(100))));
        assert!(is_slow(ms(100), Some(ms(100))));
        assert!(is_slow(ms(5_000), Some(ms(100))));
        assert!(!is_slow(Duration::MAX, None));
    }

    #[test]
    fn a_shape_is_reported_once_an_interval() {
        let watch = Watch::default();
        let start = Instant::now();
        assert!(watch.due(1, start));
        assert!(!watch.due(1, start + Duration::from_secs(59)));
        assert!(
            watch.due(2, start + Duration::from_secs(59)),
            "another shape"
        );
        assert!(watch.due(1, start + SLOW_REPORT_INTERVAL));
    }

    #[test]
    fn the_memory_of_reports_is_bounded() {
        let watch = Watch::default();
        let now = Instant::now();
        for key in 0..(MAX_REMEMBERED as u64 * 3) {
            assert!(watch.due(key, now));
        }
        assert!(watch.reported.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
