//! `vitals-timing`: Request timing to the last byte, Server-Timing, slow-request and blocking-poll warnings.
//!
//! Status: planned. This crate is an empty placeholder so the workspace layout is in place;
//! it will hold a tower layer that times every request to the end of its body, adds `total` to the `Server-Timing` header, and warns about slow requests and about polls that block the async executor.
