//! `traceparent` (W3C Trace Context Level 2, §3.2): parsing by the grammar, and formatting.

use std::fmt;

use vitals_core::identity::{SpanId, TraceId};

/// The trace flags: `sampled` (bit 0) and, at Level 2, `random` (bit 1: the trace id's
/// right-most 7 bytes are random).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The caller may have recorded the trace.
    pub const SAMPLED: Self = Self(0x01);
    /// The trace id was generated at random.
    pub const RANDOM: Self = Self(0x02);

    /// The flags from their byte.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The flags' byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether `flag` is set.
    pub const fn contains(self, flag: Self) -> bool {
        self.0 & flag.0 == flag.0
    }

    /// These flags with `flag` set.
    #[must_use]
    pub const fn with(self, flag: Self) -> Self {
        Self(self.0 | flag.0)
    }

    /// Only the flags this version defines (sampled, random): what goes out in a version-00
    /// header, whatever came in.
    #[must_use]
    pub const fn known(self) -> Self {
        Self(self.0 & 0x03)
    }
}

/// A parsed `traceparent`.
///
/// ```
/// use vitals_trace_context::TraceParent;
///
/// let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert!(parent.flags.contains(vitals_trace_context::TraceFlags::SAMPLED));
/// assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!(TraceParent::parse(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The version of the format the sender used.
    pub version: u8,
    /// The trace.
    pub trace_id: TraceId,
    /// The caller's span.
    pub parent_id: SpanId,
    /// The trace flags.
    pub flags: TraceFlags,
}

/// The length of a version-00 `traceparent`.
const LEN_00: usize = 55;

/// Two lowercase hex digits (uppercase is invalid).
fn hex_nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn hex_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (hex_nibble(pair[0])? << 4) | hex_nibble(pair[1])?;
    }
    Some(out)
}

impl TraceParent {
    /// Parses a `traceparent` value. `None` when it is invalid: version `00` with anything but
    /// exactly the four fields, `ff`, uppercase hex, all-zero ids, wrong lengths.
    /// Versions above `00` are read by their first four fields, as the spec asks of a version
    /// the parser does not know.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < LEN_00 {
            return None;
        }
        let version = hex_bytes::<1>(&value[0..2])?[0];
        if version == 0xff {
            return None;
        }
        if version == 0 && value.len() != LEN_00 {
            return None;
        }
        // A later version may add fields, each after a dash.
        if value.len() > LEN_00 && value[LEN_00] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::from_bytes(hex_bytes::<16>(&value[3..35])?)?;
        let parent_id = SpanId::from_bytes(hex_bytes::<8>(&value[36..52])?)?;
        let flags = TraceFlags::from_bits(hex_bytes::<1>(&value[53..55])?[0]);
        Some(Self {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }
}

/// Lowercase hex of `bytes` into `out`, which is twice as long at every call (the only error
/// `encode_to_slice` has is another length).
fn hex_into<const N: usize>(bytes: &[u8; N], out: &mut [u8]) {
    let written = const_hex::encode_to_slice(bytes, out);
    debug_assert!(written.is_ok(), "{N} bytes into {}", out.len());
}

impl TraceParent {
    /// The version-00 text, on the stack: what this implementation sends, whatever version
    /// came in, with only the flags version 00 defines.
    pub(crate) fn encode(&self) -> [u8; LEN_00] {
        let mut out = [b'-'; LEN_00];
        out[0] = b'0';
        out[1] = b'0';
        hex_into(&self.trace_id.to_bytes(), &mut out[3..35]);
        hex_into(&self.parent_id.to_bytes(), &mut out[36..52]);
        hex_into(&[self.flags.known().bits()], &mut out[53..55]);
        out
    }
}

impl fmt::Display for TraceParent {
    /// Always version `00` with the flags it defines: what this implementation sends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = self.encode();
        // Hex digits and dashes only.
        f.write_str(std::str::from_utf8(&encoded).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_a_flag_that_is_set_keeps_it() {
        let sampled = TraceFlags::SAMPLED;
        assert!(
            sampled
                .with(TraceFlags::SAMPLED)
                .contains(TraceFlags::SAMPLED)
        );
        let both = sampled.with(TraceFlags::RANDOM).with(TraceFlags::RANDOM);
        assert!(both.contains(TraceFlags::SAMPLED) && both.contains(TraceFlags::RANDOM));
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(text: &str) -> Option<TraceParent> {
        TraceParent::parse(text.as_bytes())
    }

    #[test]
    fn version_00_is_strict() {
        let parent = parse(VALID).unwrap();
        assert_eq!(parent.version, 0);
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.parent_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(parent.to_string(), VALID);
        for bad in [
            // Longer, shorter, uppercase, zero ids, wrong separators, bad flags.
            &format!("{VALID}-extra"),
            &VALID[..54],
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_first_four_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds";
        let parent = parse(later).unwrap();
        assert_eq!(parent.version, 0xcc);
        assert!(parent.flags.contains(TraceFlags::SAMPLED));
        // Sent on as version 00, with only the flags 00 defines.
        assert_eq!(parent.to_string(), VALID);
        assert!(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x").is_none());
        assert!(parse(&VALID.replacen("00", "01", 1)).is_some());
    }

    #[test]
    fn flags() {
        let flags = TraceFlags::default().with(TraceFlags::RANDOM);
        assert!(flags.contains(TraceFlags::RANDOM));
        assert!(!flags.contains(TraceFlags::SAMPLED));
        assert_eq!(TraceFlags::from_bits(0xff).known().bits(), 0x03);
    }
}
