//! An axum shop on a real database that shows common production problems and their fixes.
//!
//! `cargo run -p shop` starts it on an in-memory SQLite database, created and seeded at start;
//! `--database-url postgres://…` runs the same code on PostgreSQL. See [`routes`] for what
//! each route demonstrates.
//!
//! The library part lets tests and benchmarks start the shop in-process:
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shop = shop::Shop::start(shop::Config::with_defaults()).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! axum::serve(listener, shop.router()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod db;
pub mod error;
pub mod logging;
pub mod payment;
pub mod report;
pub mod routes;
pub mod telemetry;
pub mod w3c;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use vitals_cache_headers::{CacheHeadersLayer, CachePolicy};
use vitals_concurrency::ConcurrencyLimitLayer;
use vitals_core::route::RequestHead;
use vitals_latency::{LatencyLayer, LatencyRegistry};
use vitals_queries::QueryTrackingLayer;
use vitals_timing::RequestTimingLayer;
use vitals_trace_context::TraceContextLayer;

pub use config::{Config, LogFormat};
use db::Db;
use payment::{PaymentClient, PaymentStub};
use report::Workload;
use routes::AppState;

/// Request timing on every route: `Server-Timing: total;dur=…` on each response, a WARN event
/// for requests slower than 1 s (`/slow?ms=1500`), and one for handlers that block the executor
/// for 10 ms or more in a single poll (`/report/blocking`).
/// Every route without a policy of its own: API data that caches must revalidate before use
/// (`no-cache`; the computed ETag makes that a 304), errors never stored.
fn shop_cache() -> CacheHeadersLayer {
    CacheHeadersLayer::with_policy(CachePolicy::no_cache())
}

fn timing_layer() -> RequestTimingLayer {
    RequestTimingLayer::new()
}

/// A started shop: database open and seeded, payment service reachable.
#[derive(Debug)]
pub struct Shop {
    state: Arc<AppState>,
    /// The global limit, shared by every route (`--max-concurrency`).
    limit: ConcurrencyLimitLayer,
    /// Every route's latency, for `GET /_vitals/latency` (and `/metrics` through the recorder).
    latency: LatencyRegistry,
    /// What `GET /metrics` renders.
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    payment_stub: Option<PaymentStub>,
}

/// Why the shop could not start.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl Shop {
    /// Opens the database (creating and seeding it), calibrates the report's workload and
    /// starts the stub payment service unless `config.payment_url` names one.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let db = Db::connect(&config.database_url)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let workload = tokio::task::spawn_blocking(|| Workload::calibrate(report::TARGET))
            .await
            .map_err(|e| StartError(format!("workload calibration failed: {e}")))?;
        let (payment_url, payment_stub) = if let Some(url) = config.payment_url {
            (url, None)
        } else {
            let stub = PaymentStub::start(Duration::from_millis(config.payment_latency_ms))
                .await
                .map_err(|e| StartError(format!("cannot start the payment stub: {e}")))?;
            (stub.url(), Some(stub))
        };
        let payment = PaymentClient::new(
            &payment_url,
            Duration::from_millis(config.payment_timeout_ms),
        )
        .map_err(StartError)?;
        let state = Arc::new(AppState {
            db,
            workload,
            payment,
            w3c_test_endpoint: config.w3c_test_endpoint,
        });
        let limit = ConcurrencyLimitLayer::new(
            usize::try_from(config.max_concurrency).unwrap_or(usize::MAX),
        )
        .with_max_wait(Duration::from_millis(250))
        // Health checks answer even when the shop is saturated.
        .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz");
        Ok(Self {
            state,
            limit,
            latency: LatencyRegistry::new(),
            metrics: telemetry::prometheus(),
            payment_stub,
        })
    }

    /// The shop's router with the Vitals layers, ready to serve.
    pub fn router(&self) -> Router {
        // Applied inside out: queries sees only the handler's work; cache headers sit outside
        // it (a 304 still ran the handler's queries: the saving is the transfer); the global
        // limit sits inside timing (time spent queueing for a permit is part of the total).
        routes::router(Arc::clone(&self.state), self.metrics.clone(), &self.latency)
            .layer(QueryTrackingLayer::new())
            .layer(shop_cache())
            .layer(self.limit.clone())
            .layer(LatencyLayer::new(self.latency.clone()))
            .layer(timing_layer())
            // Outermost: every layer inside, and the handler, run in the request's trace.
            .layer(TraceContextLayer::new())
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// The report's calibrated workload.
    pub fn workload(&self) -> Workload {
        self.state.workload
    }

    /// Every route's latency.
    pub fn latency(&self) -> &LatencyRegistry {
        &self.latency
    }

    /// The global limiter's state.
    pub fn limit(&self) -> vitals_concurrency::LimiterSnapshot {
        self.limit.snapshot()
    }

    /// The built-in payment stub, if it runs.
    pub fn payment_stub(&self) -> Option<&PaymentStub> {
        self.payment_stub.as_ref()
    }

    /// The built-in payment stub's URL, if it runs.
    pub fn payment_stub_url(&self) -> Option<String> {
        self.payment_stub.as_ref().map(PaymentStub::url)
    }
}
