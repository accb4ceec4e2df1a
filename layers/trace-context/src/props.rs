//! Properties of the parsers of outside input.
//!
//! - Never panics: arbitrary bytes biased towards the grammar's characters, and valid headers
//!   with a few bytes changed (which reach every check of the parsers).
//! - Round trips and refusals: headers valid by construction, and the same with one defect. A
//!   random 55-character string of hex digits and dashes is a valid `traceparent` about once
//!   in 100,000 cases, and random bytes are a valid `tracestate` member about as rarely: a
//!   property over them alone checks almost nothing.
//!
//! 100,000 cases each (`PROPTEST_CASES` overrides, for repeated runs). Each generator is
//! checked for reaching its property's interesting cases (the `*_generator_reaches_*` tests:
//! a fixed seed, so the measured shares in their comments are what every run sees).

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use vitals_core::identity::{SpanId, TraceId};

use crate::context::TraceContext;
use crate::traceparent::{TraceFlags, TraceParent};
use crate::tracestate::{DEFAULT_TRACESTATE_LIMIT, MAX_MEMBERS, TraceState};

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

/// `bytes` with one or two bytes replaced (half the time), inserted or removed, grammar
/// characters mostly: a replaced byte keeps the shape, so the checks past it are reached.
fn mutated(bytes: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edit = (0..4u8, any::<prop::sample::Index>(), any::<u16>());
    (bytes, prop::collection::vec(edit, 1..=2)).prop_map(|(mut bytes, edits)| {
        for (kind, at, raw) in edits {
            let [low, high] = raw.to_le_bytes();
            let byte = if high % 4 == 0 {
                low
            } else {
                GRAMMAR[usize::from(low) % GRAMMAR.len()]
            };
            match kind {
                0 | 1 if !bytes.is_empty() => {
                    let at = at.index(bytes.len());
                    bytes[at] = byte;
                }
                2 => {
                    let at = at.index(bytes.len() + 1);
                    bytes.insert(at, byte);
                }
                _ if !bytes.is_empty() => {
                    bytes.remove(at.index(bytes.len()));
                }
                _ => {}
            }
        }
        bytes
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// A valid `traceparent` and the fields it holds.
#[derive(Clone, Debug)]
struct ValidParent {
    text: String,
    version: u8,
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Ids that are nonzero: random, or zero but for one byte (the edge of the all-zero id).
fn nonzero_id<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop_oneof![
        3 => any::<[u8; N]>().prop_filter("nonzero", |id| *id != [0; N]),
        1 => (0..N, 1..=u8::MAX).prop_map(|(at, byte)| {
            let mut id = [0; N];
            id[at] = byte;
            id
        }),
    ]
}

/// What a later version may carry after the flags (W3C Trace Context Level 2, §3.2.4): more
/// fields, each after a dash; this parser reads the first four and checks only the dash.
fn later_fields() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "(-[0-9a-f]{2,32}){1,3}",
        "-[ -~]{0,24}",
        Just("-".to_owned()),
    ]
}

/// Valid by construction: version 00 (exactly the four fields) half the time, else a later
/// version 01..=fe with or without more fields; nonzero ids; every flags byte.
fn valid_parent() -> impl Strategy<Value = ValidParent> {
    let version_and_rest = prop_oneof![Just((0u8, String::new())), (1..=0xfe_u8, later_fields()),];
    (
        version_and_rest,
        nonzero_id::<16>(),
        nonzero_id::<8>(),
        any::<u8>(),
    )
        .prop_map(
            |((version, rest), trace_id, parent_id, flags)| ValidParent {
                text: format!(
                    "{version:02x}-{}-{}-{flags:02x}{rest}",
                    hex(&trace_id),
                    hex(&parent_id)
                ),
                version,
                trace_id,
                parent_id,
                flags,
            },
        )
}

/// What makes a `traceparent` invalid.
#[derive(Clone, Debug)]
enum Defect {
    ZeroTraceId,
    ZeroParentId,
    /// An upper-case hex letter somewhere in the four fields.
    Uppercase(prop::sample::Index, u8),
    /// Any version `ff`.
    VersionFf,
    /// Version 00 with anything after the flags.
    Version00Longer(String),
    /// Something other than a dash right after the flags.
    NoDashAfterFlags(u8),
    /// Something other than a dash between fields.
    Separator(prop::sample::Index, u8),
    /// Something other than a hex digit in a field.
    NotHex(prop::sample::Index, u8),
    Shorter(prop::sample::Index),
}

fn defect() -> impl Strategy<Value = Defect> {
    let not_dash = prop::sample::select(b"_0a +:.\t".to_vec());
    let not_hex = prop::sample::select(b"gzGZx-_ .:+\t\xff".to_vec());
    prop_oneof![
        Just(Defect::ZeroTraceId),
        Just(Defect::ZeroParentId),
        (any::<prop::sample::Index>(), b'A'..=b'F').prop_map(|(at, c)| Defect::Uppercase(at, c)),
        Just(Defect::VersionFf),
        "[-0-9a-z]{1,8}".prop_map(Defect::Version00Longer),
        not_dash.clone().prop_map(Defect::NoDashAfterFlags),
        (any::<prop::sample::Index>(), not_dash).prop_map(|(at, c)| Defect::Separator(at, c)),
        (any::<prop::sample::Index>(), not_hex).prop_map(|(at, c)| Defect::NotHex(at, c)),
        any::<prop::sample::Index>().prop_map(Defect::Shorter),
    ]
}

/// The positions of the hex digits of the four fields.
const HEX_DIGITS: [std::ops::Range<usize>; 4] = [0..2, 3..35, 36..52, 53..55];

fn hex_position(at: prop::sample::Index) -> usize {
    let all: Vec<usize> = HEX_DIGITS.iter().flat_map(Clone::clone).collect();
    all[at.index(all.len())]
}

/// `parent`'s text with `defect`.
fn with_defect(parent: &ValidParent, defect: &Defect) -> Vec<u8> {
    let mut text = parent.text.clone().into_bytes();
    match defect {
        Defect::ZeroTraceId => text[3..35].fill(b'0'),
        Defect::ZeroParentId => text[36..52].fill(b'0'),
        Defect::Uppercase(at, letter) => text[hex_position(*at)] = *letter,
        Defect::VersionFf => text[0..2].copy_from_slice(b"ff"),
        Defect::Version00Longer(more) => {
            text.truncate(55);
            text[0..2].copy_from_slice(b"00");
            text.extend_from_slice(more.as_bytes());
        }
        Defect::NoDashAfterFlags(c) => {
            if text.len() > 55 {
                text[55] = *c;
            } else {
                text.push(*c);
            }
        }
        Defect::Separator(at, c) => text[[2, 35, 52][at.index(3)]] = *c,
        Defect::NotHex(at, c) => text[hex_position(*at)] = *c,
        Defect::Shorter(at) => text.truncate(at.index(55)),
    }
    text
}

/// A `traceparent`-shaped value: anything, the right length in hex digits and dashes, or a
/// valid one with a few bytes changed.
fn traceparent_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => header_bytes(60),
        1 => prop::collection::vec(prop::sample::select(b"0123456789abcdef-".to_vec()), 55..=56),
        2 => mutated(valid_parent().prop_map(|p| p.text.into_bytes())),
    ]
}

/// `tracestate` key characters: the first, and the others.
const KEY_FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const KEY_REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_-*/@";
/// `tracestate` value characters (`chr`): printable ASCII and space but `,` and `=`; the last
/// one (`nblk-chr`) not a space.
const VALUE_CHR: &[u8] =
    b" !\"#$%&'()*+-./0123456789:;<>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
const VALUE_NBLK: &[u8] = VALUE_CHR.split_at(1).1;

/// `len` characters of `charset`, drawn from `seed` (SplitMix64). One value tree per string
/// rather than one per character (as a regex has): 100,000 states of up to 32 members take
/// seconds rather than minutes.
fn chars_from(charset: &[u8], len: usize, mut seed: u64) -> String {
    (0..len)
        .map(|_| {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let index = usize::try_from((z ^ (z >> 31)) >> 40).unwrap() % charset.len();
            char::from(charset[index])
        })
        .collect()
}

/// A first character from `first`, then `rest_len` from `rest`.
fn text(
    first: &'static [u8],
    rest: &'static [u8],
    rest_len: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = String> {
    (any::<prop::sample::Index>(), rest_len, any::<u64>()).prop_map(move |(at, len, seed)| {
        let mut text = String::with_capacity(len + 1);
        text.push(char::from(*at.get(first)));
        text.push_str(&chars_from(rest, len, seed));
        text
    })
}

/// `tracestate` keys: `( lcalpha / DIGIT ) 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )`,
/// the older `tenant@system` form among them, up to the longest (256 characters).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => text(KEY_FIRST, KEY_REST, 0..=12),
        2 => (text(KEY_FIRST, KEY_FIRST, 0..=8), text(KEY_FIRST, KEY_FIRST, 0..=8))
            .prop_map(|(tenant, system)| format!("{tenant}@{system}")),
        1 => text(KEY_FIRST, KEY_REST, 249..=255),
    ]
}

/// `tracestate` values: `0*255(chr) nblk-chr`, spaces inside (and first), up to the longest.
fn value() -> impl Strategy<Value = String> {
    let value = |chr: std::ops::RangeInclusive<usize>| {
        (chr, any::<u64>(), any::<prop::sample::Index>()).prop_map(|(len, seed, last)| {
            let mut value = chars_from(VALUE_CHR, len, seed);
            value.push(char::from(*last.get(VALUE_NBLK)));
            value
        })
    };
    prop_oneof![6 => value(0..=16), 1 => value(200..=255)]
}

/// A valid `tracestate` as sent, and its members as sent (repeated keys among them).
#[derive(Clone, Debug)]
struct ValidState {
    lines: Vec<String>,
    sent: Vec<(String, String)>,
}

/// Up to 32 members, some keys repeated, over one or two lines, with optional whitespace
/// around members and empty members (`a=1, ,b=2`), both of which the grammar allows.
fn valid_state() -> impl Strategy<Value = ValidState> {
    let member = (key(), value(), any::<Option<prop::sample::Index>>());
    let separator = prop::sample::select(&[",", ", ", " ,", ",\t", ", ,", ",,"][..]);
    (
        prop::collection::vec((member, separator), 0..=MAX_MEMBERS),
        any::<prop::sample::Index>(),
        prop::sample::select(&["", " ", "\t", " ,"][..]),
    )
        .prop_map(|(members, split, edge)| {
            let mut sent: Vec<(String, String)> = Vec::with_capacity(members.len());
            let mut separators = Vec::with_capacity(members.len());
            for ((key, value, repeat), separator) in members {
                // A repeated key a quarter of the time.
                let key = match repeat {
                    Some(at) if !sent.is_empty() && at.index(4) == 0 => {
                        sent[at.index(sent.len())].0.clone()
                    }
                    _ => key,
                };
                sent.push((key, value));
                separators.push(separator);
            }
            let split = split.index(sent.len() + 1);
            let line = |range: std::ops::Range<usize>| {
                let mut line = edge.to_owned();
                for i in range.clone() {
                    if i > range.start {
                        line.push_str(separators[i]);
                    }
                    line.push_str(&sent[i].0);
                    line.push('=');
                    line.push_str(&sent[i].1);
                }
                line.push_str(edge);
                line
            };
            let mut lines = vec![line(0..split)];
            if split < sent.len() {
                lines.push(line(split..sent.len()));
            }
            ValidState { lines, sent }
        })
}

fn header_lines(lines: &[String]) -> Vec<HeaderValue> {
    lines
        .iter()
        .map(|line| HeaderValue::from_str(line).unwrap())
        .collect()
}

/// The members a valid state keeps: the first of each key.
fn first_of_each_key(sent: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut kept: Vec<(&str, &str)> = Vec::new();
    for (key, value) in sent {
        if !kept.iter().any(|(k, _)| k == key) {
            kept.push((key, value));
        }
    }
    kept
}

/// What makes a `tracestate` member invalid.
fn bad_member() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z][a-z0-9]{0,8}=[a-z]{1,4}",         // upper case key
        "[_*/@-][a-z0-9]{0,8}=[a-z]{1,4}",       // key's first character
        "[a-z][a-z0-9]{0,8}",                    // no `=`
        "[a-z][a-z0-9]{0,8}=",                   // empty value
        "[a-z]{1,4}=[a-z]{1,4}=[a-z]{0,4}",      // `=` in the value
        "[a-z]{1,4}=[a-z]{0,4}\u{e9}[a-z]{0,4}", // not ASCII
        "[a-z]{1,4}[ .,A-Z][a-z]{1,4}=x",        // key character
        "[a-z]{257}=x",                          // key too long
        "[a-z]{1,4}=[a-z]{257}",                 // value too long
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

/// `tracestate` lines: valid, valid with a few bytes changed, or anything.
fn tracestate_lines() -> impl Strategy<Value = Vec<HeaderValue>> {
    let valid = valid_state().prop_map(|state| header_lines(&state.lines));
    let mutated = mutated(valid_state().prop_map(|state| state.lines.join(",").into_bytes()))
        .prop_map(|bytes| vec![header_value(&bytes)]);
    let random = (header_bytes(300), header_bytes(300))
        .prop_map(|(first, second)| vec![header_value(&first), header_value(&second)]);
    prop_oneof![valid, mutated, random]
}

/// A `traceparent` line: valid half the time, else anything `traceparent_bytes` makes.
fn extraction_parent() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        valid_parent().prop_map(|p| p.text.into_bytes()),
        traceparent_bytes()
    ]
}

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        // `ProptestConfig::default` reads `PROPTEST_CASES`.
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            100_000
        },
        failure_persistence: None,
        ..default
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn traceparent_parsing_never_panics_and_what_parses_round_trips(bytes in traceparent_bytes()) {
        if let Some(parent) = TraceParent::parse(&bytes) {
            let again = TraceParent::parse(parent.to_string().as_bytes());
            prop_assert_eq!(again, Some(TraceParent { version: 0, flags: parent.flags.known(), ..parent }));
        }
    }

    #[test]
    fn valid_traceparents_parse_to_their_fields_and_go_out_as_version_00(valid in valid_parent()) {
        let parsed = TraceParent::parse(valid.text.as_bytes());
        let expected = TraceParent {
            version: valid.version,
            trace_id: TraceId::from_bytes(valid.trace_id).unwrap(),
            parent_id: SpanId::from_bytes(valid.parent_id).unwrap(),
            flags: TraceFlags::from_bits(valid.flags),
        };
        prop_assert_eq!(parsed, Some(expected));
        // Sent on as version 00 with the flags version 00 defines (the others set to zero)...
        let encoded = expected.to_string();
        prop_assert_eq!(encoded.as_bytes(), &expected.encode()[..]);
        let again = TraceParent::parse(encoded.as_bytes());
        prop_assert_eq!(again, Some(TraceParent { version: 0, flags: expected.flags.known(), ..expected }));
        // ...which for a version-00 header is the header itself, but for unknown flags.
        if valid.version == 0 {
            let known = format!("{}{:02x}", &valid.text[..53], valid.flags & 0x03);
            prop_assert_eq!(encoded, known);
        }
    }

    #[test]
    fn traceparents_with_a_defect_are_refused(valid in valid_parent(), defect in defect()) {
        let text = with_defect(&valid, &defect);
        prop_assert_eq!(TraceParent::parse(&text), None, "{}", String::from_utf8_lossy(&text));
    }

    #[test]
    fn tracestate_parsing_never_panics_and_what_parses_round_trips(lines in tracestate_lines()) {
        if let Some(state) = TraceState::parse(&lines) {
            prop_assert!(state.members().count() <= MAX_MEMBERS);
            prop_assert_eq!(state.encoded_len(), state.to_string().len());
            if let Some(value) = state.header_value() {
                prop_assert_eq!(TraceState::parse([&value]), Some(state));
            }
        }
    }

    #[test]
    fn valid_tracestates_keep_the_first_of_each_key_and_round_trip(valid in valid_state()) {
        let state = TraceState::parse(&header_lines(&valid.lines));
        prop_assert!(state.is_some(), "{:?}", valid.lines);
        let state = state.unwrap();
        prop_assert_eq!(state.members().collect::<Vec<_>>(), first_of_each_key(&valid.sent));
        prop_assert_eq!(state.encoded_len(), state.to_string().len());
        match state.header_value() {
            Some(value) => prop_assert_eq!(TraceState::parse([&value]), Some(state)),
            None => prop_assert!(state.is_empty()),
        }
    }

    #[test]
    /// The spec's "Tracestate Limits": members longer than 128 characters go first, from the
    /// end of the list, then members from the end, only until the rest fits.
    fn truncation_drops_long_members_then_the_last_ones_until_the_rest_fits(
        valid in valid_state(),
        limit in prop_oneof![0..=DEFAULT_TRACESTATE_LIMIT, Just(DEFAULT_TRACESTATE_LIMIT)],
    ) {
        let before = TraceState::parse(&header_lines(&valid.lines)).unwrap();
        let mut after = before.clone();
        after.truncate(limit);
        prop_assert!(after.encoded_len() <= limit);
        let member_len = |(k, v): &(&str, &str)| k.len() + 1 + v.len();
        let long = |m: &(&str, &str)| member_len(m) > 128;
        let kept: Vec<_> = after.members().collect();
        let all: Vec<_> = before.members().collect();
        // Kept in order (keys are unique: a member is known by its key).
        let mut rest = all.iter();
        prop_assert!(kept.iter().all(|member| rest.any(|m| m == member)));
        let (long_all, short_all): (Vec<_>, Vec<_>) = all.iter().copied().partition(long);
        let (long_kept, short_kept): (Vec<_>, Vec<_>) = kept.iter().copied().partition(long);
        // From the end: what is kept of each kind is the first of that kind.
        prop_assert_eq!(&long_all[..long_kept.len()], &long_kept[..]);
        prop_assert_eq!(&short_all[..short_kept.len()], &short_kept[..]);
        // Long ones first: a short member goes only when every long one has.
        if short_kept.len() < short_all.len() {
            prop_assert!(long_kept.is_empty(), "{:?} kept of {:?}", kept, all);
        }
        // Only until the rest fits: the last member dropped would not have fitted.
        let last_dropped = if short_kept.len() < short_all.len() {
            short_all.get(short_kept.len())
        } else {
            long_all.get(long_kept.len())
        };
        if let Some(member) = last_dropped {
            let with_it = after.encoded_len() + member_len(member) + usize::from(!kept.is_empty());
            prop_assert!(with_it > limit, "{:?} would have fitted in {}", member, limit);
        } else {
            prop_assert_eq!(&after, &before);
        }
    }

    #[test]
    fn tracestates_with_a_bad_member_or_too_many_are_refused(
        valid in valid_state(),
        bad in bad_member(),
        at in any::<prop::sample::Index>(),
        extra in prop::collection::vec((key(), value()), 1..8),
    ) {
        // One bad member anywhere.
        let mut members: Vec<String> = valid.sent.iter().map(|(k, v)| format!("{k}={v}")).collect();
        members.insert(at.index(members.len() + 1), bad);
        let line = HeaderValue::from_bytes(members.join(",").as_bytes()).unwrap();
        prop_assert_eq!(TraceState::parse([&line]), None, "{:?}", line);
        // More than 32 members as sent, repeated keys counted.
        let mut many = valid.sent.clone();
        many.extend(extra);
        while many.len() <= MAX_MEMBERS {
            many.push(many[0].clone());
        }
        let line: Vec<String> = many.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let line = HeaderValue::from_str(&line.join(",")).unwrap();
        prop_assert_eq!(TraceState::parse([&line]), None);
    }

    #[test]
    fn extraction_continues_a_valid_parent_with_its_state_and_never_panics(
        parent in extraction_parent(),
        state in tracestate_lines(),
    ) {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", header_value(&parent));
        for line in &state {
            headers.append("tracestate", line.clone());
        }
        let context = TraceContext::from_headers(&headers);
        let mut out = HeaderMap::new();
        context.child().inject_into(&mut out);
        let sent = TraceParent::parse(out["traceparent"].as_bytes());
        prop_assert!(sent.is_some());
        let sent = sent.unwrap();
        prop_assert_eq!(sent.trace_id, context.trace_id);
        if let Some(parent) = TraceParent::parse(headers["traceparent"].as_bytes()) {
            prop_assert_eq!(context.trace_id, parent.trace_id);
            prop_assert_eq!(context.parent_id, Some(parent.parent_id));
            prop_assert_eq!(sent.flags, parent.flags.known());
            let mut expected = TraceState::parse(&state).unwrap_or_default();
            expected.truncate(DEFAULT_TRACESTATE_LIMIT);
            let forwarded = out.get("tracestate").map(|v| TraceState::parse([v]));
            prop_assert_eq!(forwarded, expected.header_value().map(|_| Some(expected.clone())));
        } else {
            // A new trace: the state goes with the parent it belonged to.
            prop_assert_eq!(context.parent_id, None);
            prop_assert!(out.get("tracestate").is_none());
        }
    }
}

/// `count` samples of `strategy` from a fixed seed: the same every run.
fn sample<S: Strategy>(strategy: &S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

#[allow(clippy::cast_precision_loss)] // Counts of 10,000.
fn share<T>(cases: &[T], interesting: impl Fn(&T) -> bool) -> f64 {
    cases.iter().filter(|c| interesting(c)).count() as f64 / cases.len() as f64
}

#[test]
fn traceparent_bytes_generator_reaches_the_deep_checks_and_valid_headers() {
    let cases = sample(&traceparent_bytes(), 10_000);
    // Measured: 21.4% have the length and the dashes, so reach the hex and zero checks; 8.2%
    // are valid (mostly valid ones with a byte changed to another that fits).
    let shaped = share(&cases, |b| {
        b.len() >= 55 && b[2] == b'-' && b[35] == b'-' && b[52] == b'-'
    });
    let valid = share(&cases, |b| TraceParent::parse(b).is_some());
    assert!(shaped > 0.15, "{shaped}");
    assert!(valid > 0.05, "{valid}");
}

#[test]
fn valid_parent_generator_reaches_every_version_kind_and_flags_byte() {
    let cases = sample(&valid_parent(), 10_000);
    // Measured: 49.7% version 00; 37.4% a later version with more fields; 98.4% flags with
    // bits version 00 does not define; 42.6% an id zero but for one byte; all 256 flags bytes.
    let version_00 = share(&cases, |p| p.version == 0);
    let later_with_fields = share(&cases, |p| p.version > 0 && p.text.len() > 55);
    let unknown_flags = share(&cases, |p| p.flags & !0x03 != 0);
    let near_zero = share(&cases, |p| {
        p.trace_id.iter().filter(|&&b| b != 0).count() == 1
            || p.parent_id.iter().filter(|&&b| b != 0).count() == 1
    });
    let flags: std::collections::HashSet<u8> = cases.iter().map(|p| p.flags).collect();
    assert!(version_00 > 0.4, "{version_00}");
    assert!(later_with_fields > 0.3, "{later_with_fields}");
    assert!(unknown_flags > 0.9, "{unknown_flags}");
    assert!(near_zero > 0.3, "{near_zero}");
    assert_eq!(flags.len(), 256);
}

#[test]
fn defect_generator_reaches_every_defect() {
    let cases = sample(&defect(), 10_000);
    // Measured: each defect in 10.8% to 11.7% of cases.
    let kinds: [fn(&Defect) -> bool; 9] = [
        |d| matches!(d, Defect::ZeroTraceId),
        |d| matches!(d, Defect::ZeroParentId),
        |d| matches!(d, Defect::Uppercase(..)),
        |d| matches!(d, Defect::VersionFf),
        |d| matches!(d, Defect::Version00Longer(_)),
        |d| matches!(d, Defect::NoDashAfterFlags(_)),
        |d| matches!(d, Defect::Separator(..)),
        |d| matches!(d, Defect::NotHex(..)),
        |d| matches!(d, Defect::Shorter(_)),
    ];
    for kind in kinds {
        let share = share(&cases, kind);
        assert!(share > 0.08, "{share}");
    }
}

#[test]
fn tracestate_lines_generator_reaches_valid_invalid_and_long_states() {
    let cases = sample(&tracestate_lines(), 10_000);
    // Measured: 53.1% parse to a non-empty state, 45.5% are refused, 39.5% parse to more than
    // the 512 characters forwarded.
    let parsed = |lines: &Vec<HeaderValue>| TraceState::parse(lines);
    let non_empty = share(&cases, |l| parsed(l).is_some_and(|s| !s.is_empty()));
    let refused = share(&cases, |l| parsed(l).is_none());
    let over_limit = share(&cases, |l| {
        parsed(l).is_some_and(|s| s.encoded_len() > DEFAULT_TRACESTATE_LIMIT)
    });
    assert!(non_empty > 0.3, "{non_empty}");
    assert!(refused > 0.3, "{refused}");
    assert!(over_limit > 0.25, "{over_limit}");
}

#[test]
fn valid_state_generator_reaches_repeats_two_lines_long_members_and_32() {
    let chr: Vec<u8> = (0x20..=0x7e).filter(|b| !b",=".contains(b)).collect();
    assert_eq!(VALUE_CHR, &chr[..]);
    assert_eq!(VALUE_NBLK, &chr[1..]);
    let cases = sample(&valid_state(), 10_000);
    // Measured: 73.8% repeat a key; 87.8% come in two lines; 87.3% have a member longer than
    // 128 characters; 73.4% are longer than 512; 2.9% have 32 members; 19.3% a 256-character
    // key.
    let repeated = share(&cases, |s| first_of_each_key(&s.sent).len() < s.sent.len());
    let two_lines = share(&cases, |s| s.lines.len() == 2);
    let long_member = share(&cases, |s| {
        s.sent.iter().any(|(k, v)| k.len() + 1 + v.len() > 128)
    });
    let over_limit = share(&cases, |s| {
        TraceState::parse(&header_lines(&s.lines))
            .unwrap()
            .encoded_len()
            > DEFAULT_TRACESTATE_LIMIT
    });
    let thirty_two = share(&cases, |s| s.sent.len() == MAX_MEMBERS);
    let longest_key = share(&cases, |s| s.sent.iter().any(|(k, _)| k.len() == 256));
    assert!(repeated > 0.5, "{repeated}");
    assert!(two_lines > 0.8, "{two_lines}");
    assert!(long_member > 0.5, "{long_member}");
    assert!(over_limit > 0.5, "{over_limit}");
    assert!(thirty_two > 0.02, "{thirty_two}");
    assert!(longest_key > 0.1, "{longest_key}");
}

#[test]
fn extraction_generator_reaches_continued_traces_with_state() {
    let cases = sample(&(extraction_parent(), tracestate_lines()), 10_000);
    // Measured: 55.0% continue the caller's trace; 30.1% with a non-empty state; 22.6% with a
    // state truncated on the way.
    let continued = share(&cases, |(p, _)| TraceParent::parse(p).is_some());
    let with_state = share(&cases, |(p, s)| {
        TraceParent::parse(p).is_some() && TraceState::parse(s).is_some_and(|s| !s.is_empty())
    });
    let truncated = share(&cases, |(p, s)| {
        TraceParent::parse(p).is_some()
            && TraceState::parse(s).is_some_and(|s| s.encoded_len() > DEFAULT_TRACESTATE_LIMIT)
    });
    assert!(continued > 0.4, "{continued}");
    assert!(with_state > 0.2, "{with_state}");
    assert!(truncated > 0.1, "{truncated}");
}
