//! Who a request is: its trace id, server span id and request id.
//!
//! The trace-context layer fills a [`RequestIdentity`] into the request extensions; the other
//! layers read it for their log events and findings, so a slow-request warning or an N+1
//! finding can be found in the tracing backend. Without the trace-context layer the identity is
//! simply empty.
//!
//! ```
//! use http::{HeaderValue, Request};
//! use vitals_core::identity::{RequestId, RequestIdentity, TraceId};
//!
//! let mut request = Request::new(());
//! assert!(RequestIdentity::of(request.extensions()).is_empty());
//!
//! let identity = RequestIdentity {
//!     trace_id: TraceId::from_bytes([0x4b; 16]),
//!     request_id: RequestId::new(HeaderValue::from_static("req-7")),
//!     ..RequestIdentity::default()
//! };
//! request.extensions_mut().insert(identity);
//! let seen = RequestIdentity::of(request.extensions());
//! assert_eq!(seen.trace_id.unwrap().to_string(), "4b".repeat(16));
//! assert_eq!(seen.request_id.as_ref().unwrap().as_str(), "req-7");
//! ```

use std::fmt;

use http::{Extensions, HeaderValue};

/// The target of the request span the trace-context layer opens (named `request`). A layer
/// that keeps request state on that span — the query ledger, for queries reported on other
/// threads — must let this target's spans through its per-layer filter, or it cannot see them.
pub const REQUEST_SPAN_TARGET: &str = "vitals_trace_context";

/// The longest request id accepted, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A W3C trace id: 16 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// A W3C span (parent) id: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

macro_rules! hex_id {
    ($name:ident, $len:literal) => {
        impl $name {
            /// The id from its bytes; `None` for the all-zero (invalid) id.
            pub fn from_bytes(bytes: [u8; $len]) -> Option<Self> {
                (bytes != [0; $len]).then_some(Self(bytes))
            }

            /// The id's bytes.
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0
            }
        }

        impl fmt::Display for $name {
            /// Lowercase hex, as W3C Trace Context and OpenTelemetry write it.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

hex_id!(TraceId, 16);
hex_id!(SpanId, 8);

fn write_hex<const N: usize>(f: &mut fmt::Formatter<'_>, bytes: &[u8; N]) -> fmt::Result {
    f.write_str(const_hex::Buffer::<N>::new().format(bytes))
}

/// A request id: 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters.
///
/// Request ids arrive from clients and proxies, so they are untrusted: [`RequestId::new`]
/// refuses anything else, and an id that passed can be logged and echoed safely. Cloning is
/// cheap (the value is reference-counted).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Accepts `value` if it is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters.
    pub fn new(value: HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes.iter().all(u8::is_ascii_graphic);
        valid.then_some(Self(value))
    }

    /// A generated id: `value` as 32 lowercase hex digits. Built in one allocation that its
    /// clones share (the response header, the log lines, the spans), and not checked again:
    /// hex digits are visible ASCII.
    pub fn from_u128(value: u128) -> Self {
        let mut digits = const_hex::Buffer::<16>::new();
        digits.format(&value.to_be_bytes());
        let text: [u8; 32] = *digits.as_byte_array();
        Self(
            HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
                .unwrap_or_else(|_| HeaderValue::from_static("0")),
        )
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Checked to be visible ASCII on construction.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value, to echo it on a response or pass it downstream.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", self.as_str())
    }
}

/// The identity of a request, as filled by the trace-context layer. Empty without it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestIdentity {
    /// The trace the request belongs to.
    pub trace_id: Option<TraceId>,
    /// The server span that handles the request.
    pub span_id: Option<SpanId>,
    /// The request id (from the client, or generated).
    pub request_id: Option<RequestId>,
}

impl RequestIdentity {
    /// The identity stored in `extensions`, or an empty one.
    pub fn of(extensions: &Extensions) -> Self {
        extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// Whether nothing is known about the request.
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_none() && self.span_id.is_none() && self.request_id.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_render_as_lowercase_hex_and_zero_is_invalid() {
        let mut bytes = [0u8; 16];
        assert!(TraceId::from_bytes(bytes).is_none());
        bytes[0] = 0xAB;
        bytes[15] = 0x01;
        let id = TraceId::from_bytes(bytes).unwrap();
        assert_eq!(id.to_string(), "ab000000000000000000000000000001");
        assert_eq!(id.to_bytes(), bytes);
        let span = SpanId::from_bytes([0xff, 0, 0, 0, 0, 0, 0, 0x0e]).unwrap();
        assert_eq!(span.to_string(), "ff0000000000000e");
        assert_eq!(format!("{span:?}"), "SpanId(ff0000000000000e)");
        assert!(SpanId::from_bytes([0; 8]).is_none());
    }

    #[test]
    fn a_generated_request_id_is_its_value_in_32_lowercase_hex_digits() {
        let id = RequestId::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(id.as_str(), "0123456789abcdeffedcba9876543210");
        assert_eq!(RequestId::from_u128(1).as_str(), format!("{:032x}", 1));
    }

    #[test]
    fn request_ids_are_validated() {
        let ok = |s: &'static str| RequestId::new(HeaderValue::from_static(s));
        assert_eq!(ok("abc-123").unwrap().as_str(), "abc-123");
        assert!(ok("").is_none());
        assert!(ok("has space").is_none());
        let max = "x".repeat(MAX_REQUEST_ID_LEN);
        assert!(RequestId::new(HeaderValue::from_str(&max).unwrap()).is_some());
        let over = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        assert!(RequestId::new(HeaderValue::from_str(&over).unwrap()).is_none());
        // obs-text bytes are legal in a header but not in a request id.
        assert!(RequestId::new(HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()).is_none());
        let generated = RequestId::from_u128(0x0123_4567_89ab_cdef_0000_0000_0000_00ff);
        assert_eq!(generated.as_str(), "0123456789abcdef00000000000000ff");
        assert_eq!(
            RequestId::new(generated.header_value().clone()),
            Some(generated)
        );
    }

    #[test]
    fn missing_identity_is_empty() {
        let extensions = Extensions::new();
        assert!(RequestIdentity::of(&extensions).is_empty());
    }
}
