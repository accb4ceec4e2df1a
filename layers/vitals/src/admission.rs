//! The concurrency limit's admission and the deadline as the fused service drives them: the
//! permit held to the body's end, the queue as the one wait before the handler, the refusal and
//! the timeout as answers. With the `concurrency` feature off the types are uninhabited, so the
//! phases that hold them cost nothing and cannot happen.

#[cfg(feature = "concurrency")]
pub(crate) use vitals_concurrency::Permit;
#[cfg(feature = "concurrency")]
pub(crate) use vitals_concurrency::deadline::{Deadline, DeadlinePart};
#[cfg(feature = "concurrency")]
pub(crate) use vitals_concurrency::part::Queued;
use vitals_core::route::RouteLabel;

#[cfg(feature = "rate-limit")]
pub(crate) use vitals_rate_limit::part::Grant;

/// No rate-limit headers without the rate limit.
#[cfg(not(feature = "rate-limit"))]
#[derive(Debug)]
pub(crate) enum Grant {}

/// No permit without the limit.
#[cfg(not(feature = "concurrency"))]
#[derive(Debug)]
pub(crate) enum Permit {}

/// No queue without the limit.
#[cfg(not(feature = "concurrency"))]
#[derive(Debug)]
pub(crate) enum Queued {}

/// No deadline without the `concurrency` feature.
#[cfg(not(feature = "concurrency"))]
#[derive(Debug)]
pub(crate) enum Deadline {}

/// No deadline part without the `concurrency` feature.
#[cfg(not(feature = "concurrency"))]
#[derive(Clone, Debug)]
pub(crate) enum DeadlinePart {}

/// A request waiting for a permit, with the service that will take it once admitted (and what
/// its deadline, which starts at admission, is read from). Boxed in the response future: the
/// queue is the slow path, and the running future stays small.
#[cfg_attr(not(feature = "concurrency"), allow(dead_code))]
pub(crate) struct Waiting<S, Req> {
    pub(crate) queued: Queued,
    pub(crate) service: S,
    pub(crate) request: Option<Req>,
    pub(crate) deadline: Option<(DeadlinePart, RouteLabel)>,
}
