//! Request methods as a small index, so per-method handles live in arrays.

use http::Method;
use vitals_core::semconv::{OTHER_METHOD, method_label};

/// The `http.request.method` labels, in index order: the nine standard methods, then `_OTHER`.
pub(crate) const LABELS: [&str; 10] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    OTHER_METHOD,
];

/// A method's index into [`LABELS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MethodIndex(u8);

impl MethodIndex {
    pub(crate) fn of(method: &Method) -> Self {
        let label = method_label(method);
        let index = LABELS.iter().position(|l| *l == label).unwrap_or(9);
        #[allow(clippy::cast_possible_truncation)]
        Self(index as u8)
    }

    /// Whether this is `HEAD` (whose response body is dropped unsent).
    pub(crate) fn is_head(self) -> bool {
        self.0 == 1
    }

    pub(crate) fn label(self) -> &'static str {
        LABELS[usize::from(self.0)]
    }

    #[cfg_attr(
        not(any(feature = "metrics", feature = "opentelemetry")),
        allow(dead_code)
    )]
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_round_trip_to_semconv_labels() {
        for method in [
            Method::GET,
            Method::PATCH,
            Method::from_bytes(b"BREW").unwrap_or_default(),
        ] {
            assert_eq!(MethodIndex::of(&method).label(), method_label(&method));
        }
        assert_eq!(
            MethodIndex::of(&Method::from_bytes(b"BREW").unwrap_or_default()).label(),
            "_OTHER"
        );
    }
}
