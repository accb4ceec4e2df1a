//! Quantiles against the exact nearest-rank values of known distributions, and no sample lost
//! under concurrent recording.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)] // Test code: samples are made with float arithmetic; a failed unwrap is a failed test.

use std::time::Duration;

use http::{Method, StatusCode};
use vitals_latency::{LatencyRegistry, SeriesSnapshot, Window};

/// splitmix64: a small, good, deterministic generator (no dependency for a test).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

const QUANTILES: [f64; 5] = [0.5, 0.9, 0.95, 0.99, 0.999];

/// The `ceil(q·n)`-th smallest sample.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len() as f64;
    let rank = ((q * n) - 1e-9).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

fn reported(series: &SeriesSnapshot, q: f64) -> f64 {
    let ms = match q {
        0.5 => series.p50_ms,
        0.9 => series.p90_ms,
        0.95 => series.p95_ms,
        0.99 => series.p99_ms,
        _ => series.p999_ms,
    };
    ms.expect("a quantile") * 1e6
}

fn check(name: &str, mut samples: Vec<u64>) {
    assert!(samples.len() >= 100_000);
    let registry = LatencyRegistry::new();
    for &nanos in &samples {
        registry.record(
            "/d",
            &Method::GET,
            StatusCode::OK,
            Duration::from_nanos(nanos),
            false,
        );
    }
    samples.sort_unstable();
    let snapshot = registry.snapshot(Window::FiveMinutes);
    let series = &snapshot.series[0];
    assert_eq!(series.count, samples.len() as u64);
    for q in QUANTILES {
        let exact = nearest_rank(&samples, q) as f64;
        let got = reported(series, q);
        let error = (got - exact).abs() / exact;
        assert!(
            error <= 0.01,
            "{name} p{q}: {got} ns vs exact {exact} ns ({error:.4})"
        );
    }
    // The maximum is exact, rounded to five significant digits.
    let max = *samples.last().unwrap() as f64;
    let reported_max = series.max_ms.unwrap() * 1e6;
    assert!((reported_max - max).abs() <= max * 1e-4, "{name} max");
}

#[test]
fn uniform_1us_to_100s() {
    let mut rng = Rng(1);
    // Uniform over the log of the range, so every decade from 1 µs to 100 s is exercised...
    let log_spread = (0..120_000)
        .map(|_| (1e3 * 1e8f64.powf(rng.unit())) as u64)
        .collect();
    check("log-uniform 1µs–100s", log_spread);
    // ...and uniform in value over a typical web range.
    let linear = (0..120_000)
        .map(|_| 1_000_000 + (rng.unit() * 499_000_000.0) as u64)
        .collect();
    check("uniform 1ms–500ms", linear);
}

#[test]
fn log_normal() {
    let mut rng = Rng(2);
    // Median 20 ms, σ = 1: a long right tail, like real service latency.
    let samples = (0..150_000)
        .map(|_| (20e6 * rng.normal().exp()) as u64)
        .collect();
    check("log-normal", samples);
}

#[test]
fn bimodal_with_a_slow_tail() {
    let mut rng = Rng(3);
    // 98.5% fast (cache hits around 2 ms), 1.5% slow (a dependency timing out around 1.2 s).
    let samples = (0..200_000)
        .map(|_| {
            if rng.unit() < 0.015 {
                (1.2e9 * (0.1 * rng.normal()).exp()) as u64
            } else {
                (2e6 * (0.3 * rng.normal()).exp()) as u64
            }
        })
        .collect();
    check("bimodal", samples);
}

#[test]
fn sub_microsecond_and_huge_values_do_not_break_the_histogram() {
    let registry = LatencyRegistry::new();
    for nanos in [0, 1, 127, 128, 999] {
        registry.record(
            "/x",
            &Method::GET,
            StatusCode::OK,
            Duration::from_nanos(nanos),
            false,
        );
    }
    registry.record("/x", &Method::GET, StatusCode::OK, Duration::MAX, false);
    let series = &registry.snapshot(Window::OneMinute).series[0];
    assert_eq!(series.count, 6);
    assert_eq!(series.p50_ms, Some(127e-6));
    assert!(series.max_ms.unwrap() > 1e12);
}

#[test]
fn eight_threads_recording_at_once_lose_no_sample() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50_000;
    let registry = LatencyRegistry::new();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let registry = &registry;
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    // Two routes and two statuses, so threads also race to add series.
                    let route = if i % 2 == 0 { "/a" } else { "/b" };
                    let status = if i % 3 == 0 {
                        StatusCode::OK
                    } else {
                        StatusCode::CREATED
                    };
                    let nanos = 1_000 + (thread * PER_THREAD + i) % 1_000_000;
                    registry.record(
                        route,
                        &Method::GET,
                        status,
                        Duration::from_nanos(nanos),
                        false,
                    );
                }
            });
        }
    });
    let snapshot = registry.snapshot(Window::OneMinute);
    assert_eq!(snapshot.series.len(), 4);
    let total: u64 = snapshot.series.iter().map(|s| s.count).sum();
    assert_eq!(total, THREADS * PER_THREAD);
    let by_route = registry.snapshot_by_route(Window::OneMinute);
    assert_eq!(by_route.series.len(), 2);
    assert!(
        by_route
            .series
            .iter()
            .all(|s| s.count == THREADS * PER_THREAD / 2)
    );
}

#[test]
fn error_rate_and_rate_per_second() {
    let registry = LatencyRegistry::new();
    for i in 0..10 {
        registry.record(
            "/e",
            &Method::POST,
            StatusCode::OK,
            Duration::from_millis(1),
            i < 3,
        );
    }
    registry.record_cancelled("/e", &Method::POST, None);
    let series = &registry.snapshot_by_route(Window::OneMinute).series[0];
    assert_eq!(series.count, 10);
    assert_eq!(series.cancelled, 1);
    assert!((series.error_rate - 0.3).abs() < 1e-9);
    assert!(series.rate_per_s > 0.0);
    assert_eq!(series.status, None);
}

#[test]
fn handles_past_the_cap_count_every_record_as_overflow() {
    let registry = LatencyRegistry::builder().with_max_series(1).build();
    let first = registry.series("/a", &Method::GET, StatusCode::OK);
    let folded = registry.series("/b", &Method::GET, StatusCode::OK);
    assert_eq!(registry.overflowed(), 0, "resolving is not recording");
    for _ in 0..3 {
        first.record(Duration::from_millis(1), false);
        folded.record(Duration::from_millis(1), false);
    }
    assert_eq!(registry.overflowed(), 3);
    let snapshot = registry.snapshot(Window::OneMinute);
    let overflow = snapshot
        .series
        .iter()
        .find(|s| s.route == vitals_latency::OVERFLOW_ROUTE)
        .unwrap();
    assert_eq!(overflow.count, 3);
}

#[test]
fn an_end_in_the_future_counts_now_and_evicts_nothing() {
    let registry = LatencyRegistry::new();
    let handle = registry.series("/a", &Method::GET, StatusCode::OK);
    handle.record(Duration::from_millis(1), false);
    let far = std::time::Instant::now() + Duration::from_hours(1);
    handle.record_at(Duration::from_millis(2), far, false);
    handle.record(Duration::from_millis(3), false);
    assert_eq!(registry.snapshot(Window::OneMinute).series[0].count, 3);
}
