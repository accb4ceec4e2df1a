//! Structured logs through tracing-subscriber, written by a non-blocking writer.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the log writer.
///
/// JSON when asked, or when stdout is not a terminal; pretty otherwise. `RUST_LOG` overrides
/// the [`DEFAULT_FILTER`]; an invalid `RUST_LOG` is reported and the default used.
pub fn init(format: Option<LogFormat>) -> Result<WorkerGuard, String> {
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
    Ok(guard)
}
