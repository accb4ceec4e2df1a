//! Which attempt of an outgoing call a request is — so the layer that makes each attempt's
//! CLIENT span can record `http.request.resend_count`, as the OpenTelemetry HTTP conventions
//! ask, whichever crate did the retrying.
//!
//! ```
//! use vitals_core::attempt::ResendCount;
//!
//! let mut request = http::Request::new(());
//! // A retrying layer, sending the request a second time:
//! request.extensions_mut().insert(ResendCount(1));
//! assert_eq!(ResendCount::of(&request), 1);
//! assert_eq!(ResendCount::of(&http::Request::new(())), 0);
//! ```

/// How many times the request was sent before this attempt (0 for the first), in the
/// outgoing request's extensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResendCount(pub u32);

impl ResendCount {
    /// The count a request carries (0 without one).
    pub fn of<B>(request: &http::Request<B>) -> u32 {
        request
            .extensions()
            .get::<Self>()
            .map_or(0, |count| count.0)
    }
}
