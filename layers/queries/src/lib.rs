//! `vitals-queries`: Per-request database query counts, SQL fingerprints and N+1 detection.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold a per-request query ledger fed by sqlx's query events, OpenTelemetry DB spans, diesel instrumentation or a plain API; SQL fingerprints, N+1 detection, and a test helper that fails a test when a handler goes over its query budget.
