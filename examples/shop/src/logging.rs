//! Structured logs through tracing-subscriber, written by a non-blocking writer.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// What [`init`] set up; dropping it flushes the logs and the spans not exported yet. Drop it
/// outside the async runtime (the OTLP exporter's client blocks).
#[derive(Debug)]
pub struct Telemetry {
    _logs: WorkerGuard,
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("shop: exporting the last spans failed: {error}");
        }
    }
}

/// The OTLP endpoint: `flag`, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else none.
pub fn otlp_endpoint(flag: Option<&str>) -> Option<String> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|url| !url.trim().is_empty())
}

/// A tracer provider exporting by OTLP over HTTP/protobuf to `endpoint` (`/v1/traces` is
/// appended), in batches. Build it outside the async runtime.
pub fn tracer_provider(endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("shop")
                .build(),
        )
        .build())
}

/// Installs the global subscriber: logs, the query layer's events, and — with an OTLP endpoint —
/// the request spans exported through OpenTelemetry. Keep the [`Telemetry`] alive.
///
/// JSON when asked, or when stdout is not a terminal; pretty otherwise. `RUST_LOG` overrides
/// the [`DEFAULT_FILTER`]; an invalid `RUST_LOG` is reported and the default used.
pub fn init(format: Option<LogFormat>, otlp_endpoint: Option<&str>) -> Result<Telemetry, String> {
    let traces = otlp_endpoint.map(tracer_provider).transpose()?;
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("shop"))
            .with_filter(LevelFilter::INFO)
    });
    let format = format.unwrap_or(if std::io::stdout().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let (filter, filter_error) = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(error) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!("ignoring invalid RUST_LOG {directives:?}: {error}")),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    };
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    // The log filter applies to the log layer only: sqlx's DEBUG query events still reach the
    // query layer, which has its own filter.
    let registry = tracing_subscriber::registry()
        .with(vitals_queries::query_events())
        .with(otel)
        .with(vitals_trace_context::logs::TraceIdsLayer);
    let installed = match format {
        // One JSON object per line, with the request's trace_id and span_id on every event
        // inside a request.
        LogFormat::Json => registry
            .with(
                fmt.event_format(vitals_trace_context::logs::JsonFormat)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt.pretty().with_filter(filter)).try_init(),
    };
    installed.map_err(|e| format!("cannot install the log subscriber: {e}"))?;
    if let Some(message) = filter_error {
        tracing::warn!("{message}");
    }
    if let Some(endpoint) = otlp_endpoint {
        tracing::info!(endpoint, "exporting request spans by OTLP");
    }
    Ok(Telemetry {
        _logs: guard,
        traces,
    })
}
