//! Any bytes as `tracestate` lines: never a panic, at most 32 members, what parses round-trips.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use vitals_trace_context::TraceState;

fuzz_target!(|data: &[u8]| {
    let lines: Vec<HeaderValue> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect();
    if let Some(state) = TraceState::parse(&lines) {
        assert!(state.members().count() <= 32);
        if let Some(value) = state.header_value() {
            assert_eq!(TraceState::parse([&value]), Some(state));
        }
    }
});
