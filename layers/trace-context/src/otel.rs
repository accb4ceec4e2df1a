//! The bridge to OpenTelemetry (feature `opentelemetry`): the request span, exported through
//! tracing-opentelemetry, continues the caller's trace (same trace id, the caller's span as
//! parent, `tracestate` carried), and the ids the service reports (Server-Timing, logs,
//! downstream `traceparent`) are the exported span's.

use std::str::FromStr;

use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags as OtelTraceFlags,
    TraceId as OtelTraceId, TraceState as OtelTraceState,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use vitals_core::identity::{SpanId, TraceId};

use crate::context::TraceContext;
use crate::traceparent::TraceFlags;

/// The exported span's ids, when an OpenTelemetry layer records `span`.
fn exported(span: &Span) -> Option<(TraceId, SpanId, bool)> {
    let context = span.context();
    let span_ref = context.span();
    let ids = span_ref.span_context();
    if !ids.is_valid() {
        return None;
    }
    Some((
        TraceId::from_bytes(ids.trace_id().to_bytes())?,
        SpanId::from_bytes(ids.span_id().to_bytes())?,
        ids.trace_flags().is_sampled(),
    ))
}

fn with_sampled(flags: TraceFlags, sampled: bool) -> TraceFlags {
    let bits = if sampled {
        flags.bits() | TraceFlags::SAMPLED.bits()
    } else {
        flags.bits() & !TraceFlags::SAMPLED.bits()
    };
    TraceFlags::from_bits(bits)
}

/// Makes `span` continue `context`'s trace in OpenTelemetry and returns the context with the
/// exported span's ids. Unchanged when no OpenTelemetry layer records the span.
pub(crate) fn bridge(span: &Span, mut context: TraceContext) -> TraceContext {
    if span.is_disabled() {
        // No subscriber wants the span: nothing to export.
        return context;
    }
    if let Some(parent) = context.parent_id {
        // opentelemetry 0.33 still checks keys by the older `tenant@system` rule: a state it
        // refuses is exported without `tracestate` (downstream calls still carry it whole).
        let state = OtelTraceState::from_str(&context.state.to_string()).unwrap_or_default();
        let remote = SpanContext::new(
            OtelTraceId::from_bytes(context.trace_id.to_bytes()),
            OtelSpanId::from_bytes(parent.to_bytes()),
            OtelTraceFlags::new(context.flags.bits() & TraceFlags::SAMPLED.bits()),
            true,
            state,
        );
        let parent = opentelemetry::Context::new().with_remote_span_context(remote);
        if span.set_parent(parent).is_err() {
            return context;
        }
    }
    if let Some((trace_id, span_id, sampled)) = exported(span) {
        context.trace_id = trace_id;
        context.span_id = span_id;
        context.flags = with_sampled(context.flags, sampled);
        context.exported = true;
    }
    context
}

/// The context of an outgoing call made in `span` (a client span of yours): its exported ids,
/// with the current request's flags and `tracestate`.
pub(crate) fn client_context(span: &Span) -> Option<TraceContext> {
    let (trace_id, span_id, sampled) = exported(span)?;
    let current = TraceContext::current();
    Some(TraceContext {
        trace_id,
        span_id,
        parent_id: current.as_ref().map(|c| c.span_id),
        flags: with_sampled(
            current.as_ref().map_or(TraceFlags::RANDOM, |c| c.flags),
            sampled,
        ),
        state: current.map(|c| c.state).unwrap_or_default(),
        exported: true,
    })
}
