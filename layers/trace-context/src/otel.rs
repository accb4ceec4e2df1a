//! The bridge to OpenTelemetry (feature `opentelemetry`): the request's server span — built here
//! when a tracer was given ([`export_request_spans`]), else the tracing span exported through
//! tracing-opentelemetry — continues the caller's trace (same trace id, the caller's span as
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

/// The tracer request spans are exported with directly, when one was given
/// ([`export_request_spans`]); else they are exported through tracing-opentelemetry.
static DIRECT: std::sync::OnceLock<opentelemetry::global::BoxedTracer> = std::sync::OnceLock::new();

/// Exports every request span with `tracer` directly, instead of through
/// tracing-opentelemetry: the span is built once with its attributes, no tracing field is
/// converted. Spans a handler creates with `tracing` still nest under it (its context is current
/// while the request's work runs). Keep the request span (target
/// `vitals_core::identity::REQUEST_SPAN_TARGET`) from the tracing-opentelemetry layer then, or
/// it is exported twice. Returns `false` if a tracer was given before (that one stays).
pub fn export_request_spans(tracer: opentelemetry::global::BoxedTracer) -> bool {
    DIRECT.set(tracer).is_ok()
}

/// Whether request spans are exported directly ([`export_request_spans`]).
pub(crate) fn exports_directly() -> bool {
    DIRECT.get().is_some()
}

/// The server span of a request, started with the tracer given to [`export_request_spans`]
/// under the caller's context in `context`; returns its OpenTelemetry context (none without a
/// tracer) and the request's context with its ids.
pub(crate) fn start_server_span(
    name: String,
    attributes: Vec<opentelemetry::KeyValue>,
    mut context: TraceContext,
) -> (Option<opentelemetry::Context>, TraceContext) {
    use opentelemetry::trace::{SpanKind, Tracer as _};
    let Some(tracer) = DIRECT.get() else {
        return (None, context);
    };
    let parent = match context.parent_id {
        Some(parent) => {
            let state = OtelTraceState::from_str(&context.state.to_string()).unwrap_or_default();
            opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
                OtelTraceId::from_bytes(context.trace_id.to_bytes()),
                OtelSpanId::from_bytes(parent.to_bytes()),
                OtelTraceFlags::new(context.flags.bits() & TraceFlags::SAMPLED.bits()),
                true,
                state,
            ))
        }
        None => opentelemetry::Context::new(),
    };
    let span = tracer.build_with_context(
        opentelemetry::trace::SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes),
        &parent,
    );
    let ids = opentelemetry::trace::Span::span_context(&span).clone();
    if ids.is_valid()
        && let (Some(trace_id), Some(span_id)) = (
            TraceId::from_bytes(ids.trace_id().to_bytes()),
            SpanId::from_bytes(ids.span_id().to_bytes()),
        )
    {
        context.trace_id = trace_id;
        context.span_id = span_id;
        context.flags = with_sampled(context.flags, ids.trace_flags().is_sampled());
        context.exported = true;
    }
    (Some(parent.with_span(span)), context)
}

/// Log events that happen directly inside a request — in no span of their own — become events
/// of its exported span, when it is exported directly ([`export_request_spans`]), as
/// tracing-opentelemetry makes them events of the spans it exports. Install it beside the log
/// layer with an INFO filter (`vitals::telemetry` does): events inside spans of yours go to
/// those spans already.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestSpanEvents;

impl<S> tracing_subscriber::Layer<S> for RequestSpanEvents
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        record_request_event(event, &ctx);
    }
}

/// What [`RequestSpanEvents`] does, for a layer of its own to call from its `on_event`.
pub fn record_request_event<S>(
    event: &tracing::Event<'_>,
    ctx: &tracing_subscriber::layer::Context<'_, S>,
) where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if !exports_directly() {
        return;
    }
    let innermost = match event.parent() {
        Some(parent) => ctx.span(parent),
        None if event.is_contextual() => ctx.lookup_current(),
        None => None,
    };
    if innermost
        .is_none_or(|span| span.metadata().target() != vitals_core::identity::REQUEST_SPAN_TARGET)
    {
        return;
    }
    // The request's exported span is current while its work runs (`TraceScope::in_scope`).
    let current = opentelemetry::Context::current();
    let span = current.span();
    if !span.is_recording() {
        return;
    }
    let metadata = event.metadata();
    let mut fields = EventFields {
        name: None,
        attributes: vec![
            opentelemetry::KeyValue::new("level", metadata.level().as_str()),
            opentelemetry::KeyValue::new("target", metadata.target().to_owned()),
        ],
    };
    event.record(&mut fields);
    let name = fields.name.map_or(
        std::borrow::Cow::Borrowed(metadata.name()),
        std::borrow::Cow::Owned,
    );
    span.add_event(name, fields.attributes);
}

/// An event's message (its name when exported) and other fields (its attributes).
struct EventFields {
    name: Option<String>,
    attributes: Vec<opentelemetry::KeyValue>,
}

impl tracing::field::Visit for EventFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.name = Some(value.to_owned());
        } else {
            self.attributes
                .push(opentelemetry::KeyValue::new(field.name(), value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.attributes
            .push(opentelemetry::KeyValue::new(field.name(), value));
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        match i64::try_from(value) {
            Ok(value) => self.record_i64(field, value),
            Err(_) => self.record_debug(field, &value),
        }
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.attributes
            .push(opentelemetry::KeyValue::new(field.name(), value));
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.attributes
            .push(opentelemetry::KeyValue::new(field.name(), value));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.name = Some(format!("{value:?}"));
        } else {
            self.attributes.push(opentelemetry::KeyValue::new(
                field.name(),
                format!("{value:?}"),
            ));
        }
    }
}
