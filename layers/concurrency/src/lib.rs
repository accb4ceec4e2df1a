//! `vitals-concurrency`: Concurrency limits, bounded queues and timeouts that answer 503/504 with Retry-After.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold a concurrency limit shared by every clone of the layer, a bounded wait queue, request classes, timeouts and an adaptive limit, all answering with a response (503/504 with Retry-After) instead of an error.
