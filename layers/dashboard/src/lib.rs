//! `vitals-dashboard`: a live `/_vitals` page over what the Vitals layers record — every route's
//! latency, error rate, queries per request and refusals, recent findings (N+1 queries, slow
//! requests, blocking polls) with their trace ids, and the limiter's state. One self-contained
//! HTML page (no build step, no CDN) and the JSON behind it.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use vitals_core::findings::Findings;
//! use vitals_dashboard::Dashboard;
//! use vitals_latency::{LatencyLayer, LatencyRegistry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let latency = LatencyRegistry::new();
//! let findings = Findings::default(); // give it to the timing, queries and limit layers too
//! let dashboard = Dashboard::builder()
//!     .with_latency(latency.clone())
//!     .with_findings(findings)
//!     .build()?; // starts the history sampler: call it inside the tokio runtime
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(LatencyLayer::new(latency))
//!     .merge(dashboard.router()); // after `layer`: the page's own polling is not measured
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The peer address decides access: serve with connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! With the `vitals` crate (feature `dashboard`), `VitalsBuilder::with_findings` hands the sink to
//! every layer and `VitalsLayer::dashboard()` starts a builder with the stack's registry,
//! limiter and findings filled in.
//!
//! Access: only loopback peers that name a loopback host (`Host: localhost`, `127.0.0.1`,
//! `[::1]`, any port, or a name given to [`with_allowed_host`](DashboardBuilder::with_allowed_host)), or
//! requests with `Authorization: Bearer <token>` when a token is configured, are served;
//! others get `403`. The host check stops DNS rebinding: a web page whose name was re-pointed
//! to 127.0.0.1 reaches the dashboard from loopback, but names its own host. The peer comes
//! from axum's `ConnectInfo`: without it (served without connect info) only the token lets
//! anyone in. Behind a reverse proxy on the same host every request comes from loopback: use
//! [`without_loopback_trust`](DashboardBuilder::without_loopback_trust) there. [`Dashboard::guard`] puts routes of
//! your own (a JSON export, a debug endpoint) behind the same rules.

mod access;
mod api;
mod history;
#[cfg(feature = "response-cache")]
mod purge;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vitals_concurrency::LimiterHandle;
use vitals_core::findings::Findings;
use vitals_latency::LatencyRegistry;

pub use history::{LimiterSample, MAX_ROUTES_PER_SAMPLE, PoolHistorySample, RouteSample, Sample};

use access::Access;
use history::History;

/// The page: HTML, CSS and JavaScript in one file, embedded in the binary.
const PAGE: &str = include_str!("../assets/dashboard.html");

/// How often the history is sampled by default.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How much history is kept by default.
pub const DEFAULT_KEEP: Duration = Duration::from_mins(15);

/// What the dashboard reads.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    pub(crate) latency: Option<LatencyRegistry>,
    pub(crate) limiter: Option<LimiterHandle>,
    pub(crate) rate_limit: Option<vitals_rate_limit::RateLimitHandle>,
    pub(crate) findings: Option<Findings>,
    pub(crate) breakers: Vec<vitals_client::BreakerHandle>,
    pub(crate) host_breakers: Vec<vitals_client::HostBreakers>,
    pub(crate) pools: Vec<vitals_queries::pool::PoolVitals>,
    /// The response caches (feature `response-cache`).
    #[cfg(feature = "response-cache")]
    pub(crate) caches: Vec<vitals_response_cache::ResponseCacheHandle>,
    /// The job queue, as last read (every 5 s).
    #[cfg(feature = "jobs")]
    pub(crate) jobs: Option<vitals_jobs::JobsWatch>,
}

/// Configures a [`Dashboard`].
#[derive(Debug)]
#[must_use]
pub struct DashboardBuilder {
    sources: Sources,
    prefix: String,
    token: Option<String>,
    trust_loopback: bool,
    allowed_hosts: Vec<String>,
    sample_every: Duration,
    keep: Duration,
    #[cfg(feature = "jobs")]
    jobs: Option<vitals_jobs::JobStore>,
}

impl DashboardBuilder {
    /// The latency registry to show (the `VitalsLayer`'s, or your `LatencyLayer`'s).
    pub fn with_latency(mut self, registry: LatencyRegistry) -> Self {
        self.sources.latency = Some(registry);
        self
    }

    /// The global limiter to show, read through its handle
    /// ([`ConcurrencyLimitLayer::handle`](vitals_concurrency::ConcurrencyLimitLayer::handle),
    /// or the `VitalsLayer`'s `limiter()`).
    pub fn with_limiter(mut self, limiter: LimiterHandle) -> Self {
        self.sources.limiter = Some(limiter);
        self
    }

    /// The rate limit to show in the "Rate limits" panel: each limited route's allowed and
    /// refused requests since the start, the routes refusing most first
    /// ([`RateLimitLayer::handle`](vitals_rate_limit::RateLimitLayer::handle), or the
    /// `VitalsLayer`'s `rate_limit()`).
    pub fn with_rate_limit(mut self, handle: vitals_rate_limit::RateLimitHandle) -> Self {
        self.sources.rate_limit = Some(handle);
        self
    }

    /// A connection pool to show in the "Database" panel (connections in use, idle, requests
    /// waiting — now and over the history — acquire timeouts and the routes holding
    /// connections longest); call once per pool.
    pub fn with_pool(mut self, pool: vitals_queries::pool::PoolVitals) -> Self {
        self.sources.pools.push(pool);
        self
    }

    /// A response cache to show in the "Response cache" panel (feature `response-cache`): each
    /// route's hit ratio — the share of its requests answered without the handler — with its
    /// hits, stale answers, collapsed waits, misses, bypasses and stores since the start
    /// ([`ResponseCacheLayer::handle`](vitals_response_cache::ResponseCacheLayer::handle)); call
    /// once per cache.
    #[cfg(feature = "response-cache")]
    pub fn with_response_cache(
        mut self,
        cache: vitals_response_cache::ResponseCacheHandle,
    ) -> Self {
        self.sources.caches.push(cache);
        self
    }

    /// A job queue to show in the "Jobs" panel (feature `jobs`): its jobs by kind — pending,
    /// running, succeeded, dead-lettered — and the latest dead-lettered with their errors,
    /// read every 5 s on a task of the dashboard's own (never on a page's request).
    #[cfg(feature = "jobs")]
    pub fn with_jobs(mut self, store: &vitals_jobs::JobStore) -> Self {
        self.jobs = Some(store.clone());
        self
    }

    /// The findings the layers push to (give the same `Findings` to the layers, e.g. with
    /// `VitalsBuilder::with_findings`).
    pub fn with_findings(mut self, findings: Findings) -> Self {
        self.sources.findings = Some(findings);
        self
    }

    /// A downstream's circuit breaker to show in the "Downstream" panel (its state, how often it
    /// opened, its window); call once per breaker. Give the breaker the same `Findings`
    /// (`CircuitBreakerLayer::with_findings`) for its openings and closings in the findings.
    pub fn with_breaker(mut self, breaker: vitals_client::BreakerHandle) -> Self {
        self.sources.breakers.push(breaker);
        self
    }

    /// The breakers of a per-host circuit breaker layer (`CircuitBreakerLayer::per_host`): each
    /// host called so far gets a row in the "Downstream" panel, named after the host.
    pub fn with_host_breakers(mut self, breakers: vitals_client::HostBreakers) -> Self {
        self.sources.host_breakers.push(breakers);
        self
    }

    /// Where the routes live (default `/_vitals`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Also serve requests carrying `Authorization: Bearer <token>` (from any peer). A browser
    /// does not send such a header by itself: reach the page through a proxy that adds it, or
    /// an SSH tunnel to a loopback port.
    pub fn with_bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Serve only requests with the bearer token, whatever their peer. Use it behind a reverse
    /// proxy on the same host: every proxied request comes from loopback.
    pub fn without_loopback_trust(mut self) -> Self {
        self.trust_loopback = false;
        self
    }

    /// Also let loopback peers in when they name `host` (any port): for a dashboard served
    /// under a name of its own, such as `vitals.internal` mapped to 127.0.0.1 in
    /// `/etc/hosts`. Only loopback peers, and only names listed here besides `localhost`
    /// and the loopback addresses: any other name a loopback request carries may be a web
    /// page rebound to 127.0.0.1 by its DNS. Give the name without a port.
    pub fn with_allowed_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }

    /// Sample the history every `every` (default 5 s, at least 100 ms), keeping `keep` of it
    /// (default 15 minutes).
    pub fn with_history(mut self, every: Duration, keep: Duration) -> Self {
        self.sample_every = every.max(Duration::from_millis(100));
        self.keep = keep;
        self
    }

    /// The dashboard, its history sampler started. Fails outside a tokio runtime, on a prefix
    /// that is not a path (`/…`, no trailing `/`), on an empty bearer token, and on an
    /// allowed host that is not a bare host name.
    pub fn build(self) -> Result<Dashboard, DashboardError> {
        if !self.prefix.starts_with('/') || self.prefix.len() < 2 || self.prefix.ends_with('/') {
            return Err(DashboardError::InvalidPrefix(self.prefix));
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.is_empty() || HeaderValue::from_str(t).is_err())
        {
            return Err(DashboardError::InvalidToken);
        }
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|host| !access::is_host_name(host))
        {
            return Err(DashboardError::InvalidHost(bad.clone()));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(DashboardError::NoRuntime);
        }
        let capacity =
            usize::try_from(self.keep.as_millis() / self.sample_every.as_millis().max(1))
                .unwrap_or(usize::MAX)
                .max(1);
        #[allow(unused_mut)] // Changed by the jobs panel only.
        let mut sources = self.sources;
        #[cfg(feature = "jobs")]
        {
            sources.jobs = self
                .jobs
                .as_ref()
                .map(|store| store.watch(DEFAULT_SAMPLE_EVERY));
        }
        let sources = Arc::new(sources);
        let mut history = History::new(capacity);
        history.baseline(&sources);
        let history = Arc::new(Mutex::new(history));
        let sampler = history::spawn_sampler(&history, Arc::clone(&sources), self.sample_every);
        Ok(Dashboard {
            inner: Arc::new(Inner {
                sources,
                history,
                prefix: self.prefix,
                access: Access {
                    token: self.token,
                    trust_loopback: self.trust_loopback,
                    allowed_hosts: self.allowed_hosts,
                },
                sample_every: self.sample_every,
                sampler,
            }),
        })
    }
}

struct Inner {
    sources: Arc<Sources>,
    history: Arc<Mutex<History>>,
    prefix: String,
    access: Access,
    sample_every: Duration,
    sampler: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

/// The live dashboard; see the [crate documentation](crate). Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("prefix", &self.inner.prefix)
            .field("sample_every", &self.inner.sample_every)
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A builder with nothing to show yet, at `/_vitals`, loopback only.
    pub fn builder() -> DashboardBuilder {
        DashboardBuilder {
            sources: Sources::default(),
            prefix: "/_vitals".to_owned(),
            token: None,
            trust_loopback: true,
            allowed_hosts: Vec::new(),
            sample_every: DEFAULT_SAMPLE_EVERY,
            keep: DEFAULT_KEEP,
            #[cfg(feature = "jobs")]
            jobs: None,
        }
    }

    /// The page and the API under the prefix: `GET {prefix}` and `{prefix}/` (the page),
    /// `{prefix}/api/summary`, `{prefix}/api/history`, `{prefix}/api/findings`. Merge it into
    /// your router.
    pub fn router(&self) -> Router {
        let prefix = &self.inner.prefix;
        let page = self.guarded(|_| page());
        Router::new()
            .route(prefix, page.clone())
            .route(&format!("{prefix}/"), page)
            .route(
                &format!("{prefix}/api/summary"),
                self.guarded(|inner| json_text(api::summary(&inner.sources))),
            )
            .route(
                &format!("{prefix}/api/history"),
                self.guarded(|inner| {
                    let samples = inner
                        .history
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .samples();
                    json(&api::history(&samples, inner.sample_every.as_secs_f64()))
                }),
            )
            .route(
                &format!("{prefix}/api/findings"),
                self.guarded(|inner| json(&api::findings(&inner.sources))),
            )
    }

    /// A `GET` handler answering with `answer`, or `403` to a peer without access.
    fn guarded(&self, answer: fn(&Inner) -> Response) -> axum::routing::MethodRouter {
        let inner = Arc::clone(&self.inner);
        get(move |request: Request| {
            let inner = Arc::clone(&inner);
            async move {
                if !inner
                    .access
                    .allows(request.extensions(), request.headers(), request.uri())
                {
                    return forbidden();
                }
                answer(&inner)
            }
        })
    }

    /// Puts every route of `router` behind the dashboard's access rules (loopback peer and
    /// host, or the bearer token), answering `403` to anyone else — for internal routes of
    /// your own that show what the dashboard shows:
    ///
    /// ```no_run
    /// # use axum::Router;
    /// # fn wire(dashboard: vitals_dashboard::Dashboard, latency: vitals_latency::LatencyRegistry) -> Router {
    /// Router::new()
    ///     .merge(dashboard.router())
    ///     .merge(dashboard.guard(
    ///         Router::new().route_service("/_vitals/latency", latency.json_service()),
    ///     ))
    /// # }
    /// ```
    pub fn guard<S>(&self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let inner = Arc::clone(&self.inner);
        router.route_layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let allowed =
                    inner
                        .access
                        .allows(request.extensions(), request.headers(), request.uri());
                async move {
                    if allowed {
                        next.run(request).await
                    } else {
                        forbidden()
                    }
                }
            },
        ))
    }

    /// The response caches' purge route, behind the dashboard's access rule (feature
    /// `response-cache`; opt-in: merge it beside [`router`](Self::router)). `PURGE` or `DELETE`
    /// `{prefix}/cache` with one of `?target=/products/42`, `?route=/products/{id}`,
    /// `?tag=catalogue` or `?all=true` makes every cache given with
    /// [`with_response_cache`](DashboardBuilder::with_response_cache) forget it (this
    /// instance's memory at once, a Redis shared by the fleet in the background) and answers
    /// `200` with what was purged; a bad query gets `400`, other methods `405`, no cache `404`.
    ///
    /// ```text
    /// curl -X PURGE 'http://127.0.0.1:3000/_vitals/cache?tag=catalogue'
    /// ```
    #[cfg(feature = "response-cache")]
    pub fn cache_purge_router(&self) -> Router {
        let inner = Arc::clone(&self.inner);
        let purge = axum::routing::any(
            move |query: Result<
                axum::extract::Query<purge::Purge>,
                axum::extract::rejection::QueryRejection,
            >,
                  request: Request| {
                let inner = Arc::clone(&inner);
                async move {
                    let query = query.map_err(|rejection| rejection.body_text());
                    purge::answer(&inner.sources.caches, &request, query)
                }
            },
        );
        self.guard(Router::new().route(&format!("{}/cache", self.inner.prefix), purge))
    }

    /// Takes a history sample now (tests, or a page that wants a fresh point).
    pub fn sample_now(&self) {
        self.inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample(&self.inner.sources);
    }

    /// The history kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.inner
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .samples()
    }
}

fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

fn json(value: &serde_json::Value) -> Response {
    json_text(value.to_string())
}

fn json_text(text: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        r#"{"error":"the dashboard answers loopback peers naming a loopback host, or requests with its bearer token"}"#,
    )
        .into_response()
}

/// Why a [`DashboardBuilder`] refused to build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DashboardError {
    /// The history sampler needs a tokio runtime: build inside one.
    NoRuntime,
    /// The prefix must be a path like `/_vitals` (leading `/`, no trailing `/`).
    InvalidPrefix(String),
    /// The bearer token is empty or not a valid header value.
    InvalidToken,
    /// An allowed host is not a bare host name (no port, no path, not empty).
    InvalidHost(String),
}

impl std::fmt::Display for DashboardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRuntime => f.write_str(
                "the dashboard's history sampler needs a tokio runtime: build it inside one",
            ),
            Self::InvalidPrefix(prefix) => write!(
                f,
                "dashboard prefix {prefix:?} must start with '/' and not end with one"
            ),
            Self::InvalidToken => {
                f.write_str("the dashboard's bearer token is empty or not a header value")
            }
            Self::InvalidHost(host) => write!(
                f,
                "dashboard allowed host {host:?} must be a bare host name (no port, no path)"
            ),
        }
    }
}

impl std::error::Error for DashboardError {}
