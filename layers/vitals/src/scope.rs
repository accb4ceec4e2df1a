//! What a request's work runs inside: its span entered, its trace context and query ledger
//! current — once per poll of the handler (and of the body it answered with), whatever the
//! parts.

#[cfg(feature = "queries")]
pub(crate) use vitals_queries::QueryLedger;
#[cfg(feature = "queries")]
use vitals_queries::part::QueriesInFlight;
#[cfg(feature = "trace-context")]
use vitals_trace_context::part::TraceInFlight;

/// No ledger without the queries part.
#[cfg(not(feature = "queries"))]
#[derive(Debug)]
pub(crate) enum QueryLedger {}

/// No trace in flight without the trace-context part.
#[cfg(not(feature = "trace-context"))]
#[derive(Debug)]
pub(crate) enum TraceInFlight {}

/// The request's span, context and ledger.
pub(crate) struct Scope {
    /// The trace part's state, kept in place from the request to the end of its body.
    pub(crate) trace: Option<TraceInFlight>,
    /// The response head passed: the trace part has recorded it.
    answered: bool,
    /// The queries part's own span, when there is no request span to carry its ledger.
    pub(crate) span: Option<tracing::Span>,
    pub(crate) ledger: Option<QueryLedger>,
}

impl Default for Scope {
    fn default() -> Self {
        Self::off()
    }
}

impl Scope {
    /// The scope of a request before the trace part starts on it (which sets `trace` in
    /// place: the part's state, moved through a constructor, was copied at each step).
    pub(crate) const fn off() -> Self {
        Self {
            trace: None,
            answered: false,
            span: None,
            ledger: None,
        }
    }

    /// The queries part started: its ledger is current from now on, found from the request
    /// span, or from the part's own span when there is none (the statements' events find the
    /// ledger through a span).
    #[cfg(feature = "queries")]
    pub(crate) fn attach_queries(&mut self, queries: &QueriesInFlight) {
        #[cfg(feature = "trace-context")]
        let request_span = self.trace.as_ref().map(TraceInFlight::span);
        #[cfg(not(feature = "trace-context"))]
        let request_span: Option<&tracing::Span> = None;
        match request_span {
            Some(request_span) => queries.attach_to(request_span),
            None => self.span = Some(queries.own_span()),
        }
        self.ledger = Some(queries.ledger().clone());
    }

    /// Runs `f` with the span entered once (the trace part's, else the queries part's own) and
    /// the ledger current.
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let with_ledger = || match &self.ledger {
            #[cfg(feature = "queries")]
            Some(ledger) => ledger.in_scope(f),
            #[cfg(not(feature = "queries"))]
            Some(never) => match *never {},
            None => f(),
        };
        match &self.trace {
            #[cfg(feature = "trace-context")]
            Some(trace) => trace.in_scope(with_ledger),
            #[cfg(not(feature = "trace-context"))]
            Some(never) => match *never {},
            None => {
                let _entered = self.span.as_ref().map(tracing::Span::enter);
                with_ledger()
            }
        }
    }

    /// The response head passed: the span records the status, the request id goes on the
    /// response, and the scope follows the body from now on (the same span and context).
    #[allow(unused_variables)] // Without the trace-context part there is nothing to record.
    pub(crate) fn on_response<B>(&mut self, response: &mut http::Response<B>) {
        // Once per request (the head passes once); a second call would change nothing.
        if std::mem::replace(&mut self.answered, true) {
            return;
        }
        match &mut self.trace {
            #[cfg(feature = "trace-context")]
            Some(trace) => trace.respond(response),
            #[cfg(not(feature = "trace-context"))]
            Some(never) => match *never {},
            None => {}
        }
    }

    /// The handler failed instead of answering.
    pub(crate) fn on_error(self) {
        #[cfg(feature = "trace-context")]
        if let Some(trace) = self.trace.filter(|_| !self.answered) {
            trace.on_error();
        }
    }

    /// The body failed: the span says so.
    pub(crate) fn on_body_error(&self) {
        #[cfg(feature = "trace-context")]
        if let Some(trace) = self.trace.as_ref().filter(|_| self.answered) {
            trace.scope().on_body_error();
        }
    }
}
