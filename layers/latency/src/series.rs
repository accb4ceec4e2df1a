//! One series: the requests of one route, method and status code.

use std::sync::Arc;

use crate::histogram::bucket_index;
use crate::shards::ShardedCounters;
use crate::snapshot::CumulativeSeries;
use crate::window::{SlidingWindows, Window, WindowCounts};

/// What identifies a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) route: Arc<str>,
    pub(crate) method: &'static str,
    /// The response status; 0 when the request ended before a response (cancelled).
    pub(crate) status: u16,
}

/// A borrowed [`SeriesKey`] for lookups that allocate nothing. Hashes as the owned key does
/// (same fields, same order; `str` hashes alike behind `&` and `Arc`).
#[derive(Hash)]
pub(crate) struct SeriesRef<'a> {
    pub(crate) route: &'a str,
    pub(crate) method: &'static str,
    pub(crate) status: u16,
}

impl hashbrown::Equivalent<SeriesKey> for SeriesRef<'_> {
    fn equivalent(&self, key: &SeriesKey) -> bool {
        self.status == key.status && self.method == key.method && self.route == &*key.route
    }
}

/// The cumulative counter of the sum of durations, in ticks of [`TICK_NANOS`].
const SUM: usize = 0;
/// The unit of the sum: 100 ns, rounded to nearest (unbiased), so a `u64` holds 58,000 years of
/// request time — a nanosecond sum would wrap after 584 years, a few weeks for thousands of
/// long-lived streams.
const TICK_NANOS: u64 = 100;
/// The cumulative counter of cancelled requests.
const CANCELLED: usize = 1;
/// The first export bucket's counter.
const FIRST_BUCKET: usize = 2;

/// The counters of one series: cumulative export buckets and sliding windows.
pub(crate) struct Series {
    pub(crate) key: SeriesKey,
    /// Since the start: the sum of durations in nanoseconds ([`SUM`]), cancelled requests
    /// ([`CANCELLED`]), then counts per export bucket (`le` boundaries, then `+Inf`).
    cumulative: ShardedCounters,
    windows: SlidingWindows,
    #[cfg(feature = "metrics")]
    pub(crate) facade: crate::metrics::SeriesHandles,
    #[cfg(feature = "opentelemetry")]
    pub(crate) otel_attributes: Box<[opentelemetry::KeyValue]>,
}

impl Series {
    pub(crate) fn new(key: SeriesKey, export_buckets: usize) -> Self {
        Self {
            #[cfg(feature = "metrics")]
            facade: crate::metrics::SeriesHandles::new(),
            #[cfg(feature = "opentelemetry")]
            otel_attributes: crate::otel::attributes(&key),
            key,
            cumulative: ShardedCounters::new(FIRST_BUCKET + export_buckets + 1),
            windows: SlidingWindows::new(),
        }
    }

    /// Counts a request that produced its response to the end (or failed doing so).
    #[inline]
    pub(crate) fn record(&self, boundaries: &[u64], epoch: u64, nanos: u64, error: bool) {
        let export = boundaries.partition_point(|&le| le < nanos);
        self.cumulative.add_two(
            (SUM, nanos.saturating_add(TICK_NANOS / 2) / TICK_NANOS),
            (FIRST_BUCKET + export, 1),
        );
        self.windows
            .record(epoch, bucket_index(nanos), nanos, error);
    }

    /// Counts a request that ended before its response did.
    pub(crate) fn record_cancelled(&self, epoch: u64) {
        self.cumulative.add(CANCELLED, 1);
        self.windows.record_cancelled(epoch);
    }

    pub(crate) fn window(&self, now: u64, window: Window, into: &mut WindowCounts) {
        self.windows.read(now, window, into);
    }

    pub(crate) fn cumulative(&self) -> CumulativeSeries {
        let counters = self.cumulative.sum();
        let buckets = counters[FIRST_BUCKET..].to_vec();
        #[allow(clippy::cast_precision_loss)]
        let sum_seconds = counters[SUM] as f64 * (TICK_NANOS as f64 / 1e9);
        CumulativeSeries {
            method: self.key.method,
            route: self.key.route.to_string(),
            status: self.key.status,
            count: buckets.iter().sum(),
            buckets,
            sum_seconds,
            cancelled: counters[CANCELLED],
        }
    }

    /// Bytes this series holds now, windows included.
    pub(crate) fn memory(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.key.route.len()
            + self.cumulative.memory()
            + self.windows.memory()
            - std::mem::size_of::<SlidingWindows>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn a_series_with_every_window_slot_in_use_stays_under_128_kib() {
        let key = SeriesKey {
            route: Arc::from("/a/route/{with}/a/longish/template"),
            method: "GET",
            status: 200,
        };
        let boundaries: Vec<u64> = vitals_core::semconv::DURATION_BUCKETS_SECONDS
            .iter()
            .map(|s| (s * 1e9) as u64)
            .collect();
        let series = Series::new(key, boundaries.len());
        let idle = series.memory();
        for epoch in 0..20 {
            series.record(&boundaries, epoch, 1_000_000, false);
        }
        let full = series.memory();
        assert!(idle < 4 * 1024, "{idle}");
        assert!(full <= 128 * 1024, "{full}");
        assert!(full > 11 * 8 * 1024, "{full}: every slot counted");
        println!("a series: {idle} bytes idle, {full} bytes with every slot in use");
    }
}
