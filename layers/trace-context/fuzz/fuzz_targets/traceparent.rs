//! Any bytes as a `traceparent`: never a panic, and what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitals_trace_context::TraceParent;

fuzz_target!(|data: &[u8]| {
    if let Some(parent) = TraceParent::parse(data) {
        let again = TraceParent::parse(parent.to_string().as_bytes());
        assert_eq!(
            again.map(|p| (p.trace_id, p.parent_id)),
            Some((parent.trace_id, parent.parent_id))
        );
    }
});
