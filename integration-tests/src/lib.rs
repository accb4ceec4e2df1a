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
//! dropped at [`TestShop::shutdown`].

pub mod events;
pub mod otlp;

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

/// The PostgreSQL server for the Postgres variants, or `None` (with a note on stderr saying the
/// test is skipped) when `VITALS_TEST_POSTGRES_URL` is not set.
pub fn postgres_admin_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipped {test}: set {POSTGRES_URL_VAR} to run it against PostgreSQL");
            None
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
