//! `JsonLogLayer`: what `vitals::telemetry` installs for JSON logs — the log lines, the query
//! events and the span ids — as one layer, with no per-layer filter in the way of each span.

use std::io::Write;

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use vitals_trace_context::logs::{TraceIdsLayer, json_line};

/// JSON log lines (the format of [`JsonFormat`](vitals_trace_context::logs::JsonFormat): ids of
/// the request on every line) for the events `filter` lets through, written to `writer`; the
/// query events fed to the request's ledger (with the `queries` feature); the ids of spans of
/// yours that carry them. One layer instead of the three the crates give (a fmt layer and the
/// query layer, each behind a filter of its own, and [`TraceIdsLayer`]): a per-layer filter
/// looks every span up on each enter, exit and record to know whether its layer sees it, which
/// a request span pays several times per request.
///
/// ```
/// use tracing_subscriber::EnvFilter;
/// use tracing_subscriber::layer::SubscriberExt;
/// use vitals::telemetry::JsonLogLayer;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(JsonLogLayer::new(std::io::stdout, EnvFilter::new("info")));
/// tracing::subscriber::with_default(subscriber, || tracing::info!(order = 7, "paid"));
/// ```
#[derive(Debug)]
pub struct JsonLogLayer<W> {
    writer: W,
    filter: EnvFilter,
    /// Whether the filter has span directives (`[checkout]=debug`): only then must it follow
    /// every span entered and left.
    follows_spans: bool,
    #[cfg(feature = "queries")]
    queries: Option<vitals_queries::QueryEventLayer>,
    /// Keep spans and events at INFO and above enabled whatever `filter` says, for a span
    /// exporter installed beside this layer.
    keep_info: bool,
}

impl<W> JsonLogLayer<W> {
    /// Lines for the events `filter` lets through, to `writer` (`std::io::stdout`, or
    /// `tracing_appender`'s non-blocking writer); the query events fed to the request's
    /// ledger, in standard SQL.
    pub fn new(writer: W, filter: EnvFilter) -> Self {
        let follows_spans = filter.to_string().contains('[');
        Self {
            writer,
            filter,
            follows_spans,
            #[cfg(feature = "queries")]
            queries: Some(vitals_queries::QueryEventLayer::new()),
            keep_info: false,
        }
    }

    /// The query events' SQL dialect, for statements whose source does not name its database
    /// (sqlx's).
    #[cfg(feature = "queries")]
    #[must_use]
    pub fn with_sql_dialect(mut self, dialect: vitals_queries::fingerprint::SqlDialect) -> Self {
        self.queries = Some(vitals_queries::QueryEventLayer::new().with_sql_dialect(dialect));
        self
    }

    /// Keeps spans and events at INFO and above enabled whatever the log filter says: install
    /// it so beside a span exporter (OpenTelemetry's layer) behind an INFO filter of its own,
    /// or a `RUST_LOG=warn` would switch the request spans off for the exporter too.
    #[must_use]
    pub fn with_span_export(mut self) -> Self {
        self.keep_info = true;
        self
    }

    /// Whether this layer has a use for `metadata` besides writing lines.
    fn wants(&self, metadata: &Metadata<'_>) -> bool {
        #[cfg(feature = "queries")]
        let queries = self.queries.is_some() && vitals_queries::QueryEventLayer::wants(metadata);
        #[cfg(not(feature = "queries"))]
        let queries = false;
        let fields = metadata.fields();
        queries
            || (metadata.is_span()
                && ["trace_id", "span_id", "request_id"]
                    .iter()
                    .any(|name| fields.field(name).is_some()))
            || (self.keep_info && *metadata.level() <= Level::INFO)
    }
}

impl<S, W> Layer<S> for JsonLogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Asked first, so a span directive of the filter is registered for its callsite.
        let lines = Layer::<S>::register_callsite(&self.filter, metadata);
        if lines.is_always() || self.wants(metadata) {
            Interest::always()
        } else {
            lines
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.wants(metadata) || self.filter.enabled(metadata, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        #[cfg(feature = "queries")]
        if let Some(queries) = &self.queries
            && vitals_queries::QueryEventLayer::wants(metadata)
        {
            queries.on_event(event, ctx.clone());
        }
        // Beside a span exporter: events directly inside a request become its span's events.
        #[cfg(feature = "otlp")]
        if self.keep_info && *metadata.level() <= Level::INFO {
            vitals_trace_context::record_request_event(event, &ctx);
        }
        if self.filter.enabled(metadata, ctx.clone()) {
            let line = json_line(event, &ctx, |span| self.filter.enabled(span, ctx.clone()));
            // A log line that cannot be written is dropped, as the fmt layer drops it.
            let _ = self
                .writer
                .make_writer_for(metadata)
                .write_all(line.as_bytes());
        }
    }

    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        TraceIdsLayer.on_new_span(attributes, id, ctx.clone());
        #[cfg(feature = "queries")]
        if let Some(queries) = &self.queries {
            queries.on_new_span(attributes, id, ctx.clone());
        }
        if self.follows_spans {
            self.filter.on_new_span(attributes, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        TraceIdsLayer.on_record(id, values, ctx.clone());
        #[cfg(feature = "queries")]
        if let Some(queries) = &self.queries {
            queries.on_record(id, values, ctx.clone());
        }
        if self.follows_spans {
            self.filter.on_record(id, values, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        TraceIdsLayer.on_enter(id, ctx.clone());
        if self.follows_spans {
            self.filter.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        TraceIdsLayer.on_exit(id, ctx.clone());
        if self.follows_spans {
            self.filter.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        #[cfg(feature = "queries")]
        if let Some(queries) = &self.queries {
            queries.on_close(id.clone(), ctx.clone());
        }
        if self.follows_spans {
            self.filter.on_close(id, ctx);
        }
    }
}
