//! One call that sets up what the Vitals layers report into (feature `telemetry`):
//!
//! - logs through `tracing-subscriber`, as JSON lines or pretty text, written by a non-blocking
//!   writer, with the request's `trace_id`/`span_id` on every event inside a request;
//! - an env filter (`RUST_LOG`, default `info`) for the logs only — sqlx's DEBUG query events
//!   still reach the query layer, which has its own filter;
//! - with feature `otlp`, request spans exported by OTLP (HTTP/protobuf, batched) when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` or [`TelemetryBuilder::with_otlp_endpoint`] names a collector;
//! - a Prometheus recorder for every layer's `metrics` output, with histogram buckets for the
//!   request duration and queries per request.
//!
//! ```no_run
//! # fn main() -> Result<(), vitals::telemetry::TelemetryError> {
//! let telemetry = vitals::telemetry::builder()
//!     .with_service_name("shop")
//!     .with_log_format(vitals::telemetry::LogFormat::Json)
//!     .install()?;
//! // … serve; `/metrics` renders `telemetry.prometheus()`.
//! drop(telemetry); // flushes the logs and exports the last spans
//! # Ok(()) }
//! ```
//!
//! Everything installed is process-wide; installing a second time is an error
//! ([`TelemetryError::AlreadyInstalled`]), as is installing over another global subscriber or
//! recorder.

mod json;
mod logs;
#[cfg(feature = "otlp")]
mod otlp;
mod prometheus;

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use json::JsonLogLayer;
pub use metrics_exporter_prometheus::PrometheusHandle;

/// The log filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with `trace_id`/`span_id` as top-level keys.
    Json,
    /// Multi-line human-readable text (spans and their fields, the request span's `request_id`
    /// included).
    Pretty,
}

/// Sets up logs, traces and metrics; see the [module documentation](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct TelemetryBuilder {
    service_name: String,
    log_format: Option<LogFormat>,
    logs: bool,
    filter: String,
    otlp_endpoint: Option<String>,
    otlp_from_env: bool,
    prometheus: bool,
    #[cfg(feature = "queries")]
    sql_dialect: vitals_queries::fingerprint::SqlDialect,
}

/// OpenTelemetry's convention for a service that did not name itself:
/// `unknown_service:<executable name>`.
fn default_service_name() -> String {
    let executable = std::env::current_exe().ok().and_then(|path| {
        path.file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned)
    });
    match executable {
        Some(name) if !name.is_empty() => format!("unknown_service:{name}"),
        _ => "unknown_service".to_owned(),
    }
}

/// [`builder`] with its defaults, installed.
pub fn init() -> Result<Telemetry, TelemetryError> {
    builder().install()
}

/// Logs (JSON when stdout is not a terminal, pretty otherwise) at `RUST_LOG` or `info`, OTLP
/// from the environment, and a Prometheus recorder.
pub fn builder() -> TelemetryBuilder {
    TelemetryBuilder {
        service_name: default_service_name(),
        log_format: None,
        logs: true,
        filter: DEFAULT_FILTER.to_owned(),
        otlp_endpoint: None,
        otlp_from_env: true,
        prometheus: true,
        #[cfg(feature = "queries")]
        sql_dialect: vitals_queries::fingerprint::SqlDialect::Standard,
    }
}

impl TelemetryBuilder {
    /// The `service.name` of exported spans (`OTEL_SERVICE_NAME` wins when set; default
    /// `unknown_service:<executable>`, so name it: `.with_service_name(env!("CARGO_PKG_NAME"))`).
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// The log format (default: JSON when stdout is not a terminal, pretty when it is).
    pub fn with_log_format(mut self, format: LogFormat) -> Self {
        self.log_format = Some(format);
        self
    }

    /// The log filter when `RUST_LOG` is unset (default [`DEFAULT_FILTER`]); an invalid
    /// `RUST_LOG` is reported and this used instead.
    pub fn with_default_filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = directives.into();
        self
    }

    /// No log output. The subscriber is still installed, for what the layers need from it:
    /// sqlx's query events for the query layer, and span export when OTLP is on.
    pub fn without_logs(mut self) -> Self {
        self.logs = false;
        self
    }

    /// Export request spans to this OTLP/HTTP collector (`http://localhost:4318`;
    /// `/v1/traces` is appended), whatever the environment says. Needs feature `otlp`.
    pub fn with_otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// Ignore `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn without_otlp_from_env(mut self) -> Self {
        self.otlp_from_env = false;
        self
    }

    /// The SQL dialect of the statements sqlx reports (its events do not name the database),
    /// for fingerprints: `Sqlite` or `MySql` there, or their double-quoted strings stay in
    /// fingerprints (default `Standard`: PostgreSQL).
    #[cfg(feature = "queries")]
    pub fn with_sql_dialect(mut self, dialect: vitals_queries::fingerprint::SqlDialect) -> Self {
        self.sql_dialect = dialect;
        self
    }

    /// No Prometheus recorder (an application that installs its own `metrics` recorder).
    pub fn without_prometheus(mut self) -> Self {
        self.prometheus = false;
        self
    }

    /// The OTLP endpoint in force — the builder's, else the environment's, if not blank — and
    /// whether it came from the environment.
    fn endpoint(&self) -> Option<(String, bool)> {
        let given = self.otlp_endpoint.clone().map(|url| (url, false));
        let from_env = || {
            self.otlp_from_env
                .then(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
                .flatten()
                .map(|url| (url, true))
        };
        given
            .or_else(from_env)
            .map(|(url, env)| (url.trim().to_owned(), env))
            .filter(|(url, _)| !url.is_empty())
    }

    /// Installs everything. Keep the returned [`Telemetry`] alive; dropping it flushes.
    pub fn install(self) -> Result<Telemetry, TelemetryError> {
        static INSTALLED: AtomicBool = AtomicBool::new(false);
        if INSTALLED.swap(true, Ordering::AcqRel) {
            return Err(TelemetryError::AlreadyInstalled);
        }
        let mut nothing_installed = true;
        let installed = self.install_once(&mut nothing_installed);
        if installed.is_err() && nothing_installed {
            // Nothing of ours is in place: a corrected second call may succeed.
            INSTALLED.store(false, Ordering::Release);
        }
        installed
    }

    fn install_once(self, nothing_installed: &mut bool) -> Result<Telemetry, TelemetryError> {
        let endpoint = self.endpoint();
        #[cfg(feature = "otlp")]
        let traces = endpoint
            .as_ref()
            .map(|(endpoint, _)| otlp::tracer_provider(endpoint, &self.service_name))
            .transpose()?;
        // The request spans are built and exported by the trace-context part itself.
        #[cfg(feature = "otlp")]
        if let Some(provider) = &traces {
            use opentelemetry::trace::TracerProvider as _;
            vitals_trace_context::export_request_spans(opentelemetry::global::BoxedTracer::new(
                Box::new(provider.tracer("vitals")),
            ));
        }
        // Without the feature: an endpoint the code asked for is an error; one the platform put
        // in the environment (collectors inject it everywhere) is a warning, once logs work.
        #[cfg(not(feature = "otlp"))]
        let _ = &self.service_name;
        #[cfg(not(feature = "otlp"))]
        let unexported = match &endpoint {
            Some((endpoint, false)) => {
                return Err(TelemetryError::Otlp(format!(
                    "an OTLP endpoint is set ({endpoint}) but vitals was built without the `otlp` feature"
                )));
            }
            Some((endpoint, true)) => Some(endpoint.clone()),
            None => None,
        };
        // Everything that can be refused before anything is installed.
        let filter = logs::filter(&self.filter)?;
        // The recorder first: if another one is installed, nothing of ours is in place yet.
        // After it, only the subscriber can still fail (another one is installed); then the
        // recorder stays, and a second call says `AlreadyInstalled`.
        let prometheus = if self.prometheus {
            Some(prometheus::install(prometheus::recorder()?)?)
        } else {
            None
        };
        *nothing_installed = prometheus.is_none();
        let format = self
            .log_format
            .unwrap_or(if std::io::stdout().is_terminal() {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            });
        let logs = logs::install(
            self.logs.then_some(format),
            filter,
            #[cfg(feature = "queries")]
            self.sql_dialect,
            #[cfg(feature = "otlp")]
            traces.as_ref(),
        )?;
        #[cfg(feature = "otlp")]
        if let Some((endpoint, _)) = &endpoint {
            tracing::info!(endpoint, "exporting request spans by OTLP");
        }
        #[cfg(not(feature = "otlp"))]
        if let Some(endpoint) = unexported {
            tracing::warn!(
                endpoint,
                "OTEL_EXPORTER_OTLP_ENDPOINT is set, but vitals was built without the `otlp` \
                 feature: request spans are not exported"
            );
        }
        Ok(Telemetry {
            prometheus,
            logs,
            #[cfg(feature = "otlp")]
            traces,
        })
    }
}

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The Prometheus recorder installed by [`TelemetryBuilder::install`] or
/// [`install_prometheus`], if any — for a `/metrics` route built far from `main`.
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS.get().cloned()
}

/// Only the Prometheus recorder, as [`TelemetryBuilder::install`] sets it up: for tests and
/// for applications with a log setup of their own. Fails if a recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, TelemetryError> {
    prometheus::install(prometheus::recorder()?)
}

/// What [`TelemetryBuilder::install`] set up. Dropping it flushes the log writer and exports
/// the spans not sent yet (on a thread of its own, so it may be dropped anywhere).
#[must_use = "dropping the guard stops the log writer and the span export"]
pub struct Telemetry {
    prometheus: Option<PrometheusHandle>,
    logs: Option<tracing_appender::non_blocking::WorkerGuard>,
    #[cfg(feature = "otlp")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// The Prometheus recorder's handle: `render()` gives the text for `GET /metrics`.
    pub fn prometheus(&self) -> Option<&PrometheusHandle> {
        self.prometheus.as_ref()
    }

    /// Whether request spans are exported by OTLP.
    pub fn exports_traces(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.traces.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("prometheus", &self.prometheus.is_some())
            .field("logs", &self.logs.is_some())
            .field("traces", &self.exports_traces())
            .finish()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.traces.take() {
            otlp::shutdown(provider);
        }
        // The log guard drops after: the last spans' export may still log.
    }
}

/// Why [`TelemetryBuilder::install`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TelemetryError {
    /// Telemetry was installed before in this process.
    AlreadyInstalled,
    /// Another global `tracing` subscriber is installed.
    Subscriber(String),
    /// The Prometheus recorder could not be built or installed (another recorder is).
    Recorder(String),
    /// The OTLP exporter could not be built.
    Otlp(String),
}

impl fmt::Display for TelemetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyInstalled => f.write_str("vitals telemetry is already installed"),
            Self::Subscriber(e) => write!(f, "cannot install the log subscriber: {e}"),
            Self::Recorder(e) => write!(f, "cannot install the Prometheus recorder: {e}"),
            Self::Otlp(e) => write!(f, "cannot set up OTLP export: {e}"),
        }
    }
}

impl std::error::Error for TelemetryError {}
