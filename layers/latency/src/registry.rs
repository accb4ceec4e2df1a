//! `LatencyRegistry`: every series of one application, and the cardinality guard.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{Method, StatusCode};
use vitals_core::route::RouteLabel;
use vitals_core::semconv::{DURATION_BUCKETS_SECONDS, OTHER_METHOD, method_label};

use crate::method::MethodIndex;
use crate::series::{Series, SeriesKey, SeriesRef};
use crate::snapshot::{CumulativeSeries, SeriesSnapshot, Snapshot};
use crate::window::{SLOT, Window, WindowCounts};

/// The route label of the series that takes every request beyond the series cap.
pub const OVERFLOW_ROUTE: &str = "_overflow";
/// The default cap on series.
pub const DEFAULT_MAX_SERIES: usize = 2_000;

type SeriesMap = hashbrown::HashMap<SeriesKey, Arc<Series>>;

/// The latency series of one application, shared by every clone of [`LatencyLayer`]
/// (cheap to clone: clones share the series). Make one per application; tests make their own.
///
/// ```
/// use std::time::Duration;
/// use http::{Method, StatusCode};
/// use vitals_latency::{LatencyRegistry, Window};
///
/// let registry = LatencyRegistry::new();
/// for ms in 1..=100 {
///     registry.record("/products/{id}", &Method::GET, StatusCode::OK, Duration::from_millis(ms), false);
/// }
/// let snapshot = registry.snapshot(Window::OneMinute);
/// let series = &snapshot.series[0];
/// assert_eq!(series.count, 100);
/// let p99 = series.p99_ms.unwrap();
/// assert!((p99 - 99.0).abs() <= 99.0 * 0.01, "{p99}");
/// ```
///
/// [`LatencyLayer`]: crate::LatencyLayer
#[derive(Clone)]
pub struct LatencyRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unique per registry (never reused), for the per-thread series cache.
    id: u64,
    origin: Instant,
    /// The latest epoch a record was counted in: records ending later are checked against
    /// the clock (a caller's `end` in the future must not recycle a live slot).
    latest_epoch: AtomicU64,
    max_series: usize,
    /// Export bucket boundaries (`le`), in nanoseconds and as configured in seconds.
    boundaries: Box<[u64]>,
    boundaries_seconds: Box<[f64]>,
    /// Read on every request without a lock; replaced whole when a series is added (rare: at
    /// most `max_series` times).
    series: ArcSwap<SeriesMap>,
    adding: Mutex<()>,
    overflow: Arc<Series>,
    overflowed: AtomicU64,
    #[cfg(feature = "metrics")]
    active: crate::metrics::ActiveGauges,
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::otel::Instruments>,
}

/// Configures a [`LatencyRegistry`].
#[derive(Clone, Debug)]
#[must_use]
pub struct LatencyRegistryBuilder {
    max_series: usize,
    buckets_seconds: Vec<f64>,
    #[cfg(feature = "opentelemetry")]
    meter: Option<opentelemetry::metrics::Meter>,
}

impl Default for LatencyRegistryBuilder {
    fn default() -> Self {
        Self {
            max_series: DEFAULT_MAX_SERIES,
            buckets_seconds: DURATION_BUCKETS_SECONDS.to_vec(),
            #[cfg(feature = "opentelemetry")]
            meter: None,
        }
    }
}

impl LatencyRegistryBuilder {
    /// The cap on series (default 2,000): requests of new series beyond it count in one
    /// overflow series ([`OVERFLOW_ROUTE`]). At least 1.
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max.max(1);
        self
    }

    /// The `le` boundaries of the exported histogram, in seconds (default: OpenTelemetry's
    /// recommended [`DURATION_BUCKETS_SECONDS`]). Non-finite and non-positive values are dropped,
    /// the rest sorted and deduplicated. Local quantiles do not depend on these.
    pub fn with_export_buckets(mut self, seconds: impl IntoIterator<Item = f64>) -> Self {
        let mut buckets: Vec<f64> = seconds
            .into_iter()
            .filter(|s| s.is_finite() && *s > 0.0)
            .collect();
        buckets.sort_by(f64::total_cmp);
        buckets.dedup();
        self.buckets_seconds = buckets;
        self
    }

    /// Also records into this OpenTelemetry meter: `http.server.request.duration` (seconds,
    /// with the export boundaries set explicitly) and `http.server.active_requests`.
    #[cfg(feature = "opentelemetry")]
    pub fn with_meter(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> LatencyRegistry {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let boundaries: Box<[u64]> = self
            .buckets_seconds
            .iter()
            .map(|s| (s * 1e9).round() as u64)
            .collect();
        let overflow = SeriesKey {
            route: Arc::from(OVERFLOW_ROUTE),
            method: OTHER_METHOD,
            status: 0,
        };
        LatencyRegistry {
            inner: Arc::new(Inner {
                id: {
                    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
                    NEXT_ID.fetch_add(1, Relaxed)
                },
                origin: Instant::now(),
                latest_epoch: AtomicU64::new(0),
                max_series: self.max_series,
                overflow: Arc::new(Series::new(overflow, boundaries.len())),
                boundaries,
                #[cfg(feature = "opentelemetry")]
                otel: self
                    .meter
                    .map(|meter| crate::otel::Instruments::new(&meter, &self.buckets_seconds)),
                boundaries_seconds: self.buckets_seconds.into_boxed_slice(),
                series: ArcSwap::from_pointee(SeriesMap::default()),
                adding: Mutex::new(()),
                overflowed: AtomicU64::new(0),
                #[cfg(feature = "metrics")]
                active: crate::metrics::ActiveGauges::default(),
            }),
        }
    }
}

impl Default for LatencyRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyRegistry")
            .field("series", &self.series_count())
            .field("max_series", &self.inner.max_series)
            .field("overflowed", &self.overflowed())
            .finish_non_exhaustive()
    }
}

/// How a snapshot groups series.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// One row per series (route, method, status).
    Series,
    /// One row per route and method.
    RouteAndMethod,
    /// One row per route.
    Route,
}

impl LatencyRegistry {
    /// A registry with the defaults: 2,000 series at most, OpenTelemetry's duration buckets.
    pub fn new() -> Self {
        LatencyRegistryBuilder::default().build()
    }

    /// Configures a registry.
    pub fn builder() -> LatencyRegistryBuilder {
        LatencyRegistryBuilder::default()
    }

    /// Records one request that produced its response to the end. `error` marks a request that
    /// failed although its status may not say so (a body that broke, a gRPC error status).
    pub fn record(
        &self,
        route: &str,
        method: &Method,
        status: StatusCode,
        duration: Duration,
        error: bool,
    ) {
        let key = SeriesRef {
            route,
            method: method_label(method),
            status: status.as_u16(),
        };
        self.record_finished(&key, duration, Instant::now(), error);
    }

    /// The series of `route`, `method` and `status`, resolved once: recording through the handle
    /// skips the lookup. Beyond the series cap this is the overflow series.
    pub fn series(&self, route: &str, method: &Method, status: StatusCode) -> SeriesHandle {
        let key = SeriesRef {
            route,
            method: method_label(method),
            status: status.as_u16(),
        };
        let found = self.find(&key);
        SeriesHandle {
            registry: self.clone(),
            overflow: found.overflow,
            series: found.series,
        }
    }

    /// Records a request that ended before its response did (the client went away). Cancelled
    /// requests are counted, never mixed into latency. `status` is `None` when no response
    /// head was produced.
    pub fn record_cancelled(&self, route: &str, method: &Method, status: Option<StatusCode>) {
        let key = SeriesRef {
            route,
            method: method_label(method),
            status: status.map_or(0, |s| s.as_u16()),
        };
        self.record_cancelled_at(&key, Instant::now());
    }

    #[inline]
    pub(crate) fn record_finished(
        &self,
        key: &SeriesRef<'_>,
        duration: Duration,
        end: Instant,
        error: bool,
    ) {
        self.with_series(key, |series| {
            self.record_into(series, duration, end, error);
        });
    }

    /// Records a finished request of the layer, whose route is a label (cached per thread).
    #[inline]
    pub(crate) fn record_route(
        &self,
        route: &RouteLabel,
        method: &'static str,
        status: u16,
        timing: (Duration, Instant),
        error: bool,
    ) {
        let (duration, end) = timing;
        crate::cache::with_series(
            self.inner.id,
            route,
            method,
            status,
            || {
                self.find_counted(&SeriesRef {
                    route: route.as_str(),
                    method,
                    status,
                })
            },
            |series| self.record_into(series, duration, end, error),
        );
    }

    /// Records a cancelled request of the layer.
    pub(crate) fn record_route_cancelled(
        &self,
        route: &RouteLabel,
        method: &'static str,
        status: u16,
        end: Instant,
    ) {
        let epoch = self.record_epoch(end);
        crate::cache::with_series(
            self.inner.id,
            route,
            method,
            status,
            || {
                self.find_counted(&SeriesRef {
                    route: route.as_str(),
                    method,
                    status,
                })
            },
            |series| {
                series.record_cancelled(epoch);
                #[cfg(feature = "metrics")]
                series.facade.record_cancelled(&series.key);
            },
        );
    }

    /// The series of `key` from the shared map, added if new, or — the cap reached — the
    /// overflow series (`overflow` set; the caller counts the fold).
    fn find(&self, key: &SeriesRef<'_>) -> crate::cache::Found {
        let map = self.inner.series.load();
        if let Some(series) = map.get(key) {
            return crate::cache::Found {
                series: Arc::clone(series),
                overflow: false,
            };
        }
        let full = map.len() >= self.inner.max_series;
        drop(map);
        match if full { None } else { self.add(key) } {
            Some(series) => crate::cache::Found {
                series,
                overflow: false,
            },
            None => crate::cache::Found {
                series: Arc::clone(&self.inner.overflow),
                overflow: true,
            },
        }
    }

    /// [`find`](Self::find), counting a fold into the overflow series.
    fn find_counted(&self, key: &SeriesRef<'_>) -> crate::cache::Found {
        let found = self.find(key);
        if found.overflow {
            self.count_overflow();
        }
        found
    }

    pub(crate) fn record_cancelled_at(&self, key: &SeriesRef<'_>, end: Instant) {
        let epoch = self.record_epoch(end);
        self.with_series(key, |series| {
            series.record_cancelled(epoch);
            #[cfg(feature = "metrics")]
            series.facade.record_cancelled(&series.key);
        });
    }

    fn record_into(&self, series: &Series, duration: Duration, end: Instant, error: bool) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        series.record(&self.inner.boundaries, self.record_epoch(end), nanos, error);
        #[cfg(feature = "metrics")]
        series.facade.record(&series.key, duration);
        #[cfg(feature = "opentelemetry")]
        if let Some(otel) = &self.inner.otel {
            otel.record(duration, &series.otel_attributes);
        }
    }

    /// The epoch of a request that ended at `end`, never later than the clock's: an `end` in
    /// the future (from a caller of [`SeriesHandle::record_at`]) counts now. The clock is read
    /// only when `end` is past the latest epoch seen, about once per 30 s.
    #[inline]
    fn record_epoch(&self, end: Instant) -> u64 {
        let epoch = self.epoch(end);
        if epoch <= self.inner.latest_epoch.load(Relaxed) {
            return epoch;
        }
        let epoch = epoch.min(self.epoch(Instant::now()));
        self.inner.latest_epoch.fetch_max(epoch, Relaxed);
        epoch
    }

    /// The 30-second epoch `at` falls in, counted from the registry's creation.
    fn epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.inner.origin).as_secs() / SLOT.as_secs()
    }

    #[inline]
    fn with_series(&self, key: &SeriesRef<'_>, record: impl FnOnce(&Series)) {
        let map = self.inner.series.load();
        if let Some(series) = map.get(key) {
            return record(series);
        }
        drop(map);
        record(&self.find_counted(key).series);
    }

    fn count_overflow(&self) {
        self.inner.overflowed.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::record_overflow();
    }

    /// Adds a series (or finds the one another thread just added), copying the map: reads stay
    /// lock-free, and adds are bounded by the cap. `None` when the cap is reached, or for the
    /// overflow series' own key (a labeler returning it would make a duplicate series).
    #[cold]
    fn add(&self, key: &SeriesRef<'_>) -> Option<Arc<Series>> {
        let _adding = self
            .inner
            .adding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.inner.series.load_full();
        if let Some(series) = current.get(key) {
            return Some(Arc::clone(series));
        }
        let overflow = &self.inner.overflow.key;
        let is_overflow_key = key.route == &*overflow.route
            && key.method == overflow.method
            && key.status == overflow.status;
        if current.len() >= self.inner.max_series || is_overflow_key {
            return None;
        }
        let owned = SeriesKey {
            route: Arc::from(key.route),
            method: key.method,
            status: key.status,
        };
        let series = Arc::new(Series::new(owned.clone(), self.inner.boundaries.len()));
        let mut next = SeriesMap::clone(&current);
        next.insert(owned, Arc::clone(&series));
        self.inner.series.store(Arc::new(next));
        Some(series)
    }

    /// The number of series (the overflow series not included).
    pub fn series_count(&self) -> usize {
        self.inner.series.load().len()
    }

    /// The cap on series.
    pub fn max_series(&self) -> usize {
        self.inner.max_series
    }

    /// Requests counted in the overflow series because the cap was reached.
    pub fn overflowed(&self) -> u64 {
        self.inner.overflowed.load(Relaxed)
    }

    /// Bytes held by the series now, windows included (the map's own table not counted).
    pub fn memory(&self) -> usize {
        let map = self.inner.series.load();
        map.values()
            .chain(std::iter::once(&self.inner.overflow))
            .map(|series| series.memory())
            .sum()
    }

    /// Local quantiles per series (route, method, status) over `window`.
    pub fn snapshot(&self, window: Window) -> Snapshot {
        self.snapshot_grouped(window, Grouping::Series)
    }

    /// Local quantiles per route and method, all statuses merged (`status` is `None`): the
    /// error rate then says which share of a route's requests failed.
    pub fn snapshot_by_route(&self, window: Window) -> Snapshot {
        self.snapshot_grouped(window, Grouping::RouteAndMethod)
    }

    /// Local quantiles per route, all methods and statuses merged (`method` is `"*"`, `status`
    /// is `None`): one row per route, as a dashboard shows it.
    pub fn snapshot_by_route_only(&self, window: Window) -> Snapshot {
        self.snapshot_grouped(window, Grouping::Route)
    }

    fn snapshot_grouped(&self, window: Window, grouping: Grouping) -> Snapshot {
        let now = Instant::now();
        let epoch = self.epoch(now);
        let seconds = self.window_seconds(now, epoch, window);
        let map = self.inner.series.load_full();
        let all = map.values().chain(std::iter::once(&self.inner.overflow));
        let mut series = Vec::new();
        if grouping == Grouping::Series {
            let mut counts = WindowCounts::new();
            for one in all {
                counts.clear();
                one.window(epoch, window, &mut counts);
                series.extend(SeriesSnapshot::from_counts(
                    one.key.method,
                    &one.key.route,
                    (one.key.status != 0).then_some(one.key.status),
                    &counts,
                    seconds,
                ));
            }
        } else {
            let mut groups: hashbrown::HashMap<(&str, &str), WindowCounts> =
                hashbrown::HashMap::new();
            for one in all {
                let method = if grouping == Grouping::Route {
                    "*"
                } else {
                    one.key.method
                };
                let counts = groups
                    .entry((method, &one.key.route))
                    .or_insert_with(WindowCounts::new);
                one.window(epoch, window, counts);
            }
            for ((method, route), counts) in groups {
                series.extend(SeriesSnapshot::from_counts(
                    method, route, None, &counts, seconds,
                ));
            }
        }
        series
            .sort_by(|a, b| (&a.route, &a.method, a.status).cmp(&(&b.route, &b.method, b.status)));
        Snapshot {
            window,
            window_seconds: crate::snapshot::round(seconds, 3),
            series,
            overflowed: self.overflowed(),
        }
    }

    /// How many seconds of data `window` holds at `now`: from the start of its oldest slot (or
    /// the registry's creation, if later) to now.
    fn window_seconds(&self, now: Instant, epoch: u64, window: Window) -> f64 {
        let age = now.saturating_duration_since(self.inner.origin);
        let oldest = epoch.saturating_sub(window.slots() - 1);
        let since_oldest = age.saturating_sub(SLOT * u32::try_from(oldest).unwrap_or(u32::MAX));
        since_oldest.as_secs_f64().max(1e-3)
    }

    /// Each series' counters since the start (the overflow series included), sorted by route,
    /// method and status: what an exporter needs.
    pub fn cumulative(&self) -> Vec<CumulativeSeries> {
        let map = self.inner.series.load_full();
        let mut all: Vec<_> = map
            .values()
            .chain(std::iter::once(&self.inner.overflow))
            .map(|series| series.cumulative())
            .collect();
        all.sort_by(|a, b| (&a.route, a.method, a.status).cmp(&(&b.route, b.method, b.status)));
        all
    }

    /// The export bucket boundaries, in seconds.
    pub fn export_buckets(&self) -> &[f64] {
        &self.inner.boundaries_seconds
    }

    /// One more request of `method` being served (`delta` 1), or one fewer (-1), for the
    /// exporters' `http.server.active_requests`.
    #[inline]
    #[allow(clippy::unused_self)] // Without exporters there is nothing to count.
    pub(crate) fn active(&self, method: MethodIndex, delta: i8) {
        let _ = (method, delta);
        #[cfg(feature = "metrics")]
        self.inner.active.get(method).increment(f64::from(delta));
        #[cfg(feature = "opentelemetry")]
        if let Some(otel) = &self.inner.otel {
            otel.active(method, i64::from(delta));
        }
    }
}

/// One series, resolved once by [`LatencyRegistry::series`]: recording skips the lookup.
#[derive(Clone)]
pub struct SeriesHandle {
    registry: LatencyRegistry,
    series: Arc<Series>,
    /// The series cap was reached: every record counts as folded into the overflow series.
    overflow: bool,
}

impl SeriesHandle {
    /// Records a request that took `duration` and ended now.
    pub fn record(&self, duration: Duration, error: bool) {
        self.record_at(duration, Instant::now(), error);
    }

    /// Records a request that took `duration` and ended at `end` (saves a clock read when the
    /// caller has one).
    #[inline]
    pub fn record_at(&self, duration: Duration, end: Instant, error: bool) {
        if self.overflow {
            self.registry.count_overflow();
        }
        self.registry
            .record_into(&self.series, duration, end, error);
    }
}

impl fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesHandle")
            .field("route", &self.series.key.route)
            .field("method", &self.series.key.method)
            .field("status", &self.series.key.status)
            .finish_non_exhaustive()
    }
}
