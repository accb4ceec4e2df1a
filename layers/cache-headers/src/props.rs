//! Never-panic properties of every parser of outside input, on arbitrary bytes biased towards
//! the grammar's delimiters: 100,000 cases each.

use http::header::{
    CACHE_CONTROL, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE, VARY,
};
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;

use crate::conditional::{Preconditions, Validators};
use crate::etag::{EntityTag, TagList};

/// The grammar's delimiters and a few letters, which random bytes seldom hit.
const DELIMITERS: &[u8] = b"\"\"\",,;=*/W \t\\aXz09-";

/// Bytes that look like header values: delimiters three times in four, anything otherwise.
/// (One random byte per position, mapped: cheap enough for 100,000 cases in a debug build.)
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u16>(), 0..200).prop_map(|raw| {
        raw.into_iter()
            .map(|r| {
                let [low, high] = r.to_le_bytes();
                if high % 4 == 0 {
                    low
                } else {
                    DELIMITERS[usize::from(low) % DELIMITERS.len()]
                }
            })
            .collect()
    })
}

/// The bytes made into a valid header value (controls other than tab become spaces).
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
    fn entity_tags_and_lists_never_panic(first in header_bytes(), second in header_bytes()) {
        let parsed = EntityTag::parse(&first);
        if let Some(tag) = &parsed {
            // What parses renders back to something that parses to the same tag.
            let again = EntityTag::parse(tag.header_value().as_bytes());
            prop_assert_eq!(again.as_ref(), Some(tag));
        }
        let lines = [header_value(&first), header_value(&second)];
        let _ = TagList::parse(&lines);
    }

    #[test]
    fn preconditions_never_panic(
        if_match in header_bytes(),
        if_none_match in header_bytes(),
        since in header_bytes(),
        unmodified in header_bytes(),
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(IF_MATCH, header_value(&if_match));
        headers.insert(IF_NONE_MATCH, header_value(&if_none_match));
        headers.insert(IF_MODIFIED_SINCE, header_value(&since));
        headers.insert(IF_UNMODIFIED_SINCE, header_value(&unmodified));
        let preconditions = Preconditions::from_headers(&headers);
        let current = Validators {
            etag: EntityTag::strong("v1"),
            last_modified: Some(std::time::SystemTime::UNIX_EPOCH),
        };
        for method in [Method::GET, Method::PUT] {
            let _ = preconditions.evaluate(&method, &current, true);
            let _ = preconditions.evaluate(&method, &Validators::default(), false);
        }
    }

    #[test]
    fn cache_control_reading_never_panics(first in header_bytes(), second in header_bytes()) {
        let mut headers = HeaderMap::new();
        headers.append(CACHE_CONTROL, header_value(&first));
        headers.append(CACHE_CONTROL, header_value(&second));
        let _ = crate::directives::parse(&headers);
    }

    #[test]
    fn vary_merging_never_panics_nor_duplicates(first in header_bytes(), second in header_bytes()) {
        let mut headers = HeaderMap::new();
        headers.append(VARY, header_value(&first));
        headers.append(VARY, header_value(&second));
        crate::vary::merge(&mut headers, &["Authorization", "Accept-Encoding"]);
        let lines: Vec<_> = headers.get_all(VARY).iter().collect();
        if lines.len() == 1 {
            let text = lines[0].to_str().unwrap_or_default().to_ascii_lowercase();
            let names: Vec<_> = text.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
            let authorization = names.iter().filter(|n| **n == "authorization").count();
            prop_assert!(authorization <= 1 || text.contains('"'), "{}", text);
        }
    }
}
