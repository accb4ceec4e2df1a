//! `vitals-latency`: Per-route latency histograms with p50/p95/p99/p99.9 and aggregatable exports.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold a per-route latency histogram registry with sliding windows, local percentiles, a cardinality guard, and exports to the `metrics` facade, Prometheus and OpenTelemetry.
