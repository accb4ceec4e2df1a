//! Log correlation (feature `logs`): every event inside a request carries its `trace_id` and
//! `span_id`, as top-level fields of a JSON log line.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//! use vitals_trace_context::logs::{JsonFormat, SkipSpanFields, TraceIdsLayer};
//!
//! tracing_subscriber::registry()
//!     .with(TraceIdsLayer)
//!     .with(
//!         tracing_subscriber::fmt::layer()
//!             .event_format(JsonFormat)
//!             .fmt_fields(SkipSpanFields), // JSON lines never print span fields
//!     )
//!     .init();
//! ```
//!
//! A line (keys sorted): `{"level":"INFO","message":"payment approved","product_id":3,
//! "request_id":"…","span":"request","span_id":"00f0…","target":"shop::routes",
//! "timestamp":"…","trace_id":"4bf9…"}`. An event field named like one of these keys is written
//! as `field.<name>`, so it never replaces them.
//!
//! The ids are found whatever the log filter lets through: a request's ids are current on the
//! thread while its work runs (the same scope [`inject`](crate::inject) reads), so a
//! `RUST_LOG=warn` that hides the INFO request span from the log layer still puts its ids on a
//! WARN line, and work run in [`TraceContext::scope`](crate::TraceContext::scope) is labelled
//! too. The ids are formatted when a line is written, not for every request. Spans of yours
//! with `trace_id`/`span_id` fields are remembered by [`TraceIdsLayer`] (unfiltered); one
//! entered inside a request labels the lines within it.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::context::{CurrentScope, with_current};

/// The ids a span carries, kept in its extensions by [`TraceIdsLayer`].
#[derive(Clone, Debug, Default)]
#[allow(clippy::struct_field_names)] // Named after the span fields they hold.
struct TraceIds {
    trace_id: Option<String>,
    span_id: Option<String>,
    request_id: Option<String>,
}

impl TraceIds {
    /// The ids of the request (or scoped work) current on this thread, formatted for one line.
    fn of_scope(current: &CurrentScope) -> Arc<Self> {
        Arc::new(Self {
            trace_id: Some(const_hex::encode(current.context.trace_id.to_bytes())),
            span_id: Some(const_hex::encode(current.context.span_id.to_bytes())),
            request_id: current.request_id.as_ref().map(|id| id.as_str().to_owned()),
        })
    }
}

thread_local! {
    /// The spans with ids entered on this thread, innermost last, with their ids.
    static ENTERED: RefCell<Vec<(Id, Arc<TraceIds>)>> = const { RefCell::new(Vec::new()) };
}

/// Whether any span with ids (other than a request span, whose ids are current anyway) was
/// created in this process: until one is, entering and leaving spans costs this layer nothing.
static SPANS_WITH_IDS: AtomicBool = AtomicBool::new(false);

/// Whether `metadata` is the request span of the trace-context part, whose ids
/// [`JsonFormat`] takes from the request's scope rather than from the span.
fn is_request_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() == vitals_core::identity::REQUEST_SPAN_TARGET
}

/// Remembers the `trace_id` and `span_id` fields of spans of yours that have them, for
/// [`JsonFormat`] (the request span of [`TraceContextLayer`](crate::TraceContextLayer) needs
/// no copy: its ids are current while the request's work runs). Register it without a filter.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceIdsLayer;

#[derive(Default)]
#[allow(clippy::struct_field_names)] // Named after the span fields they hold.
struct IdVisitor {
    trace_id: Option<String>,
    span_id: Option<String>,
    request_id: Option<String>,
}

impl Visit for IdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "trace_id" => self.trace_id = Some(value.to_owned()),
            "span_id" => self.span_id = Some(value.to_owned()),
            "request_id" => self.request_id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "trace_id" => self.trace_id = Some(format!("{value:?}")),
            "span_id" => self.span_id = Some(format!("{value:?}")),
            "request_id" => self.request_id = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for TraceIdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// The request span records its ids once known (after the OpenTelemetry bridge chose them).
    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        let mut ids = IdVisitor::default();
        values.record(&mut ids);
        if ids.trace_id.is_none() && ids.span_id.is_none() && ids.request_id.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        if is_request_span(span.metadata()) {
            return;
        }
        SPANS_WITH_IDS.store(true, Ordering::Relaxed);
        let mut extensions = span.extensions_mut();
        let mut known = extensions
            .remove::<Arc<TraceIds>>()
            .map(|ids| (*ids).clone())
            .unwrap_or_default();
        known.trace_id = ids.trace_id.or(known.trace_id);
        known.span_id = ids.span_id.or(known.span_id);
        known.request_id = ids.request_id.or(known.request_id);
        extensions.insert(Arc::new(known));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if !SPANS_WITH_IDS.load(Ordering::Relaxed) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        // Shared, not copied: this runs on every poll of the request.
        if let Some(ids) = span.extensions().get::<Arc<TraceIds>>() {
            let ids = Arc::clone(ids);
            ENTERED.with(|entered| entered.borrow_mut().push((id.clone(), ids)));
        }
    }

    fn on_exit(&self, id: &Id, _: Context<'_, S>) {
        if !SPANS_WITH_IDS.load(Ordering::Relaxed) {
            return;
        }
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|(entered, _)| entered == id) {
                entered.remove(at);
            }
        });
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attributes.metadata();
        if metadata.fields().field("trace_id").is_none() || is_request_span(metadata) {
            return;
        }
        SPANS_WITH_IDS.store(true, Ordering::Relaxed);
        let mut ids = IdVisitor::default();
        attributes.record(&mut ids);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Arc::new(TraceIds {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                request_id: ids.request_id,
            }));
        }
    }
}

/// A span-fields formatter that writes nothing, for the fmt layer under [`JsonFormat`]:
/// `fmt::layer().event_format(JsonFormat).fmt_fields(SkipSpanFields)`.
///
/// The fmt layer formats every span's fields into a string when the span is created, and again
/// on each `Span::record`, for formats that print them. [`JsonFormat`] takes the ids from
/// [`TraceIdsLayer`] and never prints span fields, so that work — microseconds per request for
/// a request span with a dozen fields — is skipped.
#[derive(Clone, Copy, Debug, Default)]
pub struct SkipSpanFields;

impl<'writer> tracing_subscriber::fmt::FormatFields<'writer> for SkipSpanFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _: Writer<'writer>,
        _: R,
    ) -> fmt::Result {
        Ok(())
    }

    fn add_fields(
        &self,
        _: &mut tracing_subscriber::fmt::FormattedFields<Self>,
        _: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        Ok(())
    }
}

/// One JSON object per event: timestamp, level, target, the current span's name, `trace_id`
/// and `span_id` of the nearest span that has them, then the event's fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFormat;

/// The keys this format writes itself; an event field with one of these names is written as
/// `field.<name>`.
const RESERVED: [&str; 7] = [
    "timestamp",
    "level",
    "target",
    "span",
    "trace_id",
    "span_id",
    "request_id",
];

struct FieldsVisitor<'a>(&'a mut Map<String, Value>);

impl FieldsVisitor<'_> {
    fn insert(&mut self, field: &Field, value: Value) {
        let name = field.name();
        let key = if RESERVED.contains(&name) {
            format!("field.{name}")
        } else {
            name.to_owned()
        };
        self.0.insert(key, value);
    }
}

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as text rather than lost as null.
        let value = if value.is_finite() {
            Value::from(value)
        } else {
            Value::from(value.to_string())
        };
        self.insert(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let span = ctx.lookup_current().map(|span| span.name());
        let line = line(event, span, || {
            ctx.event_scope()?
                .find_map(|span| span.extensions().get::<Arc<TraceIds>>().cloned())
        });
        writeln!(writer, "{line}")
    }
}

/// The line [`JsonFormat`] writes for `event`, newline included, for a layer that writes its
/// own lines: `ctx` is that layer's context, where the spans of [`TraceIdsLayer`] are found
/// (install [`TraceIdsLayer`] too), and `shown` says which spans its log filter shows — the
/// line's `span` is the innermost of those, as the fmt layer behind that filter would name it.
pub fn json_line<S>(
    event: &Event<'_>,
    ctx: &Context<'_, S>,
    shown: impl Fn(&tracing::Metadata<'_>) -> bool,
) -> String
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let span = ctx
        .lookup_current()
        .and_then(|current| current.scope().find(|span| shown(span.metadata())))
        .map(|span| span.name());
    let mut line = line(event, span, || {
        ctx.event_scope(event)?
            .find_map(|span| span.extensions().get::<Arc<TraceIds>>().cloned())
    })
    .to_string();
    line.push('\n');
    line
}

/// One event as a JSON object: `span` is the current span's name; `scope_ids` finds the ids of
/// the event's spans when neither a span with ids nor a request is current on this thread.
fn line(
    event: &Event<'_>,
    span: Option<&str>,
    scope_ids: impl FnOnce() -> Option<Arc<TraceIds>>,
) -> Value {
    let mut line = Map::new();
    let mut timestamp = String::new();
    // Writing to a `String` does not fail.
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    line.insert("timestamp".to_owned(), Value::from(timestamp));
    let metadata = event.metadata();
    line.insert("level".to_owned(), Value::from(metadata.level().as_str()));
    line.insert("target".to_owned(), Value::from(metadata.target()));
    if let Some(span) = span {
        line.insert("span".to_owned(), Value::from(span));
    }
    // The innermost span with ids entered on this thread, whether or not the log filter lets
    // the log layer see it; else the request (or scoped work) running on it; else the event's
    // own scope.
    let ids = ENTERED
        .with(|entered| entered.borrow().last().map(|(_, ids)| ids.clone()))
        .or_else(|| with_current(|current| current.map(TraceIds::of_scope)))
        .or_else(scope_ids);
    if let Some(ids) = ids {
        for (key, value) in [
            ("trace_id", &ids.trace_id),
            ("span_id", &ids.span_id),
            ("request_id", &ids.request_id),
        ] {
            if let Some(value) = value {
                line.insert(key.to_owned(), Value::from(value.as_str()));
            }
        }
    }
    event.record(&mut FieldsVisitor(&mut line));
    Value::Object(line)
}
