//! `TraceContext`: the trace a request belongs to, its server span, and what is propagated.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use vitals_core::identity::{RequestId, SpanId, TraceId};

use crate::traceparent::{TraceFlags, TraceParent};
use crate::tracestate::{DEFAULT_TRACESTATE_LIMIT, TraceState};

/// The `traceparent` header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// A request's place in its trace: put in the request extensions by
/// [`TraceContextLayer`](crate::TraceContextLayer), current inside its handler
/// ([`TraceContext::current`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace.
    pub trace_id: TraceId,
    /// This service's span for the request.
    pub span_id: SpanId,
    /// The caller's span, when the request came with a valid `traceparent`.
    pub parent_id: Option<SpanId>,
    /// The trace flags (sampled, random).
    pub flags: TraceFlags,
    /// The caller's `tracestate`, carried on unchanged.
    pub state: TraceState,
    /// The span ids are an exported OpenTelemetry span's: a downstream call without a client
    /// span of its own ([`inject`]) names this span as its parent, rather than an id no backend
    /// will ever see.
    pub exported: bool,
}

/// A random span id (never zero).
pub(crate) fn random_span_id() -> SpanId {
    loop {
        if let Some(id) = SpanId::from_bytes(fastrand::u64(..).to_be_bytes()) {
            return id;
        }
    }
}

/// A random trace id (never zero): all 16 bytes random, which Level 2's random flag promises
/// for the right-most 7.
pub(crate) fn random_trace_id() -> TraceId {
    loop {
        if let Some(id) = TraceId::from_bytes(fastrand::u128(..).to_be_bytes()) {
            return id;
        }
    }
}

impl TraceContext {
    /// Continues the trace of `headers` (one valid `traceparent`; `tracestate` only with it),
    /// or starts a new one — random trace id, random flag, sampled — when there is none or it
    /// is invalid (several `traceparent` lines are invalid too). The `tracestate` kept is
    /// [truncated](TraceState::truncate) to [`DEFAULT_TRACESTATE_LIMIT`] characters.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_limited(headers, DEFAULT_TRACESTATE_LIMIT)
    }

    /// [`from_headers`](Self::from_headers), the `tracestate` kept truncated to
    /// `tracestate_limit` characters.
    pub fn from_headers_limited(headers: &HeaderMap, tracestate_limit: usize) -> Self {
        let mut lines = headers.get_all(TRACEPARENT).iter();
        let parent = match (lines.next(), lines.next()) {
            (Some(only), None) => TraceParent::parse(only.as_bytes()),
            _ => None,
        };
        match parent {
            Some(parent) => Self {
                trace_id: parent.trace_id,
                span_id: random_span_id(),
                parent_id: Some(parent.parent_id),
                flags: parent.flags.known(),
                state: {
                    let mut state =
                        TraceState::parse(headers.get_all(TRACESTATE)).unwrap_or_default();
                    state.truncate(tracestate_limit);
                    state
                },
                exported: false,
            },
            None => Self::new_root(),
        }
    }

    /// The context of work that continues a trace elsewhere — a job a request enqueued, with
    /// the request's `traceparent` (and `tracestate`) kept beside it: the same trace, that span
    /// as the parent, a new span id. A new trace when `traceparent` is not a valid one.
    pub fn continued_from(traceparent: &str, tracestate: Option<&str>) -> Self {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        if let Some(value) = tracestate.and_then(|state| HeaderValue::from_str(state).ok()) {
            headers.insert(TRACESTATE, value);
        }
        Self::from_headers(&headers)
    }

    /// Makes `span` this context's span in the exported trace (feature `opentelemetry`: the
    /// span continues the trace with this context's parent, and the context takes the exported
    /// span's ids, as a request's server span does). Unchanged without an OpenTelemetry layer.
    #[must_use]
    pub fn followed_by(self, #[allow(unused_variables)] span: &tracing::Span) -> Self {
        #[cfg(feature = "opentelemetry")]
        return crate::otel::bridge(span, self);
        #[cfg(not(feature = "opentelemetry"))]
        self
    }

    /// A new trace: random ids, random and sampled flags, no state.
    pub fn new_root() -> Self {
        Self {
            trace_id: random_trace_id(),
            span_id: random_span_id(),
            parent_id: None,
            flags: TraceFlags::SAMPLED.with(TraceFlags::RANDOM),
            state: TraceState::default(),
            exported: false,
        }
    }

    /// The `traceparent` naming this context's span as the parent.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            version: 0,
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: self.flags,
        }
    }

    /// The context of an outgoing call made from this one: same trace, flags and state, a new
    /// span id (the client span) as the callee's parent.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: random_span_id(),
            parent_id: Some(self.span_id),
            exported: false,
            ..self.clone()
        }
    }

    /// What an outgoing call made without a client span of its own sends: a new child span,
    /// or — when this span is exported to a tracing backend — this span itself, so the callee's
    /// parent exists there.
    #[must_use]
    pub fn outgoing(&self) -> Self {
        if self.exported {
            self.clone()
        } else {
            self.child()
        }
    }

    /// Writes `traceparent` (and `tracestate`, when there is one) into `headers`, replacing
    /// what was there.
    pub fn inject_into(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_bytes(&self.traceparent().encode()) {
            headers.insert(TRACEPARENT, value);
        }
        headers.remove(TRACESTATE);
        if let Some(state) = self.state.header_value() {
            headers.insert(TRACESTATE, state);
        }
    }

    /// The context of the request being handled on this task, if any (set while
    /// [`TraceContextLayer`](crate::TraceContextLayer)'s handler future is polled).
    pub fn current() -> Option<Self> {
        CURRENT.with(|current| current.borrow().as_ref().map(|scope| scope.context.clone()))
    }

    /// Makes `self` the current context while `future` is polled: for work spawned from a
    /// handler (`tokio::spawn(context.scope(work))`), or calls made outside any request.
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            future,
            scope: Arc::new(CurrentScope {
                context: self,
                request_id: None,
            }),
        }
    }
}

/// What is current on a thread while a request's work (or a [`Scoped`] future) runs: its
/// context and, for a request, its request id — what log lines inside it are labelled with.
#[derive(Debug)]
pub(crate) struct CurrentScope {
    pub(crate) context: TraceContext,
    #[cfg_attr(not(feature = "logs"), allow(dead_code))] // Read for log lines only.
    pub(crate) request_id: Option<RequestId>,
}

/// Runs `f` with `scope` current on this thread (a reference count, not a copy of the
/// context, per poll).
pub(crate) fn enter<R>(scope: &Arc<CurrentScope>, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|current| current.replace(Some(Arc::clone(scope))));
    let _restore = Restore(previous);
    f()
}

/// Calls `f` with the scope current on this thread, if any (without copying it).
#[cfg_attr(not(feature = "logs"), allow(dead_code))]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&CurrentScope>) -> R) -> R {
    CURRENT.with(|current| f(current.borrow().as_deref()))
}

pin_project_lite::pin_project! {
    /// A future run with a [`TraceContext`] current; see [`TraceContext::scope`].
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        future: F,
        scope: Arc<CurrentScope>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        enter(this.scope, || future.poll(cx))
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CurrentScope>>> = const { RefCell::new(None) };
}

/// Puts the previous current scope back, also when `f` panics.
struct Restore(Option<Arc<CurrentScope>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Writes the current request's context, as a new client span, into the headers of an outgoing
/// call (for clients without a tower layer, such as reqwest): a call made outside any request
/// gets nothing. Returns the client span's context.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// assert!(vitals_trace_context::inject(&mut headers).is_none()); // outside a request
/// assert!(headers.is_empty());
/// ```
pub fn inject(headers: &mut HeaderMap) -> Option<TraceContext> {
    let child = TraceContext::current()?.outgoing();
    child.inject_into(headers);
    Some(child)
}

/// Like [`inject`], for a call made inside a client span of yours
/// (`tracing::info_span!("POST", otel.kind = "client", ...)`): with the `opentelemetry` feature
/// and an OpenTelemetry layer recording it, the exported client span is the callee's parent;
/// otherwise this is [`inject`].
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) -> Option<TraceContext> {
    #[cfg(feature = "opentelemetry")]
    if let Some(client) = crate::otel::client_context(span) {
        client.inject_into(headers);
        return Some(client);
    }
    let _ = span;
    inject(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_parent_is_continued_with_its_state() {
        let context = TraceContext::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ]));
        assert_eq!(
            context.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.parent_id.unwrap().to_string(), "00f067aa0ba902b7");
        assert_ne!(context.span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(context.state.to_string(), "rojo=00f067aa0ba902b7");
        let mut out = HeaderMap::new();
        context.child().inject_into(&mut out);
        let sent = out["traceparent"].to_str().unwrap();
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !sent.contains(&context.span_id.to_string()),
            "a new client span id"
        );
        assert_eq!(out["tracestate"], "rojo=00f067aa0ba902b7");
    }

    #[test]
    fn an_invalid_or_duplicated_parent_starts_a_new_trace_without_state() {
        for bad in [
            headers(&[("traceparent", "00-xyz"), ("tracestate", "rojo=1")]),
            headers(&[
                ("traceparent", PARENT),
                ("traceparent", PARENT),
                ("tracestate", "a=1"),
            ]),
            headers(&[("tracestate", "a=1")]),
        ] {
            let context = TraceContext::from_headers(&bad);
            assert!(context.parent_id.is_none());
            assert!(context.state.is_empty());
            assert!(context.flags.contains(TraceFlags::RANDOM));
            assert_ne!(
                context.trace_id.to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
        }
    }

    #[test]
    fn an_exported_span_is_the_parent_of_calls_without_a_client_span() {
        let mut context = TraceContext::new_root();
        assert_ne!(context.outgoing().span_id, context.span_id);
        context.exported = true;
        assert_eq!(context.outgoing(), context);
    }

    #[test]
    fn the_current_context_is_set_while_entered_and_restored_after() {
        assert!(TraceContext::current().is_none());
        let context = TraceContext::new_root();
        let scope = Arc::new(CurrentScope {
            context: context.clone(),
            request_id: None,
        });
        let seen = enter(&scope, || {
            let mut headers = HeaderMap::new();
            inject(&mut headers).map(|child| (child, headers))
        });
        let (child, headers) = seen.unwrap();
        assert_eq!(child.trace_id, context.trace_id);
        assert_eq!(child.parent_id, Some(context.span_id));
        assert!(headers.contains_key("traceparent"));
        assert!(TraceContext::current().is_none());
    }
}
