//! Request spans exported by OTLP over HTTP/protobuf, in batches (feature `otlp`).

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::TelemetryError;

/// A batching tracer provider exporting to `endpoint` (`/v1/traces` appended).
///
/// The exporter's HTTP client blocks; building or shutting it down inside an async runtime
/// would panic, so both happen on a thread of their own when one is running.
pub(super) fn tracer_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| service_name.to_owned());
    off_runtime(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&url)
            .build()
            .map_err(|e| {
                TelemetryError::Otlp(format!("cannot build the exporter for {url}: {e}"))
            })?;
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service_name)
                    .build(),
            )
            .build())
    })
}

/// Exports the spans still queued and stops the exporter.
pub(super) fn shutdown(provider: SdkTracerProvider) {
    off_runtime(move || {
        if let Err(error) = provider.shutdown() {
            eprintln!("vitals: exporting the last spans failed: {error}");
        }
    });
}

/// Runs `work` here, or on a scoped thread when this thread is inside a tokio runtime.
fn off_runtime<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    if tokio_runtime_here() {
        std::thread::scope(|scope| match scope.spawn(work).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    } else {
        work()
    }
}

fn tokio_runtime_here() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}
