//! The errors the client layers answer with instead of calling the downstream service.
//!
//! The client stack's services fail with [`BoxError`], as tower's own client middleware does
//! (`tower::timeout`): hyper-util's client, a tonic `Channel` and reqwest each have an error
//! type of their own, and these sit beside them. Find them with `downcast_ref`:
//!
//! ```
//! use vitals_client::{BoxError, BreakerOpen, BulkheadFull, DeadlineExceeded};
//!
//! fn describe(error: &BoxError) -> &'static str {
//!     if error.is::<DeadlineExceeded>() {
//!         "no time left"
//!     } else if error.is::<BreakerOpen>() || error.is::<BulkheadFull>() {
//!         "not called: the downstream is failing, or busy with our calls"
//!     } else {
//!         "the call failed"
//!     }
//! }
//! # let _ = describe;
//! ```

use std::fmt;
use std::time::Duration;

/// The error type of the client stack's services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The call was not made, or was cut, because its time ran out: the request's deadline
/// (propagated from the server side) or the call's own timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadlineExceeded {
    by_request: bool,
    started: bool,
}

impl DeadlineExceeded {
    pub(crate) fn new(by_request: bool, started: bool) -> Self {
        Self {
            by_request,
            started,
        }
    }

    /// Whether the request's deadline (rather than the call's own timeout) ran out.
    pub fn by_request_deadline(&self) -> bool {
        self.by_request
    }

    /// Whether the call had started (and was cut), rather than refused before any connection
    /// because no time was left.
    pub fn call_started(&self) -> bool {
        self.started
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = if self.by_request {
            "the request's deadline"
        } else {
            "the call's timeout"
        };
        if self.started {
            write!(f, "deadline exceeded: {whose} passed during the call")
        } else {
            write!(f, "deadline exceeded: {whose} left no time for the call")
        }
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The circuit breaker is open: the downstream failed too often, so the call was answered at
/// once, without calling it (no connection, no waiting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerOpen {
    name: std::sync::Arc<str>,
    retry_after: Duration,
}

impl BreakerOpen {
    pub(crate) fn new(name: std::sync::Arc<str>, retry_after: Duration) -> Self {
        Self { name, retry_after }
    }

    /// The breaker's name (the downstream it protects).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long until the breaker lets a probe call through; zero while probes are under way.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker {:?} is open: the downstream was not called (probe in {} ms)",
            self.name,
            self.retry_after.as_millis()
        )
    }
}

impl std::error::Error for BreakerOpen {}

/// The bulkhead was full: as many calls to this downstream as allowed were under way, so this
/// one failed at once, without calling it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadFull {
    name: std::sync::Arc<str>,
    limit: usize,
}

impl BulkheadFull {
    pub(crate) fn new(name: std::sync::Arc<str>, limit: usize) -> Self {
        Self { name, limit }
    }

    /// The bulkhead's name (the downstream it protects).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many calls it lets through at once.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead {:?} is full: {} calls are under way, the downstream was not called",
            self.name, self.limit
        )
    }
}

impl std::error::Error for BulkheadFull {}
