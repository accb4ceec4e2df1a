//! Harness for Vitals' whole-stack tests: the shop app in-process, over real TCP, on a real
//! database, called with a real HTTP client.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use vitals_integration_tests::TestShop;
//!
//! let shop = TestShop::start_sqlite().await;
//! let response = shop.get("/healthz").await;
//! assert_eq!(response.status(), 200);
//! shop.shutdown().await;
//! # }
//! ```
//!
//! PostgreSQL: [`postgres_admin_url`] reads `VITALS_TEST_POSTGRES_URL` (`scripts/ci` sets it
//! to a throwaway cluster); each [`TestShop::start_postgres`] gets a database of its own,
//! dropped at [`TestShop::shutdown`]. Without it the Postgres variants are skipped, with a note
//! on stderr, except under CI (`CI` set), where they fail ([`service_url`]).
//!
//! Redis: [`redis::redis_url`] reads `VITALS_TEST_REDIS_URL` (`scripts/redis start`), with the
//! same rule; tests of a slow or dead Redis start a throwaway server of their own
//! ([`redis::ThrowawayRedis`]).
//!
//! Waiting: tests wait on the state they need ([`eventually`]), never for a fixed time, so a
//! busy machine makes them slower, not wrong.

pub mod events;
pub mod otlp;
pub mod redis;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shop::{Config, Shop};
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The environment variable naming the PostgreSQL server the Postgres variants use.
pub const POSTGRES_URL_VAR: &str = "VITALS_TEST_POSTGRES_URL";

/// The shop's configuration for tests: fresh in-memory SQLite, a fast payment stub.
pub fn test_config() -> Config {
    let mut config = Config::with_defaults();
    config.payment_latency_ms = 5;
    config
}

/// A shop serving on a random loopback port.
pub struct TestShop {
    base_url: String,
    client: reqwest::Client,
    shop: Shop,
    server: JoinHandle<()>,
    postgres: Option<FreshPostgres>,
}

impl TestShop {
    /// Starts the shop on a fresh in-memory SQLite database.
    pub async fn start_sqlite() -> Self {
        Self::start(test_config()).await
    }

    /// Starts the shop on a fresh database of the PostgreSQL server at `admin_url`.
    pub async fn start_postgres(admin_url: &str) -> Self {
        Self::start_postgres_with(admin_url, test_config()).await
    }

    /// Like [`Self::start_postgres`], with a configuration whose database URL is replaced.
    pub async fn start_postgres_with(admin_url: &str, mut config: Config) -> Self {
        let database = FreshPostgres::create(admin_url).await;
        config.database_url = database.url.clone();
        let mut shop = Self::start(config).await;
        shop.postgres = Some(database);
        shop
    }

    /// Starts the shop with `config` (its `listen` address is ignored: a free port is used).
    pub async fn start(config: Config) -> Self {
        install_query_events();
        install_prometheus();
        let shop = Shop::start(config)
            .await
            .unwrap_or_else(|e| panic!("the shop did not start: {e}"));
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let router = shop.router();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .expect("serve the shop");
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client");
        Self {
            base_url: format!("http://{addr}"),
            client,
            shop,
            server,
            postgres: None,
        }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The HTTP client (no proxy, 30 s timeout).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The running shop.
    pub fn shop(&self) -> &Shop {
        &self.shop
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET path`, expecting `status` and a JSON body, which is returned.
    pub async fn get_json(&self, path: &str, status: u16) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status().as_u16(), status, "GET {path}");
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, "application/json", "GET {path}");
        response
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON: {e}"))
    }

    /// Opens every connection the shop's pool may hold and waits until all are idle again.
    ///
    /// A request that makes the pool open a connection also runs the connection's setup
    /// statements (SQLite pragmas, PostgreSQL settings), and they count toward it. How many a
    /// request opens depends on whether the connection its previous statement used got back to
    /// the pool in time, that is on the machine's load; with the pool full, none.
    pub async fn open_every_connection(&self) {
        let pool = self.shop.db().pool();
        let max = pool.options().get_max_connections();
        let mut held = Vec::new();
        for _ in 0..max {
            held.push(
                pool.acquire()
                    .await
                    .expect("a connection of the shop's pool"),
            );
        }
        drop(held);
        let max = usize::try_from(max).expect("small");
        eventually("every connection of the shop's pool to be idle", || {
            pool.num_idle() == max
        })
        .await;
    }

    /// Stops the server, closes the pool, and drops the PostgreSQL database if one was made.
    pub async fn shutdown(self) {
        self.server.abort();
        let _ = self.server.await;
        self.shop.db().close().await;
        if let Some(database) = self.postgres {
            database.drop_database().await;
        }
    }
}

/// How long [`eventually`] waits: far longer than anything takes on an idle machine, so only a
/// state that never comes fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `condition` every few milliseconds until it holds, panicking with `what` after
/// [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Installs a global subscriber with the query event layer, as the shop's `main` does, unless
/// the test installed its own first (which should then include
/// `vitals_queries::query_events()`).
pub fn install_query_events() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(vitals_queries::query_events())
        .try_init();
}

/// The Prometheus recorder `vitals::telemetry` installs, once per test process, so the shop's
/// `/metrics` answers as it does when `main` installed telemetry. A test that installed a
/// recorder of its own keeps it (and `/metrics` answers 404).
pub fn install_prometheus() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if let Err(error) = vitals::telemetry::install_prometheus() {
            eprintln!("no Prometheus recorder for the shop: {error}");
        }
    });
}

/// Runs `promtool check metrics` on `text` and fails on any complaint. Without promtool the
/// check is skipped with a note, unless `VITALS_REQUIRE_PROMTOOL` is set (scripts/ci sets it),
/// which makes a missing promtool fail.
pub fn promtool_check(text: &str) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("VITALS_REQUIRE_PROMTOOL").is_none(),
                "promtool is required: {error}"
            );
            eprintln!("skipped: promtool not found ({error})");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .expect("write the metrics to promtool");
    }
    let output = child.wait_with_output().expect("promtool's answer");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The PostgreSQL server for the Postgres variants: see [`service_url`].
pub fn postgres_admin_url(test: &str) -> Option<String> {
    service_url(POSTGRES_URL_VAR, "PostgreSQL", test)
}

/// The environment variable CI services set (to any non-empty value): tests that need an
/// outside service fail there instead of skipping.
pub const CI_VAR: &str = "CI";

/// The URL in `var` of the outside service (`what`: PostgreSQL, Redis…) that `test` needs.
///
/// Without it, on a developer's machine: `None`, and a note on stderr that `test` is skipped.
/// Under CI ([`CI_VAR`] set): a panic, since a skip there would pass a run that tested nothing.
pub fn service_url(var: &str, what: &str, test: &str) -> Option<String> {
    match choose_service_url(var, what, test, std::env::var(var).ok(), ci_is_set()) {
        Ok(url) => url,
        Err(refusal) => panic!("{refusal}"),
    }
}

/// Whether [`CI_VAR`] is set to a non-empty value.
pub fn ci_is_set() -> bool {
    std::env::var_os(CI_VAR).is_some_and(|value| !value.is_empty())
}

/// [`service_url`] on the values read from the environment: `Err` is the panic message.
fn choose_service_url(
    var: &str,
    what: &str,
    test: &str,
    url: Option<String>,
    ci: bool,
) -> Result<Option<String>, String> {
    match url {
        Some(url) if !url.trim().is_empty() => Ok(Some(url)),
        _ if ci => Err(format!(
            "{test} needs {what}: {var} is not set, and under CI ({CI_VAR} is set) it may not be \
             skipped"
        )),
        _ => {
            eprintln!("skipped {test}: set {var} to run it against {what}");
            Ok(None)
        }
    }
}

/// A database of its own on a PostgreSQL server, so tests can run in parallel.
struct FreshPostgres {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshPostgres {
    async fn create(admin_url: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        sqlx::any::install_default_drivers();
        let name = format!(
            "vitals_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::AnyConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {admin_url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut admin)
        .await
        .expect("drop a leftover test database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(admin_url).expect("VITALS_TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    async fn drop_database(self) {
        if let Ok(mut admin) = sqlx::AnyConnection::connect(&self.admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await;
            let _ = admin.close().await;
        }
    }
}

/// Whether `metadata` is a request's span: the stack's one request span (trace context's), or
/// the query layer's own when it runs without trace context. It closes after the request's
/// last report, so a test that saw it close has seen every event of the request.
pub fn is_request_span(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.name() == "vitals_queries.request"
        || (metadata.name() == "request"
            && metadata.target() == vitals::core::identity::REQUEST_SPAN_TARGET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_url_is_used_whether_or_not_ci_is_set() {
        for ci in [false, true] {
            assert_eq!(
                choose_service_url(
                    POSTGRES_URL_VAR,
                    "PostgreSQL",
                    "t",
                    Some("pg://h".into()),
                    ci
                ),
                Ok(Some("pg://h".to_owned()))
            );
        }
    }

    #[test]
    fn a_missing_service_skips_locally_and_fails_under_ci() {
        for url in [None, Some(String::new()), Some("  ".to_owned())] {
            assert_eq!(
                choose_service_url(POSTGRES_URL_VAR, "PostgreSQL", "t", url.clone(), false),
                Ok(None),
                "{url:?}"
            );
            let refusal =
                choose_service_url(POSTGRES_URL_VAR, "PostgreSQL", "t", url.clone(), true)
                    .expect_err("under CI a missing URL fails the test");
            assert!(
                refusal.starts_with("t needs PostgreSQL: VITALS_TEST_POSTGRES_URL is not set"),
                "{refusal}"
            );
        }
    }
}
