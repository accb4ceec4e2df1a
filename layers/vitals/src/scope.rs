//! What a request's work runs inside: its span entered, its trace context and query ledger
//! current — once per poll of the handler (and of the body it answered with), whatever the
//! parts.

#[cfg(feature = "queries")]
pub(crate) use vitals_queries::QueryLedger;
#[cfg(feature = "queries")]
use vitals_queries::part::QueriesInFlight;
#[cfg(feature = "trace-context")]
use vitals_trace_context::part::{TraceInFlight, TraceScope};

/// No ledger without the queries part.
#[cfg(not(feature = "queries"))]
#[derive(Debug)]
pub(crate) enum QueryLedger {}

/// No queries in flight without the queries part.
#[cfg(not(feature = "queries"))]
#[derive(Debug)]
pub(crate) enum QueriesInFlight {}

/// No trace scope without the trace-context part.
#[cfg(not(feature = "trace-context"))]
#[derive(Debug)]
pub(crate) enum TraceScope {}

/// No trace in flight without the trace-context part.
#[cfg(not(feature = "trace-context"))]
#[derive(Debug)]
pub(crate) enum TraceInFlight {}

/// Until the response head: the trace part's state (its span and context inside).
pub(crate) struct RequestScope {
    pub(crate) trace: Option<TraceInFlight>,
    /// The queries part's own span, when there is no request span to carry its ledger.
    pub(crate) span: Option<tracing::Span>,
    pub(crate) ledger: Option<QueryLedger>,
}

/// From the response head to the end of the body.
pub(crate) struct BodyScope {
    pub(crate) trace: Option<TraceScope>,
    pub(crate) span: Option<tracing::Span>,
    pub(crate) ledger: Option<QueryLedger>,
}

impl RequestScope {
    /// The scope of a request: the trace part's span when there is one, else the queries
    /// part's own span (its ledger needs a span to be found from the statements' events).
    pub(crate) fn new(trace: Option<TraceInFlight>, queries: Option<&QueriesInFlight>) -> Self {
        let Some(queries) = queries else {
            return Self {
                trace,
                span: None,
                ledger: None,
            };
        };
        #[cfg(feature = "queries")]
        {
            #[cfg(feature = "trace-context")]
            let request_span = trace.as_ref().map(TraceInFlight::span);
            #[cfg(not(feature = "trace-context"))]
            let request_span: Option<&tracing::Span> = None;
            let span = match request_span {
                Some(request_span) => {
                    queries.attach_to(request_span);
                    None
                }
                None => Some(queries.own_span()),
            };
            Self {
                trace,
                span,
                ledger: Some(queries.ledger().clone()),
            }
        }
        #[cfg(not(feature = "queries"))]
        match *queries {}
    }

    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "trace-context")]
        let trace = self.trace.as_ref().map(TraceInFlight::scope);
        #[cfg(not(feature = "trace-context"))]
        let trace = self.trace.as_ref().map(|never| match *never {});
        run_in(trace, self.span.as_ref(), self.ledger.as_ref(), f)
    }
}

impl BodyScope {
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        run_in(
            self.trace.as_ref(),
            self.span.as_ref(),
            self.ledger.as_ref(),
            f,
        )
    }

    /// The body failed: the span says so.
    pub(crate) fn on_error(&self) {
        #[cfg(feature = "trace-context")]
        if let Some(trace) = &self.trace {
            trace.on_body_error();
        }
    }
}

/// Runs `f` with the span entered once (the trace part's, else the queries part's own) and
/// the ledger current.
fn run_in<R>(
    trace: Option<&TraceScope>,
    span: Option<&tracing::Span>,
    ledger: Option<&QueryLedger>,
    f: impl FnOnce() -> R,
) -> R {
    let with_ledger = || match ledger {
        #[cfg(feature = "queries")]
        Some(ledger) => ledger.in_scope(f),
        #[cfg(not(feature = "queries"))]
        Some(never) => match *never {},
        None => f(),
    };
    match trace {
        #[cfg(feature = "trace-context")]
        Some(trace) => trace.in_scope(with_ledger),
        #[cfg(not(feature = "trace-context"))]
        Some(never) => match *never {},
        None => {
            let _entered = span.map(tracing::Span::enter);
            with_ledger()
        }
    }
}
