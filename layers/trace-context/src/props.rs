//! Never-panic properties of the parsers of outside input: 100,000 cases each, on arbitrary
//! bytes biased towards the grammar's characters.

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use crate::context::TraceContext;
use crate::traceparent::TraceParent;
use crate::tracestate::TraceState;

/// Hex digits, dashes and the tracestate delimiters most of the time, anything otherwise.
const GRAMMAR: &[u8] = b"0123456789abcdefABF--,,==@@ */_zk";

fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u16>(), 0..max).prop_map(|raw| {
        raw.into_iter()
            .map(|r| {
                let [low, high] = r.to_le_bytes();
                if high % 4 == 0 {
                    low
                } else {
                    GRAMMAR[usize::from(low) % GRAMMAR.len()]
                }
            })
            .collect()
    })
}

/// A traceparent-shaped value: the right length with random characters, or anything.
fn traceparent_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        header_bytes(60),
        prop::collection::vec(prop::sample::select(b"0123456789abcdef-".to_vec()), 55..=56),
    ]
}

fn header_value(bytes: &[u8]) -> HeaderValue {
    let cleaned: Vec<u8> = bytes
        .iter()
        .map(|&b| {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                b' '
            } else {
                b
            }
        })
        .collect();
    HeaderValue::from_bytes(&cleaned).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn traceparent_never_panics_and_round_trips(bytes in traceparent_bytes()) {
        if let Some(parent) = TraceParent::parse(&bytes) {
            let again = TraceParent::parse(parent.to_string().as_bytes());
            prop_assert_eq!(again.map(|p| (p.trace_id, p.parent_id)), Some((parent.trace_id, parent.parent_id)));
        }
    }

    #[test]
    fn tracestate_never_panics_and_round_trips(first in header_bytes(300), second in header_bytes(300)) {
        let lines = [header_value(&first), header_value(&second)];
        if let Some(state) = TraceState::parse(&lines) {
            prop_assert!(state.members().count() <= 32);
            if let Some(value) = state.header_value() {
                prop_assert_eq!(TraceState::parse([&value]), Some(state));
            }
        }
    }

    #[test]
    fn extraction_never_panics(parent in traceparent_bytes(), state in header_bytes(200)) {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", header_value(&parent));
        headers.insert("tracestate", header_value(&state));
        let context = TraceContext::from_headers(&headers);
        let mut out = HeaderMap::new();
        context.child().inject_into(&mut out);
        prop_assert!(TraceParent::parse(out["traceparent"].as_bytes()).is_some());
    }
}
