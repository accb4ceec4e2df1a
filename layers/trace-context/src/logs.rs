//! Log correlation (feature `logs`): every event inside a request carries its `trace_id` and
//! `span_id`, as top-level fields of a JSON log line.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//! use vitals_trace_context::logs::{JsonFormat, TraceIdsLayer};
//!
//! tracing_subscriber::registry()
//!     .with(TraceIdsLayer)
//!     .with(tracing_subscriber::fmt::layer().event_format(JsonFormat))
//!     .init();
//! ```
//!
//! A line: `{"timestamp":"…","level":"INFO","target":"shop::routes","span":"request",
//! "trace_id":"4bf9…","span_id":"00f0…","message":"payment approved","product_id":3}`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The ids a span carries, kept in its extensions by [`TraceIdsLayer`].
#[derive(Clone, Debug, Default)]
struct TraceIds {
    trace_id: Option<String>,
    span_id: Option<String>,
}

/// Remembers the `trace_id` and `span_id` fields of spans that have them (the request span of
/// [`TraceContextLayer`](crate::TraceContextLayer), or any of yours), for [`JsonFormat`].
/// Register it without a filter.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceIdsLayer;

#[derive(Default)]
struct IdVisitor {
    trace_id: Option<String>,
    span_id: Option<String>,
}

impl Visit for IdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "trace_id" => self.trace_id = Some(value.to_owned()),
            "span_id" => self.span_id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "trace_id" => self.trace_id = Some(format!("{value:?}")),
            "span_id" => self.span_id = Some(format!("{value:?}")),
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
        if ids.trace_id.is_none() && ids.span_id.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let mut known = extensions.remove::<TraceIds>().unwrap_or_default();
        known.trace_id = ids.trace_id.or(known.trace_id);
        known.span_id = ids.span_id.or(known.span_id);
        extensions.insert(known);
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let fields = attributes.metadata().fields();
        if fields.field("trace_id").is_none() {
            return;
        }
        let mut ids = IdVisitor::default();
        attributes.record(&mut ids);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(TraceIds {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
            });
        }
    }
}

/// One JSON object per event: timestamp, level, target, the current span's name, `trace_id`
/// and `span_id` of the nearest span that has them, then the event's fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFormat;

struct FieldsVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
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
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".to_owned(), Value::from(timestamp));
        let metadata = event.metadata();
        line.insert("level".to_owned(), Value::from(metadata.level().as_str()));
        line.insert("target".to_owned(), Value::from(metadata.target()));
        if let Some(scope) = ctx.event_scope() {
            let mut first = true;
            for span in scope {
                if first {
                    line.insert("span".to_owned(), Value::from(span.name()));
                    first = false;
                }
                if let Some(TraceIds {
                    trace_id: Some(trace_id),
                    span_id: Some(span_id),
                }) = span.extensions().get::<TraceIds>()
                {
                    line.insert("trace_id".to_owned(), Value::from(trace_id.clone()));
                    line.insert("span_id".to_owned(), Value::from(span_id.clone()));
                    break;
                }
            }
        }
        event.record(&mut FieldsVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}
