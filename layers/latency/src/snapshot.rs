//! Local quantiles over a sliding window, per series.

use crate::histogram::quantiles;
use crate::window::{Window, WindowCounts};

/// The quantiles over one window, per series; see [`LatencyRegistry::snapshot`].
///
/// [`LatencyRegistry::snapshot`]: crate::LatencyRegistry::snapshot
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "json", derive(serde::Serialize))]
pub struct Snapshot {
    /// The window.
    pub window: Window,
    /// Seconds of data the window holds (60–90 for one minute, once the registry is that old).
    pub window_seconds: f64,
    /// Series with requests in the window, sorted by route, method and status.
    pub series: Vec<SeriesSnapshot>,
    /// Requests counted in the overflow series since the start (the series cap was reached).
    pub overflowed: u64,
}

/// One series over one window. Quantiles are `None` when the window holds no finished request.
/// Durations are in milliseconds, within 1% of the exact nearest-rank value.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "json", derive(serde::Serialize))]
pub struct SeriesSnapshot {
    /// `http.request.method` (`_OTHER` for unknown methods).
    pub method: String,
    /// `http.route`: the route template, `unmatched`, or `_overflow`.
    pub route: String,
    /// The response status; `None` when merged over statuses, or for requests cancelled before
    /// any response.
    pub status: Option<u16>,
    /// Requests finished in the window (cancelled ones not included).
    pub count: u64,
    /// Cancelled requests in the window: the client went away before the response ended.
    pub cancelled: u64,
    /// Finished requests per second over the window.
    pub rate_per_s: f64,
    /// The share of finished requests that failed (5xx, gRPC server errors, broken bodies,
    /// rejections, timeouts).
    pub error_rate: f64,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 90th percentile.
    pub p90_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
    /// The longest request (exact).
    pub max_ms: Option<f64>,
}

impl SeriesSnapshot {
    /// The quantiles of `counts`; `None` for a window with nothing in it.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn from_counts(
        method: &str,
        route: &str,
        status: Option<u16>,
        counts: &WindowCounts,
        window_seconds: f64,
    ) -> Option<Self> {
        if counts.count == 0 && counts.cancelled == 0 {
            return None;
        }
        // Five significant digits (±0.005%): spares JSON readers float noise and keeps the
        // 1% bound.
        let ms = |nanos: u64| significant(nanos as f64 / 1e6, 5);
        // A bucket's midpoint may lie above the largest sample in it: never report more than
        // the exact maximum.
        let [p50, p90, p95, p99, p999] =
            quantiles(&counts.buckets, counts.count, [0.5, 0.9, 0.95, 0.99, 0.999])
                .map(|q| q.map(|n| ms(n.min(counts.max_nanos))));
        Some(Self {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
            count: counts.count,
            cancelled: counts.cancelled,
            rate_per_s: round(counts.count as f64 / window_seconds, 3),
            error_rate: if counts.count == 0 {
                0.0
            } else {
                round(counts.errors as f64 / counts.count as f64, 4)
            },
            p50_ms: p50,
            p90_ms: p90,
            p95_ms: p95,
            p99_ms: p99,
            p999_ms: p999,
            max_ms: (counts.count > 0).then(|| ms(counts.max_nanos)),
        })
    }
}

/// One series' counters since the start, as exporters need them: see
/// [`LatencyRegistry::cumulative`](crate::LatencyRegistry::cumulative).
#[derive(Clone, Debug, PartialEq)]
pub struct CumulativeSeries {
    /// `http.request.method`.
    pub method: &'static str,
    /// `http.route`.
    pub route: String,
    /// The response status; 0 for requests cancelled before a response, and for the overflow
    /// series.
    pub status: u16,
    /// Requests per export bucket, in the order of
    /// [`LatencyRegistry::export_buckets`](crate::LatencyRegistry::export_buckets), then
    /// `+Inf`; not accumulated.
    pub buckets: Vec<u64>,
    /// Finished requests.
    pub count: u64,
    /// The sum of their durations, in seconds.
    pub sum_seconds: f64,
    /// Cancelled requests.
    pub cancelled: u64,
}

/// `value` rounded to `decimals` places.
pub(crate) fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// `value` rounded to `digits` significant digits.
fn significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    #[allow(clippy::cast_possible_truncation)]
    let magnitude = value.abs().log10().floor() as i32;
    round(value, digits - 1 - magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_keeps_five_significant_digits() {
        assert!((significant(1.046_494, 5) - 1.0465).abs() < 1e-12);
        assert!((significant(0.000_127_4, 5) - 0.000_127_4).abs() < 1e-15);
        assert!((significant(123_456.7, 5) - 123_460.0).abs() < 1e-9);
        assert!(significant(0.0, 5).abs() < f64::EPSILON);
        assert!((round(0.246_305_67, 3) - 0.246).abs() < 1e-12);
    }
}
