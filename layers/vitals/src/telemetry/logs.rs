//! The log subscriber: request ids on every line, the query layer's events kept.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use vitals_trace_context::logs::TraceIdsLayer;

use super::{JsonLogLayer, LogFormat, TelemetryError};

/// Installs the global subscriber, with log output in `format` (none without one); the guard
/// keeps the non-blocking writer running.
pub(super) fn install(
    format: Option<LogFormat>,
    (filter, filter_error): (EnvFilter, Option<String>),
    #[cfg(feature = "queries")] sql_dialect: vitals_queries::fingerprint::SqlDialect,
    #[cfg(feature = "otlp")] traces: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Result<Option<WorkerGuard>, TelemetryError> {
    #[cfg(feature = "otlp")]
    let otel_on = traces.is_some();
    #[cfg(not(feature = "otlp"))]
    let traces = ();
    let Some(format) = format else {
        separate_layers(
            #[cfg(feature = "queries")]
            sql_dialect,
        )
        .with(span_export(traces))
        .with(request_events(traces))
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
        return Ok(None);
    };
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let installed = match format {
        // One layer for the lines, the query events and the ids (see `JsonLogLayer`).
        LogFormat::Json => {
            let json = JsonLogLayer::new(writer, filter);
            #[cfg(feature = "queries")]
            let json = json.with_sql_dialect(sql_dialect);
            #[cfg(feature = "otlp")]
            let json = if otel_on {
                json.with_span_export()
            } else {
                json
            };
            tracing_subscriber::registry()
                .with(span_export(traces))
                .with(json)
                .try_init()
        }
        // The filter is the log layer's alone: the query layer and the span export see what
        // their own filters let through.
        LogFormat::Pretty => separate_layers(
            #[cfg(feature = "queries")]
            sql_dialect,
        )
        .with(span_export(traces))
        .with(request_events(traces))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .pretty()
                .with_filter(filter),
        )
        .try_init(),
    };
    installed.map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    if let Some(message) = filter_error {
        tracing::warn!("{message}");
    }
    Ok(Some(guard))
}

/// `RUST_LOG`, else the default; an invalid `RUST_LOG` falls back to the default and is
/// reported once logging works. An invalid default is an error.
pub(super) fn filter(default: &str) -> Result<(EnvFilter, Option<String>), TelemetryError> {
    let fallback = || {
        EnvFilter::try_new(default).map_err(|e| {
            TelemetryError::Subscriber(format!("invalid default filter {default:?}: {e}"))
        })
    };
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => Ok((filter, None)),
            Err(error) => Ok((
                fallback()?,
                Some(format!("ignoring invalid RUST_LOG {directives:?}: {error}")),
            )),
        },
        _ => Ok((fallback()?, None)),
    }
}

/// The query layer (behind its own filter) and the ids layer, for subscribers whose log layer
/// (if any) is the fmt layer's.
fn separate_layers(
    #[cfg(feature = "queries")] sql_dialect: vitals_queries::fingerprint::SqlDialect,
) -> impl tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> {
    #[cfg(feature = "queries")]
    let queries = Some(
        vitals_queries::QueryEventLayer::new()
            .with_sql_dialect(sql_dialect)
            .with_filter(vitals_queries::QueryEventLayer::filter()),
    );
    #[cfg(not(feature = "queries"))]
    let queries: Option<tracing_subscriber::layer::Identity> = None;
    tracing_subscriber::registry()
        .with(queries)
        .with(TraceIdsLayer)
}

/// What the span export reads: the tracer provider, when spans are exported.
#[cfg(feature = "otlp")]
type Traces<'a> = Option<&'a opentelemetry_sdk::trace::SdkTracerProvider>;
#[cfg(not(feature = "otlp"))]
type Traces<'a> = ();

/// The OpenTelemetry layer for `traces`, behind its own INFO filter; none without export.
#[cfg(feature = "otlp")]
fn span_export<S>(traces: Traces<'_>) -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    traces.map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        // Without the attributes no backend reads (busy/idle time, source location, thread),
        // which cost a clock read on every enter and exit and a dozen attributes per span.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("vitals"))
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            // The request spans are exported by the trace-context part, not through this layer.
            .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
                *metadata.level() <= tracing::Level::INFO
                    && !(metadata.is_span()
                        && metadata.target() == vitals_core::identity::REQUEST_SPAN_TARGET)
            }))
    })
}

/// Events directly inside a request as its exported span's events, behind an INFO filter of
/// their own (for subscribers without `JsonLogLayer`, which does it itself).
#[cfg(feature = "otlp")]
fn request_events<S>(traces: Traces<'_>) -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    traces.map(|_| {
        vitals_trace_context::RequestSpanEvents
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    })
}

/// No span events without the `otlp` feature.
#[cfg(not(feature = "otlp"))]
fn request_events(_: Traces<'_>) -> Option<tracing_subscriber::layer::Identity> {
    None
}

/// No span export without the `otlp` feature.
#[cfg(not(feature = "otlp"))]
fn span_export(_: Traces<'_>) -> Option<tracing_subscriber::layer::Identity> {
    None
}
