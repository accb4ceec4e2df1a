//! One axum app in three variants — bare, behind `VitalsLayer`, behind the peer stack — for
//! the load test (`src/bin/server.rs`), the instruction counts (`src/bin/instructions.rs`) and
//! the in-process benchmark (`benches/in_process.rs`).
//!
//! The app has two routes: `GET /json/{id}` answers a small JSON object and does no I/O;
//! `GET /query/{id}` runs one SQLite query (an in-memory database through sqlx).

use std::str::FromStr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;

/// The body of `GET /json/{id}`.
pub const PRODUCT_JSON: &str = r#"{"id":42,"name":"Espresso cup","price_cents":1250}"#;

/// Which middleware the app runs behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// axum alone.
    Bare,
    /// `VitalsLayer::new()`, with `vitals::telemetry` (JSON logs at INFO, Prometheus).
    Vitals,
    /// As `Vitals`, with request spans exported by OTLP (to a receiver that discards them).
    VitalsOtlp,
    /// axum with a layer that does nothing (`tower`'s `Identity`) added by `Router::layer`: the
    /// floor any middleware added that way pays (axum boxes each layered route's service,
    /// future and body).
    BareLayer,
    /// `VitalsLayer` with every part switched off, and no telemetry: what the fused service
    /// costs when it does nothing (the figure "parts off cost a branch" is checked against).
    VitalsOff,
    /// tower-http TraceLayer + SetRequestId/PropagateRequestId, axum-prometheus,
    /// axum-tracing-opentelemetry, tower ConcurrencyLimit + LoadShed behind HandleErrorLayer,
    /// tracing-subscriber JSON logs at INFO with the OpenTelemetry layer.
    Peer,
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "bare" => Ok(Self::Bare),
            "vitals" => Ok(Self::Vitals),
            "vitals-otlp" => Ok(Self::VitalsOtlp),
            "vitals-off" => Ok(Self::VitalsOff),
            "bare-layer" => Ok(Self::BareLayer),
            "peer" => Ok(Self::Peer),
            other => Err(format!(
                "unknown variant {other:?} (bare, bare-layer, vitals, vitals-otlp, vitals-off, peer)"
            )),
        }
    }
}

/// The one-thread runtime the in-process counters (`instructions`, `layer_instructions`) send
/// their requests on.
pub fn single_thread_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
}

/// The global concurrency limit of the Vitals and peer variants.
pub const LIMIT: usize = 1024;

/// A SQLite database of 100 items in a fresh file under the temporary directory, in WAL mode
/// (readers never lock each other out; a shared-cache in-memory database answers concurrent
/// readers with SQLITE_LOCKED).
pub async fn database() -> Result<(SqlitePool, TempDatabase), sqlx::Error> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let file = std::env::temp_dir().join(format!(
        "vitals-load-{}-{}.db",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let file = TempDatabase(file);
    let options = SqliteConnectOptions::new()
        .filename(&file.0)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(4)
        .connect_with(options)
        .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    for id in 1..=100 {
        sqlx::query("INSERT OR REPLACE INTO items (id, name) VALUES (?, ?)")
            .bind(id)
            .bind(format!("item {id}"))
            .execute(&pool)
            .await?;
    }
    Ok((pool, file))
}

/// The database file (and its WAL files), removed when dropped.
#[derive(Debug)]
pub struct TempDatabase(std::path::PathBuf);

impl Drop for TempDatabase {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The app's routes, without middleware.
pub fn routes(pool: SqlitePool) -> Router {
    Router::new()
        .route(
            "/json/{id}",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    PRODUCT_JSON,
                )
            }),
        )
        .route("/query/{id}", get(item))
        .with_state(pool)
}

async fn item(
    State(pool): State<SqlitePool>,
    Path(id): Path<i64>,
) -> Result<axum::Json<serde_json::Value>, StatusCode> {
    let name: Option<(String,)> = sqlx::query_as("SELECT name FROM items WHERE id = ?")
        .bind(id)
        .fetch_optional(&pool)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let (name,) = name.ok_or(StatusCode::NOT_FOUND)?;
    Ok(axum::Json(serde_json::json!({ "id": id, "name": name })))
}

/// `VitalsLayer` with every part switched off.
fn all_parts_off() -> vitals::VitalsLayer {
    let built = vitals::VitalsLayer::builder()
        .without_trace_context()
        .without_timing()
        .without_latency()
        .without_concurrency_limit()
        .without_cache_headers()
        .without_queries()
        .build();
    match built {
        Ok(layer) => layer,
        Err(error) => unreachable!("no route settings to refuse: {error}"),
    }
}

/// The app behind `variant`'s middleware. The process-wide parts (subscriber, recorder) are
/// installed by [`install_telemetry`].
pub fn app(variant: Variant, pool: SqlitePool) -> Router {
    match variant {
        Variant::Bare => routes(pool),
        Variant::Vitals | Variant::VitalsOtlp => routes(pool).layer(vitals::VitalsLayer::new()),
        Variant::VitalsOff => routes(pool).layer(all_parts_off()),
        Variant::BareLayer => routes(pool).layer(tower::layer::util::Identity::new()),
        Variant::Peer => peer::app(pool),
    }
}

/// What keeps a variant's telemetry running; dropping it flushes.
pub enum TelemetryGuard {
    /// Nothing installed.
    None,
    /// `vitals::telemetry`.
    Vitals(vitals::telemetry::Telemetry),
    /// The peer stack's tracer provider.
    Peer(opentelemetry_sdk::trace::SdkTracerProvider),
}

/// Installs the process-wide telemetry `variant` needs: none for bare; `vitals::telemetry` with
/// JSON logs (and OTLP to `otlp` for `VitalsOtlp`); the peer stack's JSON logs, tracer and
/// Prometheus recorder (axum-prometheus installs its own when its layer is built).
pub fn install_telemetry(variant: Variant, otlp: Option<&str>) -> Result<TelemetryGuard, String> {
    match variant {
        Variant::Bare | Variant::BareLayer | Variant::VitalsOff => Ok(TelemetryGuard::None),
        Variant::Vitals | Variant::VitalsOtlp => {
            let mut builder = vitals::telemetry::builder()
                .with_service_name("vitals-load")
                .with_log_format(vitals::telemetry::LogFormat::Json)
                .without_otlp_from_env();
            if variant == Variant::VitalsOtlp {
                let endpoint = otlp.ok_or("vitals-otlp needs --otlp URL")?;
                builder = builder.with_otlp_endpoint(endpoint);
            }
            builder
                .install()
                .map(TelemetryGuard::Vitals)
                .map_err(|e| e.to_string())
        }
        Variant::Peer => peer::install_telemetry(otlp).map(TelemetryGuard::Peer),
    }
}

/// The peer stack, as its crates' documentation assembles it.
pub mod peer {
    use super::*;

    use axum::error_handling::HandleErrorLayer;
    use opentelemetry::trace::TracerProvider as _;
    use tower::ServiceBuilder;
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    /// The peer variant's app. axum-prometheus installs its global recorder on first use.
    pub fn app(pool: SqlitePool) -> Router {
        let (prometheus, handle) = axum_prometheus::PrometheusMetricLayer::pair();
        routes(pool)
            .route(
                "/metrics",
                get(move || {
                    let handle = handle.clone();
                    async move { handle.render() }
                }),
            )
            .layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                        StatusCode::SERVICE_UNAVAILABLE
                    }))
                    .layer(tower::load_shed::LoadShedLayer::new())
                    .layer(tower::limit::ConcurrencyLimitLayer::new(LIMIT)),
            )
            .layer(prometheus)
            .layer(axum_tracing_opentelemetry::middleware::OtelInResponseLayer)
            .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
    }

    /// JSON logs at INFO and the OpenTelemetry layer (spans exported by OTLP to `otlp` when
    /// given, else created and dropped).
    pub fn install_telemetry(
        otlp: Option<&str>,
    ) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
        let mut provider = opentelemetry_sdk::trace::SdkTracerProvider::builder();
        if let Some(endpoint) = otlp {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()
                .map_err(|e| e.to_string())?;
            provider = provider.with_batch_exporter(exporter);
        }
        let provider = provider.build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        subscriber(&provider, std::io::stdout)
            .try_init()
            .map_err(|e| e.to_string())?;
        Ok(provider)
    }

    /// The peer's subscriber: JSON logs at INFO (the filter their docs give, letting
    /// axum-tracing-opentelemetry's TRACE spans through) and the OpenTelemetry layer.
    pub fn subscriber<W>(
        provider: &opentelemetry_sdk::trace::SdkTracerProvider,
        writer: W,
    ) -> impl tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                "info,otel::tracing=trace",
            ))
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("vitals-load")))
    }
}

/// What `vitals::telemetry` installs for JSON logs, for in-process use under `with_default`:
/// its one log layer (lines, query events, ids) at INFO, writing to `writer`.
pub fn vitals_subscriber<W>(
    writer: W,
) -> impl tracing::Subscriber + Send + Sync + for<'a> tracing_subscriber::registry::LookupSpan<'a>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry().with(vitals::telemetry::JsonLogLayer::new(
        writer,
        tracing_subscriber::EnvFilter::new(vitals::telemetry::DEFAULT_FILTER),
    ))
}

/// A server's time limit, so a forgotten server never runs for ever.
pub const MAX_RUN: Duration = Duration::from_secs(3600);
