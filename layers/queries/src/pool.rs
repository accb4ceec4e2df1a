//! Pool vitals: how full a connection pool is, who waits for it, who holds it — the quiet
//! failure behind "intermittent slowdowns with no CPU or memory spike".
//!
//! [`PoolVitals`] samples a pool on a timer (never on a request's path) and exports
//! OpenTelemetry's database-client connection metrics (semantic conventions v1.36.0, status
//! development) through the `metrics` facade when the `metrics` feature is on:
//!
//! | metric | kind | attributes |
//! |---|---|---|
//! | `db.client.connections.usage` (the conventions' `db.client.connection.count`: see [`CONNECTION_COUNT`](crate::metrics::CONNECTION_COUNT)) | gauge | `db.client.connection.pool.name`, `db.client.connection.state` (`idle`, `used`) |
//! | `db.client.connection.max` | gauge | `db.client.connection.pool.name` |
//! | `db.client.connection.pending_requests` | gauge | `db.client.connection.pool.name` |
//! | `db.client.connection.wait_time` | histogram, seconds | `db.client.connection.pool.name` |
//! | `db.client.connection.timeouts` | counter | `db.client.connection.pool.name` |
//!
//! sqlx's pools do not say how many tasks wait for a connection; acquiring through
//! [`PoolVitals::acquire`] (or [`PoolVitals::track`] for another pool) counts acquires started
//! and not yet ended, times each wait, counts timeouts, and remembers which route holds each
//! connection since when. When requests keep waiting for
//! [`with_exhaustion_after`](PoolVitalsBuilder::with_exhaustion_after) (default 1 s; each sample
//! finding one that has waited a tenth of it at least), one WARN and one finding per episode
//! say so: `pool exhausted: 12 waiting, max 10, longest wait
//! 340 ms`, with the routes holding connections longest.
//!
//! ```no_run
//! # #[cfg(feature = "sqlx")]
//! # async fn wire(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
//! use vitals_queries::pool::PoolVitals;
//!
//! let vitals = PoolVitals::new("main", pool.clone()).spawn()?;
//! // In a handler: acquire through the vitals, use the connection as sqlx's own.
//! let mut connection = vitals.acquire(&pool).await?;
//! let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut **connection).await?;
//! # let _ = one; Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use vitals_core::findings::{Finding, Findings};
use vitals_core::route::RouteLabel;

use crate::index::SpawnError;

/// What a pool says about itself at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolSample {
    /// Connections lent out.
    pub used: u64,
    /// Connections open and idle.
    pub idle: u64,
    /// The most connections the pool opens.
    pub max: u64,
    /// Requests waiting for a connection, if the pool counts them (sqlx's does not: acquires
    /// through [`PoolVitals`] are counted instead).
    pub pending: Option<u64>,
}

/// A pool [`PoolVitals`] can sample: implemented for sqlx's pools (feature `sqlx`); implement
/// it for any other pool (deadpool, bb8, …) from its status call. It is called by the
/// sampler's timer and when the dashboard reads the pool — never on a request's path — so it
/// may take the pool's lock.
pub trait PoolStats: Send + Sync + 'static {
    /// The pool's state now.
    fn sample(&self) -> PoolSample;
}

#[cfg(feature = "sqlx")]
impl<DB: sqlx::Database> PoolStats for sqlx::Pool<DB> {
    fn sample(&self) -> PoolSample {
        let size = u64::from(self.size());
        let idle = u64::try_from(self.num_idle()).unwrap_or(u64::MAX).min(size);
        PoolSample {
            used: size - idle,
            idle,
            max: u64::from(self.options().get_max_connections()),
            pending: None,
        }
    }
}

/// How often the pool is sampled when not told otherwise.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// How long requests must keep waiting before the pool is reported exhausted.
pub const DEFAULT_EXHAUSTION_AFTER: Duration = Duration::from_secs(1);

/// Routes named in an exhaustion report, at most.
const HOLDERS_REPORTED: usize = 5;

/// [`PoolVitals`] before [`spawn`](Self::spawn).
pub struct PoolVitalsBuilder {
    name: String,
    stats: Box<dyn PoolStats>,
    interval: Duration,
    exhaustion_after: Duration,
    findings: Option<Findings>,
}

impl fmt::Debug for PoolVitalsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolVitalsBuilder")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("exhaustion_after", &self.exhaustion_after)
            .finish_non_exhaustive()
    }
}

impl PoolVitalsBuilder {
    /// How often the pool is sampled (default 250 ms; at least 10 ms).
    #[must_use]
    pub fn with_sample_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long requests must keep waiting for a connection before the pool is reported
    /// exhausted (default 1 s).
    #[must_use]
    pub fn with_exhaustion_after(mut self, after: Duration) -> Self {
        self.exhaustion_after = after;
        self
    }

    /// Where exhaustion findings go (the dashboard's ring); they are logged at WARN either
    /// way.
    #[must_use]
    pub fn with_findings(mut self, findings: Findings) -> Self {
        self.findings = Some(findings);
        self
    }

    /// Starts the sampler on the current Tokio runtime; it stops when the last clone of the
    /// returned vitals is dropped.
    ///
    /// # Errors
    ///
    /// [`SpawnError`] outside a Tokio runtime.
    pub fn spawn(self) -> Result<PoolVitals, SpawnError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError)?;
        let inner = Arc::new(Inner {
            #[cfg(feature = "metrics")]
            metrics: PoolMetrics::new(&self.name),
            name: self.name,
            stats: self.stats,
            next: AtomicU64::new(0),
            waiting: Mutex::default(),
            held: Mutex::default(),
            timeouts: AtomicU64::new(0),
            acquires: AtomicU64::new(0),
            episode: Mutex::default(),
            exhaustion_after: self.exhaustion_after,
            findings: self.findings,
        });
        runtime.spawn(sample_every(Arc::downgrade(&inner), self.interval));
        Ok(PoolVitals { inner })
    }
}

/// A pool's vitals: see the [module documentation](self). Cheap to clone.
#[derive(Clone)]
pub struct PoolVitals {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    stats: Box<dyn PoolStats>,
    next: AtomicU64,
    /// Acquires started and not ended: when each started.
    waiting: Mutex<HashMap<u64, Instant>>,
    /// Connections lent through the vitals: the route holding each, since when.
    held: Mutex<HashMap<u64, (RouteLabel, Instant)>>,
    timeouts: AtomicU64,
    acquires: AtomicU64,
    /// When the current run of samples with waiters began, and whether it was reported.
    episode: Mutex<Episode>,
    exhaustion_after: Duration,
    findings: Option<Findings>,
    #[cfg(feature = "metrics")]
    metrics: PoolMetrics,
}

/// A pool's state as [`PoolVitals::snapshot`] reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolSnapshot {
    /// The pool's name.
    pub name: String,
    /// What the pool said.
    pub sample: PoolSample,
    /// Requests waiting for a connection now: the pool's own count, else the acquires through
    /// the vitals not yet ended.
    pub pending: u64,
    /// How long the oldest waiter has waited.
    pub longest_wait: Duration,
    /// Acquires through the vitals since the start.
    pub acquires: u64,
    /// Of them, those that timed out.
    pub timeouts: u64,
    /// The routes holding connections lent through the vitals, longest first, with how long.
    pub holders: Vec<(String, Duration)>,
}

impl PoolVitals {
    /// Vitals for the pool `stats`, named `name` (the `db.client.connection.pool.name`
    /// attribute): sampled every 250 ms, exhaustion reported after 1 s of waiting.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>, stats: impl PoolStats) -> PoolVitalsBuilder {
        PoolVitalsBuilder {
            name: name.into(),
            stats: Box::new(stats),
            interval: DEFAULT_SAMPLE_INTERVAL,
            exhaustion_after: DEFAULT_EXHAUSTION_AFTER,
            findings: None,
        }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Acquires a connection from sqlx's `pool`, counted as waiting until it arrives, then
    /// as held by the current request's route until dropped. Use it as the connection:
    /// `query.fetch_all(&mut **connection)`.
    ///
    /// # Errors
    ///
    /// sqlx's error: `PoolTimedOut` (counted in `db.client.connection.timeouts`), or the
    /// connection could not be opened.
    #[cfg(feature = "sqlx")]
    pub async fn acquire<DB: sqlx::Database>(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<Held<sqlx::pool::PoolConnection<DB>>, sqlx::Error> {
        self.track(pool.acquire(), |error| {
            matches!(error, sqlx::Error::PoolTimedOut)
        })
        .await
    }

    /// Tracks any pool's acquire future: counted as waiting until it resolves, its wait timed,
    /// an error for which `timed_out` says so counted as a timeout, and the connection
    /// counted as held by the current request's route until the returned guard is dropped.
    ///
    /// # Errors
    ///
    /// The acquire's own error.
    pub async fn track<T, E>(
        &self,
        acquire: impl Future<Output = Result<T, E>>,
        timed_out: impl FnOnce(&E) -> bool,
    ) -> Result<Held<T>, E> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        lock(&self.inner.waiting).insert(id, started);
        // Removed from the waiters however the acquire ends, cancelled included.
        let in_line = Waiter {
            inner: &self.inner,
            id,
        };
        let result = acquire.await;
        drop(in_line);
        let waited = started.elapsed();
        self.inner.acquires.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.inner.metrics.wait_time.record(waited.as_secs_f64());
        let ledger = crate::current_ledger();
        if let Some(ledger) = &ledger {
            // The request's `db-pool` entry in `Server-Timing`.
            ledger.record_pool_wait(waited);
        }
        match result {
            Ok(connection) => {
                let route = ledger
                    .and_then(|ledger| ledger.route().cloned())
                    .unwrap_or_else(|| RouteLabel::from_static("(no request)"));
                lock(&self.inner.held).insert(id, (route, Instant::now()));
                Ok(Held {
                    connection,
                    inner: Arc::clone(&self.inner),
                    id,
                })
            }
            Err(error) => {
                if timed_out(&error) {
                    self.inner.timeouts.fetch_add(1, Ordering::Relaxed);
                    #[cfg(feature = "metrics")]
                    self.inner.metrics.timeouts.increment(1);
                }
                Err(error)
            }
        }
    }

    /// The pool's state now (what the sampler reads).
    pub fn snapshot(&self) -> PoolSnapshot {
        self.inner.snapshot(Instant::now())
    }
}

impl fmt::Debug for PoolVitals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolVitals")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

struct Waiter<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        lock(&self.inner.waiting).remove(&self.id);
    }
}

/// A connection lent through [`PoolVitals`]: use it as the connection itself; dropping it
/// returns the connection to its pool and ends the hold.
pub struct Held<T> {
    connection: T,
    inner: Arc<Inner>,
    id: u64,
}

impl<T> Deref for Held<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.connection
    }
}

impl<T> DerefMut for Held<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.connection
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        lock(&self.inner.held).remove(&self.id);
    }
}

impl<T> fmt::Debug for Held<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("pool", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn snapshot(&self, now: Instant) -> PoolSnapshot {
        let sample = self.stats.sample();
        let (tracked, oldest) = {
            let waiting = lock(&self.waiting);
            (
                u64::try_from(waiting.len()).unwrap_or(u64::MAX),
                waiting.values().min().copied(),
            )
        };
        let mut holders: Vec<(String, Duration)> = lock(&self.held)
            .values()
            .map(|(route, since)| {
                (
                    route.as_str().to_owned(),
                    now.saturating_duration_since(*since),
                )
            })
            .collect();
        holders.sort_by_key(|(_, held)| std::cmp::Reverse(*held));
        PoolSnapshot {
            name: self.name.clone(),
            sample,
            pending: sample.pending.unwrap_or(tracked),
            longest_wait: oldest
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since)),
            acquires: self.acquires.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            holders,
        }
    }

    /// One tick of the sampler: the gauges, and the exhaustion rule.
    fn sample(&self, now: Instant) {
        let snapshot = self.snapshot(now);
        #[cfg(feature = "metrics")]
        self.metrics.set(&snapshot);
        let report = {
            let mut episode = lock(&self.episode);
            let (next, report) = exhaustion(
                *episode,
                snapshot.pending,
                snapshot.longest_wait,
                now,
                self.exhaustion_after,
            );
            *episode = next;
            report
        };
        if report {
            self.report(&snapshot);
        }
    }

    #[cold]
    fn report(&self, snapshot: &PoolSnapshot) {
        let longest_wait_ms = millis(snapshot.longest_wait);
        // Each route once, with its longest hold (the holders come longest first).
        let mut holders: Vec<(String, f64)> = Vec::new();
        for (route, held) in &snapshot.holders {
            if holders.len() == HOLDERS_REPORTED {
                break;
            }
            if !holders.iter().any(|(seen, _)| seen == route) {
                holders.push((route.clone(), millis(*held)));
            }
        }
        let named: Vec<String> = holders
            .iter()
            .map(|(route, held_ms)| format!("{route} ({held_ms} ms)"))
            .collect();
        tracing::warn!(
            target: "vitals_queries",
            waiting = snapshot.pending,
            db.client.connection.pool.name = %self.name,
            max = snapshot.sample.max,
            longest_wait_ms,
            holders = %named.join(", "),
            "pool exhausted: {} waiting, max {}, longest wait {longest_wait_ms} ms",
            snapshot.pending,
            snapshot.sample.max,
        );
        if let Some(findings) = &self.findings {
            findings.push(Finding::PoolExhausted {
                pool: self.name.clone(),
                waiting: snapshot.pending,
                max: snapshot.sample.max,
                longest_wait_ms,
                holders,
            });
        }
    }
}

/// An exhaustion episode: since when requests have been kept waiting, and whether it was
/// reported.
type Episode = Option<(Instant, bool)>;

/// The exhaustion rule, a pure function of the episode so far and one sample: the episode
/// after it, and whether to report it now.
///
/// A sample is starved when a request waits and the oldest waiter has waited at least a tenth
/// of `after` (a busy pool whose acquires take microseconds always has someone in flight, and
/// is not exhausted). The episode began when the oldest waiter started waiting; it is reported
/// once, when it has lasted `after`, and ends at the first sample that is not starved.
pub(crate) fn exhaustion(
    episode: Episode,
    pending: u64,
    longest_wait: Duration,
    now: Instant,
    after: Duration,
) -> (Episode, bool) {
    let starved = pending > 0 && longest_wait >= after / 10;
    if !starved {
        return (None, false);
    }
    let began = now.checked_sub(longest_wait).unwrap_or(now);
    let since = episode.map_or(began, |(since, _)| since.min(began));
    let reported = episode.is_some_and(|(_, reported)| reported);
    let due = !reported && now.saturating_duration_since(since) >= after;
    (Some((since, reported || due)), due)
}

async fn sample_every(inner: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.sample(Instant::now());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(feature = "metrics")]
struct PoolMetrics {
    idle: metrics::Gauge,
    used: metrics::Gauge,
    max: metrics::Gauge,
    pending: metrics::Gauge,
    wait_time: metrics::Histogram,
    timeouts: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl PoolMetrics {
    fn new(name: &str) -> Self {
        use crate::metrics::{
            CONNECTION_COUNT, CONNECTION_MAX, CONNECTION_PENDING, CONNECTION_STATE,
            CONNECTION_TIMEOUTS, CONNECTION_WAIT_TIME, POOL_NAME,
        };
        let pool = name.to_owned();
        Self {
            idle: metrics::gauge!(CONNECTION_COUNT, POOL_NAME => pool.clone(), CONNECTION_STATE => "idle"),
            used: metrics::gauge!(CONNECTION_COUNT, POOL_NAME => pool.clone(), CONNECTION_STATE => "used"),
            max: metrics::gauge!(CONNECTION_MAX, POOL_NAME => pool.clone()),
            pending: metrics::gauge!(CONNECTION_PENDING, POOL_NAME => pool.clone()),
            wait_time: metrics::histogram!(CONNECTION_WAIT_TIME, POOL_NAME => pool.clone()),
            timeouts: metrics::counter!(CONNECTION_TIMEOUTS, POOL_NAME => pool),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn set(&self, snapshot: &PoolSnapshot) {
        self.idle.set(snapshot.sample.idle as f64);
        self.used.set(snapshot.sample.used as f64);
        self.max.set(snapshot.sample.max as f64);
        self.pending.set(snapshot.pending as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_reported_once_an_episode_after_its_time() {
        let after = Duration::from_secs(1);
        let t0 = Instant::now() + Duration::from_secs(10);
        let at = |ms| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        // Nobody waits, or only for moments (a busy pool, not an exhausted one).
        assert_eq!(exhaustion(None, 0, ms(0), t0, after), (None, false));
        assert_eq!(exhaustion(None, 30, ms(99), t0, after), (None, false));
        // Waiting long enough to count: the episode began when the oldest waiter did.
        let (episode, report) = exhaustion(None, 3, ms(100), t0, after);
        assert_eq!(
            (episode, report),
            (Some((t0.checked_sub(ms(100)).unwrap(), false)), false)
        );
        let (episode, report) = exhaustion(episode, 3, ms(500), at(899), after);
        assert!(!report, "899 ms + 100 ms before: not yet");
        let (episode, report) = exhaustion(episode, 3, ms(300), at(900), after);
        assert!(report, "a second since the episode began");
        let (episode, report) = exhaustion(episode, 3, ms(4_000), at(5_000), after);
        assert!(!report, "once an episode");
        assert_eq!(
            exhaustion(episode, 0, ms(0), at(5_100), after),
            (None, false)
        );
        // A single request waiting past the whole time is reported at the first sample.
        assert!(exhaustion(None, 1, ms(1_200), at(6_000), after).1);
    }

    /// A pool of fixed size whose connections are unit values: the tracking (the sqlx pools
    /// are in the shop's tests).
    struct Fixed;

    impl PoolStats for Fixed {
        fn sample(&self) -> PoolSample {
            PoolSample {
                used: 2,
                idle: 0,
                max: 2,
                pending: None,
            }
        }
    }

    #[tokio::test]
    async fn waiters_holders_and_timeouts_are_counted_and_cancelled_waits_leave_no_trace() {
        let findings = Findings::new(10);
        let vitals = PoolVitals::new("test", Fixed)
            .with_sample_interval(Duration::from_millis(10))
            .with_exhaustion_after(Duration::from_millis(50))
            .with_findings(findings.clone())
            .spawn()
            .unwrap();
        let held = vitals
            .track(async { Ok::<_, ()>(1) }, |()| false)
            .await
            .unwrap();
        assert_eq!(*held, 1);
        assert_eq!(vitals.snapshot().holders.len(), 1);
        let never = vitals.track(std::future::pending::<Result<(), ()>>(), |()| false);
        let waiting = tokio::time::timeout(Duration::from_millis(150), never).await;
        assert!(waiting.is_err(), "still waiting when cancelled");
        assert_eq!(vitals.snapshot().pending, 0, "the cancelled wait is gone");
        let recent = findings.recent();
        let Some(Finding::PoolExhausted {
            pool,
            waiting,
            max,
            longest_wait_ms,
            holders,
        }) = recent.first().map(|r| &r.finding)
        else {
            panic!("no exhaustion finding: {recent:?}");
        };
        assert_eq!((pool.as_str(), *waiting, *max), ("test", 1, 2));
        assert!(*longest_wait_ms >= 50.0, "{longest_wait_ms}");
        assert_eq!(holders[0].0, "(no request)");
        assert_eq!(recent.len(), 1, "once an episode");
        let timed_out = vitals
            .track(async { Err::<(), _>("timed out") }, |_| true)
            .await;
        assert!(timed_out.is_err());
        drop(held);
        let snapshot = vitals.snapshot();
        assert_eq!((snapshot.acquires, snapshot.timeouts), (2, 1));
        assert!(snapshot.holders.is_empty());
    }
}
