//! `tracestate` (W3C Trace Context Level 2, §3.3): vendor entries carried along the trace.

use std::fmt;

use http::HeaderValue;

/// The most list members a `tracestate` may have.
pub const MAX_MEMBERS: usize = 32;

/// The longest `tracestate` forwarded by default, in characters (members and the commas
/// between them): the length the W3C spec says every vendor should propagate at least. A
/// longer one is [truncated](TraceState::truncate), so a client cannot make every call
/// downstream carry 32 members of 256-character values (~16 KB).
pub const DEFAULT_TRACESTATE_LIMIT: usize = 512;

/// Members longer than this (key, `=` and value) go first when truncating.
const LONG_MEMBER: usize = 128;

/// A valid `tracestate`: its list members, in order, at most 32, keys unique (a repeated key
/// keeps its first value).
///
/// ```
/// use http::HeaderValue;
/// use vitals_trace_context::TraceState;
///
/// let lines = [HeaderValue::from_static("rojo=00f067aa0ba902b7"), HeaderValue::from_static("congo=t61rcWkgMzE")];
/// let state = TraceState::parse(&lines).unwrap();
/// assert_eq!(state.to_string(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert!(TraceState::parse(&[HeaderValue::from_static("Rojo=x")]).is_none()); // uppercase key
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceState {
    members: Vec<(String, String)>,
}

const fn is_key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `key = ( lcalpha / DIGIT ) 0*255( lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" )`: the
/// current Level 2 grammar, which folded the older `tenant@system` form into one rule (`@` may
/// appear anywhere but first).
fn valid_key(key: &[u8]) -> bool {
    matches!(key.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
        && key.len() <= 256
        && key.iter().all(|&b| is_key_char(b) || b == b'@')
}

/// `value = 0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, not ending in a space.
fn valid_value(value: &[u8]) -> bool {
    let nblk = |b: u8| matches!(b, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    !value.is_empty()
        && value.len() <= 256
        && value.last().is_some_and(|&b| nblk(b))
        && value.iter().all(|&b| b == b' ' || nblk(b))
}

impl TraceState {
    /// Parses every `tracestate` line, combined in order. `None` — the whole `tracestate` is
    /// dropped — when a member is invalid or there are more than 32 members. Empty members
    /// (`a=1,,b=2`) are skipped; a repeated key keeps its first value, as the spec allows.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Self> {
        let mut members: Vec<(String, String)> = Vec::new();
        // List members as sent, repeats included: the limit is on those.
        let mut sent = 0;
        for line in lines {
            for member in line.as_bytes().split(|&b| b == b',') {
                let member = trim(member);
                if member.is_empty() {
                    continue;
                }
                let at = member.iter().position(|&b| b == b'=')?;
                let (key, value) = (&member[..at], &member[at + 1..]);
                sent += 1;
                if !valid_key(key) || !valid_value(value) || sent > MAX_MEMBERS {
                    return None;
                }
                // Checked ASCII above.
                let key = String::from_utf8_lossy(key).into_owned();
                if members.iter().any(|(k, _)| *k == key) {
                    continue;
                }
                members.push((key, String::from_utf8_lossy(value).into_owned()));
            }
        }
        Some(Self { members })
    }

    /// The length of the header value: the members and the commas between them.
    pub fn encoded_len(&self) -> usize {
        let members: usize = self.members.iter().map(member_len).sum();
        members + self.members.len().saturating_sub(1)
    }

    /// Drops whole members until the header value is at most `limit` characters, as the
    /// spec's "Tracestate Limits" section says: members longer than 128 characters first
    /// (from the end of the list), then members from the end. The first members — the most
    /// recent vendors, the one that wrote `traceparent` first of all — are kept longest.
    pub fn truncate(&mut self, limit: usize) {
        let mut len = self.encoded_len();
        let mut i = self.members.len();
        while len > limit && i > 0 {
            i -= 1;
            if member_len(&self.members[i]) > LONG_MEMBER {
                len = len.saturating_sub(member_len(&self.members[i]) + 1);
                self.members.remove(i);
            }
        }
        while self.encoded_len() > limit {
            self.members.pop();
        }
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, in order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The header value; `None` when empty (send no `tracestate` then).
    pub fn header_value(&self) -> Option<HeaderValue> {
        if self.members.is_empty() {
            return None;
        }
        HeaderValue::from_str(&self.to_string()).ok()
    }
}

fn member_len((key, value): &(String, String)) -> usize {
    key.len() + 1 + value.len()
}

/// `OWS` (spaces and tabs) trimmed from both ends.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&'static str]) -> Option<TraceState> {
        let values: Vec<_> = lines
            .iter()
            .map(|l| HeaderValue::from_bytes(l.as_bytes()).unwrap())
            .collect();
        TraceState::parse(&values)
    }

    #[test]
    fn members_follow_the_grammar() {
        let state = parse(&["a=1 , b@vendor=two words, ,", "c/d*e=x"]).unwrap();
        assert_eq!(state.to_string(), "a=1,b@vendor=two words,c/d*e=x");
        for bad in [
            "A=1",      // uppercase key
            "_a=1",     // keys start with a letter or a digit
            "a=",       // empty value
            "a=b=c",    // `=` in a value
            "a=ends ",  // trailing space in a value... trimmed as OWS, so valid? see below
            "@a=1",     // `@` cannot come first
            "a=\u{e9}", // non-ASCII
            "novalue",
        ] {
            if bad == "a=ends " {
                // OWS around a member is not part of it: this one is valid.
                assert!(parse(&[bad]).is_some());
                continue;
            }
            assert!(parse(&[bad]).is_none(), "{bad}");
        }
        assert!(parse(&["a@b=1"]).is_some());
        assert!(parse(&["0tenant@sys=1"]).is_some());
        for good in ["foo@=1", "foo@@bar=1", "a@b@c=1", "1a=1"] {
            assert!(parse(&[good]).is_some(), "{good}");
        }
        let longest = format!("{}=1", "z".repeat(256));
        let too_long = format!("{}=1", "z".repeat(257));
        assert!(TraceState::parse([&HeaderValue::from_str(&longest).unwrap()]).is_some());
        assert!(TraceState::parse([&HeaderValue::from_str(&too_long).unwrap()]).is_none());
    }

    fn member(key: &str, value_len: usize) -> String {
        format!("{key}={}", "v".repeat(value_len))
    }

    #[test]
    fn truncation_drops_long_members_first_then_from_the_end() {
        // Thirty-two members of ~500 bytes: the amplification a client could ask for.
        let huge: Vec<String> = (0..32).map(|i| member(&format!("k{i}"), 250)).collect();
        let line = HeaderValue::from_str(&huge.join(",")).unwrap();
        let mut state = TraceState::parse([&line]).unwrap();
        assert!(state.encoded_len() > 8_000);
        state.truncate(DEFAULT_TRACESTATE_LIMIT);
        assert!(state.encoded_len() <= DEFAULT_TRACESTATE_LIMIT);
        // Long members go from the end until the rest fits: the first two (253 + 1 + 253).
        let keys: Vec<&str> = state.members().map(|(k, _)| k).collect();
        assert_eq!(keys, ["k0", "k1"]);

        // Short members are kept in order; the long ones go first, wherever they are.
        let mixed = [
            member("first", 60),
            member("big1", 200),
            member("second", 60),
            member("third", 60),
            member("big2", 200),
            member("fourth", 60),
        ];
        let line = HeaderValue::from_str(&mixed.join(",")).unwrap();
        let mut state = TraceState::parse([&line]).unwrap();
        state.truncate(300);
        let keys: Vec<&str> = state.members().map(|(k, _)| k).collect();
        assert_eq!(keys, ["first", "second", "third", "fourth"]);
        // Then from the end.
        state.truncate(140);
        let keys: Vec<&str> = state.members().map(|(k, _)| k).collect();
        assert_eq!(keys, ["first", "second"]);
        // What is left still parses, and a state under the limit is untouched.
        let value = state.header_value().unwrap();
        assert_eq!(TraceState::parse([&value]).unwrap(), state);
        let before = state.clone();
        state.truncate(DEFAULT_TRACESTATE_LIMIT);
        assert_eq!(state, before);
        // A member of exactly 128 characters is not a long one: the last member goes first.
        let edge = HeaderValue::from_str(&format!("{},y=1", member("x", 126))).unwrap();
        let mut edge = TraceState::parse([&edge]).unwrap();
        edge.truncate(edge.encoded_len() - 1);
        assert_eq!(edge.members().map(|(k, _)| k).collect::<Vec<_>>(), ["x"]);
        // Exactly at the limit, long members included: nothing goes.
        let line = HeaderValue::from_str(&mixed.join(",")).unwrap();
        let mut full = TraceState::parse([&line]).unwrap();
        let exact = full.encoded_len();
        full.truncate(exact);
        assert_eq!(full.members().count(), mixed.len());
        state.truncate(0);
        assert!(state.is_empty() && state.header_value().is_none());
    }

    #[test]
    fn duplicates_keep_the_first_and_more_than_32_members_drop_everything() {
        assert_eq!(parse(&["a=1", "b=2,a=3"]).unwrap().to_string(), "a=1,b=2");
        let repeated = vec!["k=v"; 33].join(",");
        assert!(TraceState::parse([&HeaderValue::from_str(&repeated).unwrap()]).is_none());
        let thirty_two: String = (0..32)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let thirty_three: String = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let ok = HeaderValue::from_str(&thirty_two).unwrap();
        let too_many = HeaderValue::from_str(&thirty_three).unwrap();
        assert_eq!(TraceState::parse([&ok]).unwrap().members().count(), 32);
        assert!(TraceState::parse([&too_many]).is_none());
        assert!(parse(&[""]).unwrap().is_empty());
        assert!(parse(&[""]).unwrap().header_value().is_none());
    }
}
