//! `DeadlineLayer`: the settings, and the layer that wraps a client service.

use std::time::Duration;

use tower_layer::Layer;
use vitals_core::findings::Findings;

use super::service::Deadline;
use crate::findings::Reporter;

/// Puts every outgoing call under the request's deadline, and its own timeout (see the
/// [module docs](crate::deadline)).
#[derive(Clone, Debug, Default)]
pub struct DeadlineLayer {
    pub(crate) timeout: Option<Duration>,
    pub(crate) reserve: Duration,
    pub(crate) findings: Option<Reporter>,
}

impl DeadlineLayer {
    /// Calls limited by the request's deadline only (none outside a request with one).
    pub fn new() -> Self {
        Self::default()
    }

    /// The call's own timeout, whatever the request has left: the call gets the smaller of the
    /// two.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Time kept back from the request's deadline (not from the call's own timeout), so that
    /// a handler whose call ran out of time can still answer before the server's deadline does
    /// (say with its own fallback). Default: none.
    #[must_use]
    pub fn with_reserve(mut self, reserve: Duration) -> Self {
        self.reserve = reserve;
        self
    }
}

impl DeadlineLayer {
    /// Reports to `findings` when calls run out of the request's time (kind `downstream`, event
    /// `deadline_exceeded`, the host called as the downstream; at most once per 10 s).
    #[must_use]
    pub fn with_findings(mut self, findings: Findings) -> Self {
        self.findings = Some(Reporter::new(findings));
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.clone())
    }
}
