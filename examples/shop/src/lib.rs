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
//! // The peer address decides who may see the dashboard at /_vitals.
//! axum::serve(listener, shop.router().into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod jobs;
pub mod payment;
pub mod report;
pub mod routes;
pub mod w3c;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use vitals::cache_headers::{CacheHeadersLayer, CachePolicy, CacheSettings};
use vitals::concurrency::{ConcurrencyLimitLayer, Limit, LimiterHandle};
use vitals::core::findings::Findings;
use vitals::core::route::RequestHead;
use vitals::latency::LatencyRegistry;
use vitals::queries::QueryTrackingLayer;
use vitals::queries::index::{DetectMode, IndexDetector, PostgresExplainer, SqliteExplainer};
use vitals::rate_limit::{ClientIp, Key, Quota, RateLimitLayer, RateLimitSettings, RedisStore};
use vitals::{RouteSettings, VitalsLayer};

pub use config::{Config, LogFormat};
use db::{Backend, Db, DbOptions};
use payment::{PaymentClient, PaymentStub};
use report::Workload;
use routes::AppState;

/// The deadline of `GET /slow` (`/slow?ms=30000` is cut at 5 s).
pub const SLOW_ROUTE_TIMEOUT: Duration = Duration::from_secs(5);

/// Every Vitals layer, with each route's settings in one table. The defaults that are not
/// written here: a trace for every request (`traceparent` in and out, `x-request-id`), request
/// timing in `Server-Timing` with a WARN for requests slower than 1 s (`/slow?ms=1500`) and for
/// handlers blocking the executor 10 ms in one poll (`/report/blocking`), per-route latency
/// histograms, the query ledger with N+1 detection, ETags and 304s.
pub fn vitals_layer(
    max_concurrency: usize,
    checkout: RateLimitSettings,
    quotas: RateLimitLayer,
    findings: Findings,
    detector: Option<IndexDetector>,
    idempotency: vitals::idempotency::IdempotencyLayer,
    response_cache: vitals::response_cache::ResponseCacheLayer,
) -> Result<VitalsLayer, vitals::VitalsError> {
    // Statements over 100 ms are reported slow (the default); each new statement shape is
    // explained once on the detector's own connection, and full scans of large tables are
    // reported as missing indexes.
    let mut queries = QueryTrackingLayer::new();
    if let Some(detector) = detector {
        queries = queries.with_index_detector(detector);
    }
    VitalsLayer::builder()
        // `POST /orders` must bring an `Idempotency-Key`: a retried order is not a second
        // one. A replay is answered before the concurrency limit, and takes no permit.
        .with_idempotency(idempotency)
        // The catalogue's answers are kept (in memory, or in Redis for a fleet): a hit, or a
        // request waiting for another's fill of its key, is answered before the concurrency
        // limit and takes no permit.
        .with_response_cache(response_cache)
        .with_queries(queries)
        // Where the routes' quotas live: in process, or in Redis for a fleet (`--redis-url`).
        .with_rate_limit(quotas)
        // What the dashboard at /_vitals shows: slow requests, N+1 queries, blocking polls,
        // refusals.
        .with_findings(findings)
        // A few hundred requests at once for the whole shop; more wait up to 250 ms, then
        // 503 + Retry-After. Health checks answer even when the shop is saturated.
        .with_concurrency_limit(
            ConcurrencyLimitLayer::new(max_concurrency)
                .with_max_wait(Duration::from_millis(250))
                .with_bypass(|head: RequestHead<'_>| head.uri.path() == "/healthz"),
        )
        // API data that caches must revalidate before use (`no-cache`: the computed ETag makes
        // that a 304); errors never stored.
        .with_cache_headers(CacheHeadersLayer::new().with_policy(CachePolicy::no_cache()))
        .with_route(
            "/products",
            RouteSettings::new()
                .with_cache(catalogue_cache())
                .with_response_cache(catalogue_store()),
        )
        .with_route(
            "/products/{id}",
            RouteSettings::new()
                .with_cache(catalogue_cache())
                .with_response_cache(catalogue_store()),
        )
        .with_route(
            "/products/{id}/reviews",
            RouteSettings::new()
                .with_cache(catalogue_cache())
                .with_response_cache(catalogue_store()),
        )
        // One JOIN: anything more is a regression. (`/orders/n-plus-one` goes over, on purpose.)
        .with_route("/orders", RouteSettings::new().with_query_budget(3))
        .with_route(
            "/orders/n-plus-one",
            RouteSettings::new().with_query_budget(3),
        )
        // Per-user data: only the user's browser may keep it, revalidating before each use.
        .with_route(
            "/me",
            RouteSettings::new()
                .with_cache_policy(CachePolicy::private(Duration::ZERO).must_revalidate()),
        )
        // Each caller may start 5 payments a second (10 at once): by API key (`X-Api-Key`),
        // else by client address (no proxy trusted). Over it: 429 + Retry-After, before any
        // permit or payment call is spent.
        .with_route(
            "/checkout",
            RouteSettings::new()
                .with_cache_policy(CachePolicy::no_store())
                .with_rate_limit(checkout),
        )
        // `/slow` holds requests open on purpose, so it gets a limit of its own — 8 at once, 16
        // waiting at most 100 ms, the rest refused — and a deadline: the rest of the shop keeps
        // answering while it is flooded.
        .with_route(
            "/slow",
            RouteSettings::new()
                .with_limit(
                    Limit::new(8)
                        .with_max_queued(16)
                        .with_max_wait(Duration::from_millis(100))
                        .with_name("slow"),
                )
                .with_timeout(SLOW_ROUTE_TIMEOUT),
        )
        .build()
}

/// The header `GET /checkout` is rate-limited by when a caller sends it.
pub const API_KEY_HEADER: &str = "x-api-key";

/// `GET /checkout`'s quota (by default 5 a second with bursts of 10), per API key the shop
/// issued (`api_keys`), else per client address: a made-up key is no way around the quota.
pub fn checkout_quota(rate: u32, burst: u32, api_keys: &[String]) -> RateLimitSettings {
    let issued: Arc<std::collections::HashSet<String>> = Arc::new(
        api_keys
            .iter()
            .filter(|key| !key.is_empty())
            .cloned()
            .collect(),
    );
    let api_key = Key::custom(move |head| {
        let key = head.headers.get(API_KEY_HEADER)?.to_str().ok()?;
        issued.contains(key).then(|| key.to_owned())
    });
    RateLimitSettings::new(Quota::per_second(rate.max(1)).with_burst(burst.max(1)))
        .with_keys([api_key, Key::client_ip(ClientIp::new())])
}

/// The catalogue changes rarely and is the same for everyone: any cache may keep it a minute
/// and serve it up to five minutes stale while it revalidates. An unknown product's 404 is
/// cached 10 s (scanners probing ids then cost one database query per id per 10 s); a request
/// with `Authorization` gets the private equivalent (the layer's safe default).
fn catalogue_cache() -> CacheSettings {
    CacheSettings::new()
        .with_policy(
            CachePolicy::public(Duration::from_mins(1))
                .stale_while_revalidate(Duration::from_mins(5)),
        )
        .with_status_policy(
            axum::http::StatusCode::NOT_FOUND,
            CachePolicy::public(Duration::from_secs(10)),
        )
}

/// How the response cache keeps the catalogue (for as long as each response says: the policy
/// above): a request missing a key another request is filling waits up to 5 s for it — 25
/// times the reviews' 200 ms fill — so a burst of cold requests makes one fill; and for five
/// minutes past its freshness, a stored answer stands in for a failing handler.
fn catalogue_store() -> vitals::response_cache::CacheSettings {
    vitals::response_cache::CacheSettings::new()
        .with_wait(Duration::from_secs(5))
        .with_stale_if_error(Duration::from_mins(5))
}

/// The missing-index detector in first-sight mode (each new statement shape is explained the
/// first time it runs, so one request is enough to get the finding), on a connection of its
/// own. Without it (its connection failed) the shop runs on, and says so once.
async fn index_detector(db: &Db, findings: &Findings) -> Option<IndexDetector> {
    let builder = match db.backend() {
        Backend::Sqlite => SqliteExplainer::connect(db.url())
            .await
            .map(IndexDetector::new),
        Backend::Postgres => PostgresExplainer::connect(db.url())
            .await
            .map(IndexDetector::new),
    };
    let detector = builder.map_err(|e| e.to_string()).and_then(|builder| {
        builder
            .with_mode(DetectMode::FirstSight)
            .with_findings(findings.clone())
            .spawn()
            .map_err(|e| e.to_string())
    });
    match detector {
        Ok(detector) => Some(detector),
        Err(error) => {
            tracing::warn!(%error, "the missing-index detector is off: its connection failed");
            None
        }
    }
}

/// A started shop: database open and seeded, payment service reachable.
#[derive(Debug)]
pub struct Shop {
    state: Arc<AppState>,
    vitals: VitalsLayer,
    /// Every route's latency, for `GET /_vitals/latency` (and `/metrics` through the recorder).
    latency: LatencyRegistry,
    /// The global limit (`--max-concurrency`).
    limit: LimiterHandle,
    /// The catalogue's response cache.
    response_cache: vitals::response_cache::ResponseCacheHandle,
    /// What `GET /metrics` renders (the recorder `vitals::telemetry` installed).
    metrics: Option<vitals::telemetry::PrometheusHandle>,
    /// The live page at `/_vitals`.
    dashboard: vitals::dashboard::Dashboard,
    /// The missing-index detector, unless its connection failed.
    index_detector: Option<IndexDetector>,
    /// This shop's worker of `POST /reports`' jobs (none with `--job-workers 0`).
    jobs_worker: Option<vitals::jobs::JobWorkerHandle>,
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

/// The quotas' and the orders' idempotency keys' stores: in process, or in Redis with
/// `--redis-url`.
fn shared_state(
    config: &Config,
) -> Result<(RateLimitLayer, vitals::idempotency::IdempotencyLayer), StartError> {
    let mut quotas = RateLimitLayer::per_route();
    let mut idempotency = routes::idempotency();
    if let Some(url) = &config.redis_url {
        quotas = quotas.with_redis(RedisStore::new(url).map_err(|e| StartError(e.to_string()))?);
        // Orders' keys shared by every shop on this Redis: a retry that reaches another
        // instance is still a replay.
        idempotency = idempotency.with_redis(
            vitals::idempotency::RedisStore::new(url)
                .map_err(|e| StartError(e.to_string()))?
                .with_prefix(config.redis_prefix.clone()),
        );
    }
    Ok((quotas, idempotency))
}

/// The response cache of the routes that ask for one (the catalogue): in memory, and in Redis
/// with `--cache-url`.
fn response_cache(
    config: &Config,
) -> Result<vitals::response_cache::ResponseCacheLayer, StartError> {
    let cache = vitals::response_cache::ResponseCacheLayer::new().only_listed_routes();
    let Some(url) = &config.cache_url else {
        return Ok(cache);
    };
    // The default lease, 3 s: fifteen fills of the reviews' 200 ms (a loaded machine slows
    // them), and shorter than the 5 s a request waits, so the waiters outlast a crashed filler.
    let fleet = vitals::response_cache::RedisStore::new(url)
        .map_err(|e| StartError(e.to_string()))?
        .with_prefix(config.cache_prefix.clone())
        .with_timeout(Duration::from_millis(config.cache_timeout_ms));
    Ok(cache.with_redis(fleet))
}

/// The page at `/_vitals`: the stack's parts (latency, limits, the response cache, findings),
/// the payment breaker, the pool and the jobs; behind `token` when one is given.
fn dashboard(
    vitals: &VitalsLayer,
    state: &AppState,
    breaker: vitals::client::BreakerHandle,
    token: Option<String>,
) -> Result<vitals::dashboard::Dashboard, StartError> {
    let mut dashboard = vitals
        .dashboard()
        .with_breaker(breaker)
        .with_pool(state.db.pool_vitals().clone())
        .with_jobs(&state.jobs);
    if let Some(token) = token {
        dashboard = dashboard.with_bearer_token(token);
    }
    dashboard.build().map_err(|e| StartError(e.to_string()))
}

impl Shop {
    /// Opens the database (creating and seeding it), calibrates the report's workload and
    /// starts the stub payment service unless `config.payment_url` names one.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        // One findings ring for the layers, the pool and the payment client: the dashboard
        // shows them all.
        let findings = Findings::default();
        let db = Db::connect_with(
            &config.database_url,
            DbOptions {
                max_connections: config.pool_size,
                statement_timeout: Duration::from_millis(config.statement_timeout_ms),
                findings: Some(findings.clone()),
                pool_name: config.pool_name.clone(),
                ..DbOptions::default()
            },
        )
        .await
        .map_err(|e| StartError(e.to_string()))?;
        let detector = index_detector(&db, &findings).await;
        let (quotas, idempotency) = shared_state(&config)?;
        let response_cache = response_cache(&config)?;
        let workload = tokio::task::spawn_blocking(|| Workload::calibrate(report::TARGET))
            .await
            .map_err(|e| StartError(format!("workload calibration failed: {e}")))?;
        let (payment_url, payment_stub) = if let Some(url) = config.payment_url {
            (url, None)
        } else {
            let stub = PaymentStub::start(
                Duration::from_millis(config.payment_latency_ms),
                config.payment_failure_rate,
            )
            .await
            .map_err(|e| StartError(format!("cannot start the payment stub: {e}")))?;
            stub.control()
                .set_latency_spike(Duration::from_millis(config.payment_latency_spike_ms));
            (stub.url(), Some(stub))
        };
        let payment = PaymentClient::new(
            &payment_url,
            Duration::from_millis(config.payment_timeout_ms),
            findings.clone(),
        )
        .map_err(StartError)?;
        let breaker = payment.breaker().clone();
        let (jobs, jobs_worker) = jobs::start(
            &db,
            workload,
            jobs::JobSettings {
                workers: usize::try_from(config.job_workers).unwrap_or(0),
                attempts: config.job_attempts,
                heartbeat: Duration::from_secs(config.job_heartbeat_s),
            },
        )
        .await
        .map_err(|e| StartError(e.to_string()))?;
        let state = Arc::new(AppState {
            db,
            jobs,
            workload,
            payment,
            w3c_test_endpoint: config.w3c_test_endpoint,
        });
        let vitals = vitals_layer(
            usize::try_from(config.max_concurrency).unwrap_or(usize::MAX),
            checkout_quota(
                config.checkout_rate,
                config.checkout_burst,
                &config.api_keys,
            ),
            quotas,
            findings,
            detector.clone(),
            idempotency,
            response_cache,
        )
        .map_err(|e| StartError(e.to_string()))?;
        let dashboard = dashboard(&vitals, &state, breaker, config.dashboard_token)?;
        let (Some(latency), Some(limit), Some(response_cache)) = (
            vitals.latency().cloned(),
            vitals.limiter(),
            vitals.response_cache(),
        ) else {
            return Err(StartError(
                "the Vitals stack lacks latency, its limit or its response cache".into(),
            ));
        };
        Ok(Self {
            state,
            vitals,
            latency,
            limit,
            response_cache,
            metrics: vitals::telemetry::prometheus(),
            dashboard,
            index_detector: detector,
            jobs_worker,
            payment_stub,
        })
    }

    /// The response cache of the catalogue (`GET /products`, `/products/{id}`,
    /// `/products/{id}/reviews`): purge by target, route or tag.
    pub fn response_cache(&self) -> &vitals::response_cache::ResponseCacheHandle {
        &self.response_cache
    }

    /// The shop's router with the Vitals layers, and the dashboard at `/_vitals` with the
    /// latency JSON at `/_vitals/latency` (merged after the layers: their own polling is not
    /// measured). Serve it with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>()`): the dashboard and the JSON
    /// answer loopback peers naming a loopback host only, unless `--dashboard-token` is given.
    pub fn router(&self) -> Router {
        let latency_json =
            Router::new().route_service("/_vitals/latency", self.latency.json_service());
        routes::router(Arc::clone(&self.state), self.metrics.clone())
            .layer(self.vitals.clone())
            .merge(self.dashboard.router())
            .merge(self.dashboard.guard(latency_json))
            .merge(self.dashboard.cache_purge_router())
    }

    /// The dashboard.
    pub fn dashboard(&self) -> &vitals::dashboard::Dashboard {
        &self.dashboard
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// The missing-index detector, unless its connection failed at start.
    pub fn index_detector(&self) -> Option<&IndexDetector> {
        self.index_detector.as_ref()
    }

    /// This shop's worker of `POST /reports`' jobs, when it has one.
    pub fn jobs_worker(&self) -> Option<&vitals::jobs::JobWorkerHandle> {
        self.jobs_worker.as_ref()
    }

    /// Stops this shop's job worker: the reports it is building end and are recorded first.
    pub async fn stop_jobs(&mut self) {
        if let Some(worker) = self.jobs_worker.take() {
            worker.shutdown().await;
        }
    }

    /// The queue of `POST /reports`' jobs.
    pub fn jobs(&self) -> &vitals::jobs::JobStore {
        &self.state.jobs
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
    pub fn limit(&self) -> vitals::concurrency::LimiterSnapshot {
        self.limit.snapshot()
    }

    /// The state of `/slow`'s own limiter.
    pub fn slow_limit(&self) -> Option<vitals::concurrency::LimiterSnapshot> {
        self.limit.route_snapshot("/slow")
    }

    /// The payment client's circuit breaker.
    pub fn payment_breaker(&self) -> &vitals::client::BreakerHandle {
        self.state.payment.breaker()
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
