//! `vitals-dashboard`: A live /_vitals page over the layers' snapshots.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold a self-contained HTML dashboard and JSON API nested at `/_vitals` that shows each route's latency, error rate, queries per request and limiter state, live.
