//! The shop's database: one code path for SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Every statement here is portable: `$N` placeholders (SQLite accepts them too), `BIGINT`
//! and `TEXT` columns, no database-specific functions.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Row};
use vitals::core::findings::Findings;

use crate::report::Report;
use vitals::queries::pool::{Held, PoolVitals};

/// Which database the shop runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded; the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The backend a URL names, if it is one the shop supports.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// How many rows the seed creates.
pub mod seed {
    /// Products in the catalogue.
    pub const PRODUCTS: i64 = 24;
    /// Customers.
    pub const CUSTOMERS: i64 = 60;
    /// Orders (spread over customers and products).
    pub const ORDERS: i64 = 240;
    /// Customers in all, the crowd without orders included: enough that a lookup through a
    /// column without an index is a real scan (`GET /orders/by-email`).
    pub const ALL_CUSTOMERS: i64 = 12_000;
    /// Rows per `INSERT` of the crowd.
    pub const BATCH: i64 = 1_000;
}

/// How the shop's pool is set up.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// The most connections the pool opens (default 8).
    pub max_connections: u32,
    /// How long one statement may run before the database cuts it (default 5 s): PostgreSQL's
    /// `statement_timeout`. SQLite has no statement timeout; its busy timeout (sqlx's default,
    /// 5 s) bounds how long a statement waits for a lock.
    pub statement_timeout: Duration,
    /// How long an acquire waits for a connection before it fails (default 10 s).
    pub acquire_timeout: Duration,
    /// Where the pool's exhaustion findings go.
    pub findings: Option<Findings>,
    /// The pool's name in its metrics and findings (default `shop`).
    pub pool_name: String,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            statement_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            findings: None,
            pool_name: "shop".to_owned(),
        }
    }
}

/// A connection pool and the backend behind it.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// The URL the pool connects with (for the index detector's own connection).
    url: String,
    /// Waits, holders and exhaustion of the pool: every statement acquires through it.
    vitals: PoolVitals,
    /// The id the next order gets (handed out here; an id another shop on the same database
    /// took moves it past the largest in the table).
    next_order_id: Arc<AtomicI64>,
}

/// A product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Product {
    /// Identifier.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i64,
}

/// A customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Customer {
    /// Identifier.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// An order with its customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Identifier.
    pub id: i64,
    /// Product ordered.
    pub product_id: i64,
    /// Units ordered.
    pub quantity: i64,
    /// Total in cents.
    pub total_cents: i64,
    /// When the order was placed (RFC 3339, UTC).
    pub placed_at: String,
    /// Who placed it.
    pub customer: Customer,
}

/// Why the database could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The URL names no supported database.
    UnsupportedUrl(String),
    /// sqlx failed to connect, create the schema or seed.
    Sqlx(sqlx::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnsupportedUrl(url) => write!(
                f,
                "unsupported database URL {url:?}: use sqlite::memory:, sqlite://FILE or postgres://…"
            ),
            Self::Sqlx(error) => write!(f, "database error: {error}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::UnsupportedUrl(_) => None,
            Self::Sqlx(error) => Some(error),
        }
    }
}

impl From<sqlx::Error> for ConnectError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sqlx(error)
    }
}

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS customers (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS products (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        price_cents BIGINT NOT NULL,
        stock BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS orders (
        id BIGINT PRIMARY KEY,
        customer_id BIGINT NOT NULL REFERENCES customers (id),
        product_id BIGINT NOT NULL REFERENCES products (id),
        quantity BIGINT NOT NULL,
        total_cents BIGINT NOT NULL,
        placed_at TEXT NOT NULL
    )",
    // The indexed twin of `customers.email` (its primary key is its index):
    // `GET /orders/by-email-indexed` looks customers up through it.
    "CREATE TABLE IF NOT EXISTS customer_emails (
        email TEXT PRIMARY KEY,
        customer_id BIGINT NOT NULL REFERENCES customers (id)
    )",
    "CREATE INDEX IF NOT EXISTS orders_customer_id ON orders (customer_id)",
    // Reports built by `POST /reports`' jobs, one per job: the job's id is the key, so a job
    // run twice (its worker died before the run was recorded) records one report.
    "CREATE TABLE IF NOT EXISTS reports (
        job_id TEXT PRIMARY KEY,
        orders BIGINT NOT NULL,
        score TEXT NOT NULL
    )",
];

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects with [`DbOptions::default`], creates the schema if missing, and seeds an
    /// empty database.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, DbOptions::default()).await
    }

    /// Connects with `options`, creates the schema if missing, and seeds an empty database.
    pub async fn connect_with(url: &str, options: DbOptions) -> Result<Self, ConnectError> {
        let backend =
            Backend::of_url(url).ok_or_else(|| ConnectError::UnsupportedUrl(url.to_owned()))?;
        sqlx::any::install_default_drivers();
        let url = match backend {
            // sqlx's `Any` driver parses the URL again for every new connection, and each
            // parse of `sqlite::memory:` names a new database. Name one database for the pool.
            Backend::Sqlite if url == "sqlite::memory:" => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                format!(
                    "sqlite:file:vitals-shop-{}-{n}?mode=memory&cache=shared",
                    std::process::id()
                )
            }
            // Create the file if it does not exist yet.
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            // Every connection cuts a statement at the timeout (unless the URL sets its own).
            Backend::Postgres if !url.contains("statement_timeout") => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!(
                    "{url}{separator}options[statement_timeout]={}",
                    options.statement_timeout.as_millis().max(1)
                )
            }
            _ => url.to_owned(),
        };
        // An in-memory SQLite database lives as long as one connection to it: keep one open.
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect(&url)
            .await?;
        let mut vitals = PoolVitals::new(options.pool_name, pool.clone());
        if let Some(findings) = options.findings {
            vitals = vitals.with_findings(findings);
        }
        let vitals = vitals
            .spawn()
            .map_err(|e| ConnectError::Sqlx(sqlx::Error::Configuration(e.into())))?;
        let db = Self {
            pool,
            backend,
            url,
            vitals,
            next_order_id: Arc::new(AtomicI64::new(0)),
        };
        db.create_schema().await?;
        db.seed_if_empty().await?;
        db.seed_crowd().await?;
        let last: Option<i64> = sqlx::query("SELECT MAX(id) FROM orders")
            .fetch_one(&db.pool)
            .await?
            .try_get(0)?;
        db.next_order_id
            .store(last.unwrap_or(0) + 1, Ordering::Relaxed);
        Ok(db)
    }

    /// The URL the pool connects with (it may hold a password: not in `Debug`), as rewritten
    /// for it (an in-memory SQLite database's
    /// shared name, the statement timeout): what a second connection to the same database uses.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pool's vitals.
    pub fn pool_vitals(&self) -> &PoolVitals {
        &self.vitals
    }

    /// A connection from the pool, acquired through its vitals (counted while waiting, held
    /// by the current route until dropped).
    pub async fn acquire(&self) -> Result<Held<PoolConnection<Any>>, sqlx::Error> {
        self.vitals.acquire(&self.pool).await
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for callers that run their own statements.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_schema(&self) -> Result<(), sqlx::Error> {
        for statement in SCHEMA {
            sqlx::query(statement).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Deterministic data: the same rows on every start and every backend.
    async fn seed_if_empty(&self) -> Result<(), sqlx::Error> {
        let existing: i64 = sqlx::query("SELECT COUNT(*) FROM products")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        if existing > 0 {
            return Ok(());
        }
        let products: Vec<String> = (1..=seed::PRODUCTS)
            .map(|id| {
                let name = format!(
                    "{} {}",
                    ADJECTIVES[index(id, ADJECTIVES.len())],
                    NOUNS[index(id / 6, NOUNS.len())]
                );
                format!(
                    "({id}, '{name} #{id}', {}, {})",
                    price_of(id),
                    5 + (id * 7) % 40
                )
            })
            .collect();
        let customers: Vec<String> = (1..=seed::CUSTOMERS)
            .map(|id| {
                let first = FIRST[index(id, FIRST.len())];
                let last = LAST[index(id / 10, LAST.len())];
                let email = format!(
                    "{}.{}{id}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                );
                format!("({id}, '{first} {last}', '{email}')")
            })
            .collect();
        let orders: Vec<String> = (1..=seed::ORDERS)
            .map(|id| {
                let customer = 1 + (id * 37) % seed::CUSTOMERS;
                let product = 1 + (id * 11) % seed::PRODUCTS;
                let quantity = 1 + id % 4;
                let day = 1 + id % 28;
                let hour = id % 24;
                format!(
                    "({id}, {customer}, {product}, {quantity}, {}, '2026-10-{day:02}T{hour:02}:00:00Z')",
                    quantity * price_of(product)
                )
            })
            .collect();

        let mut tx = self.pool.begin().await?;
        for (table, columns, rows) in [
            ("products", "id, name, price_cents, stock", products),
            ("customers", "id, name, email", customers),
            (
                "orders",
                "id, customer_id, product_id, quantity, total_cents, placed_at",
                orders,
            ),
        ] {
            let sql = format!("INSERT INTO {table} ({columns}) VALUES {}", rows.join(", "));
            // Built from the constants above only: no outside input.
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// The customers without orders, up to [`seed::ALL_CUSTOMERS`], and every customer's row
    /// in `customer_emails`; for a database seeded before they existed too.
    async fn seed_crowd(&self) -> Result<(), sqlx::Error> {
        let count = |sql: &'static str| async move {
            sqlx::query(sql)
                .fetch_one(&self.pool)
                .await?
                .try_get::<i64, _>(0)
        };
        let mut tx = self.pool.begin().await?;
        let customers = count("SELECT COUNT(*) FROM customers").await?;
        for first in
            (customers + 1..=seed::ALL_CUSTOMERS).step_by(usize::try_from(seed::BATCH).unwrap_or(1))
        {
            let last = (first + seed::BATCH - 1).min(seed::ALL_CUSTOMERS);
            let rows: Vec<String> = (first..=last)
                .map(|id| format!("({id}, 'Customer {id}', 'customer{id}@example.com')"))
                .collect();
            let sql = format!(
                "INSERT INTO customers (id, name, email) VALUES {}",
                rows.join(", ")
            );
            // Built from numbers only: no outside input.
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO customer_emails (email, customer_id)
             SELECT email, id FROM customers
             WHERE email NOT IN (SELECT email FROM customer_emails)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// All products, by id.
    pub async fn products(&self) -> Result<Vec<Product>, sqlx::Error> {
        sqlx::query("SELECT id, name, price_cents, stock FROM products ORDER BY id")
            .fetch_all(&mut **self.acquire().await?)
            .await?
            .iter()
            .map(product_from_row)
            .collect()
    }

    /// One product.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, sqlx::Error> {
        sqlx::query("SELECT id, name, price_cents, stock FROM products WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **self.acquire().await?)
            .await?
            .as_ref()
            .map(product_from_row)
            .transpose()
    }

    /// One customer.
    pub async fn customer(&self, id: i64) -> Result<Option<Customer>, sqlx::Error> {
        sqlx::query("SELECT id, name, email FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **self.acquire().await?)
            .await?
            .as_ref()
            .map(customer_from_row)
            .transpose()
    }

    /// All orders with their customers, in one query (a JOIN): the fix for N+1.
    pub async fn orders_joined(&self) -> Result<Vec<Order>, sqlx::Error> {
        sqlx::query(
            "SELECT o.id, o.product_id, o.quantity, o.total_cents, o.placed_at,
                    c.id AS customer_id, c.name AS customer_name, c.email AS customer_email
             FROM orders o JOIN customers c ON c.id = o.customer_id
             ORDER BY o.id",
        )
        .fetch_all(&mut **self.acquire().await?)
        .await?
        .iter()
        .map(|row| {
            let customer = Customer {
                id: row.try_get("customer_id")?,
                name: row.try_get("customer_name")?,
                email: row.try_get("customer_email")?,
            };
            order_from_row(row, customer)
        })
        .collect()
    }

    /// The same orders, built the naive way: one query for the orders, then one query per
    /// order for its customer — the classic N+1.
    pub async fn orders_n_plus_one(&self) -> Result<Vec<Order>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, customer_id, product_id, quantity, total_cents, placed_at
             FROM orders ORDER BY id",
        )
        .fetch_all(&mut **self.acquire().await?)
        .await?;
        let mut orders = Vec::with_capacity(rows.len());
        for row in &rows {
            let customer_id: i64 = row.try_get("customer_id")?;
            let customer = self
                .customer(customer_id)
                .await?
                .ok_or_else(|| sqlx::Error::RowNotFound)?;
            orders.push(order_from_row(row, customer)?);
        }
        Ok(orders)
    }

    /// `(customer_id, total_cents)` of every order, for the report.
    pub async fn order_totals(&self) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        sqlx::query("SELECT customer_id, total_cents FROM orders ORDER BY id")
            .fetch_all(&mut **self.acquire().await?)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("customer_id")?, row.try_get("total_cents")?)))
            .collect()
    }

    /// The customer with this e-mail address, looked up through `customers.email`, which has
    /// no index: the database reads every customer to find one (the missing-index problem).
    pub async fn customer_by_email(&self, email: &str) -> Result<Option<Customer>, sqlx::Error> {
        const SQL: &str = "SELECT id, name, email FROM customers WHERE email = $1";
        let mut connection = self.acquire().await?;
        let row = recorded(
            SQL,
            sqlx::query(SQL)
                .bind(email)
                .fetch_optional(&mut **connection),
        )
        .await?;
        row.as_ref().map(customer_from_row).transpose()
    }

    /// The same lookup through `customer_emails`, whose key is indexed: the fix.
    pub async fn customer_by_email_indexed(
        &self,
        email: &str,
    ) -> Result<Option<Customer>, sqlx::Error> {
        const SQL: &str = "SELECT c.id, c.name, c.email
             FROM customer_emails e JOIN customers c ON c.id = e.customer_id
             WHERE e.email = $1";
        let mut connection = self.acquire().await?;
        let row = recorded(
            SQL,
            sqlx::query(SQL)
                .bind(email)
                .fetch_optional(&mut **connection),
        )
        .await?;
        row.as_ref().map(customer_from_row).transpose()
    }

    /// The orders of one customer (through the index on `orders.customer_id`).
    pub async fn orders_of(&self, customer: &Customer) -> Result<Vec<Order>, sqlx::Error> {
        sqlx::query(
            "SELECT id, product_id, quantity, total_cents, placed_at
             FROM orders WHERE customer_id = $1 ORDER BY id",
        )
        .bind(customer.id)
        .fetch_all(&mut **self.acquire().await?)
        .await?
        .iter()
        .map(|row| order_from_row(row, customer.clone()))
        .collect()
    }

    /// A customer's order count, with the pooled connection held through `slow_call` too —
    /// the pool-exhaustion bug: the connection sits idle in this request while others wait.
    pub async fn order_count_holding<F: std::future::Future>(
        &self,
        customer_id: i64,
        slow_call: impl FnOnce() -> F,
    ) -> Result<i64, sqlx::Error> {
        let mut connection = self.acquire().await?;
        let count = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(&mut **connection)
            .await?
            .try_get("n")?;
        slow_call().await;
        drop(connection);
        Ok(count)
    }

    /// Places an order: `None` when the customer or the product does not exist. A real insert:
    /// run twice, it makes two orders (what `Idempotency-Key` on `POST /orders` prevents).
    pub async fn create_order(
        &self,
        customer_id: i64,
        product_id: i64,
        quantity: i64,
    ) -> Result<Option<Order>, sqlx::Error> {
        let (Some(customer), Some(product)) = (
            self.customer(customer_id).await?,
            self.product(product_id).await?,
        ) else {
            return Ok(None);
        };
        let placed_at = placed_now();
        let total_cents = product.price_cents.saturating_mul(quantity);
        // Ids are handed out here; another shop on the same database hands out the same ones,
        // so a taken id moves the counter past the largest in the table and tries again.
        let mut attempts = 0;
        let id = loop {
            let id = self.next_order_id.fetch_add(1, Ordering::Relaxed);
            let inserted = sqlx::query(
                "INSERT INTO orders (id, customer_id, product_id, quantity, total_cents, placed_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(customer.id)
            .bind(product.id)
            .bind(quantity)
            .bind(total_cents)
            .bind(&placed_at)
            .execute(&mut **self.acquire().await?)
            .await;
            match inserted {
                Ok(_) => break id,
                Err(sqlx::Error::Database(error))
                    if error.kind() == sqlx::error::ErrorKind::UniqueViolation && attempts < 5 =>
                {
                    attempts += 1;
                    let last: Option<i64> = sqlx::query("SELECT MAX(id) FROM orders")
                        .fetch_one(&mut **self.acquire().await?)
                        .await?
                        .try_get(0)?;
                    self.next_order_id
                        .fetch_max(last.unwrap_or(0) + 1, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        };
        Ok(Some(Order {
            id,
            product_id: product.id,
            quantity,
            total_cents,
            placed_at,
            customer,
        }))
    }

    /// Records the report built by job `job_id`: `false` when that job already recorded one
    /// (a second run of the same job).
    pub async fn record_report(&self, job_id: &str, report: &Report) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO reports (job_id, orders, score) VALUES ($1, $2, $3)
             ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(job_id)
        .bind(i64::try_from(report.orders).unwrap_or(i64::MAX))
        .bind(&report.score)
        .execute(&mut **self.acquire().await?)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// How many reports job `job_id` recorded (one, once it ran; never more).
    pub async fn reports_recorded(&self, job_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM reports WHERE job_id = $1")
            .bind(job_id)
            .fetch_one(&mut **self.acquire().await?)
            .await?
            .try_get(0)
    }

    /// How many orders there are.
    pub async fn orders_placed(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM orders")
            .fetch_one(&mut **self.acquire().await?)
            .await?
            .try_get("n")
    }

    /// How many orders a customer placed.
    pub async fn order_count(&self, customer_id: i64) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_one(&mut **self.acquire().await?)
            .await?
            .try_get("n")
    }
}

/// Runs a statement; if it fails, marks it failed in the request's ledger (sqlx's event gives
/// its time, not its error) — as timed out when the database cut it at its timeout.
async fn recorded<T>(
    sql: &str,
    statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let started = std::time::Instant::now();
    statement.await.inspect_err(|error| {
        vitals::queries::record_sqlx_error(sql, started.elapsed(), error);
    })
}

/// Now as RFC 3339 in UTC, to the second (the seed's format).
fn placed_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|now| {
            now.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn order_from_row(row: &AnyRow, customer: Customer) -> Result<Order, sqlx::Error> {
    Ok(Order {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        quantity: row.try_get("quantity")?,
        total_cents: row.try_get("total_cents")?,
        placed_at: row.try_get("placed_at")?,
        customer,
    })
}

fn customer_from_row(row: &AnyRow) -> Result<Customer, sqlx::Error> {
    Ok(Customer {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
    })
}

fn product_from_row(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        price_cents: row.try_get("price_cents")?,
        stock: row.try_get("stock")?,
    })
}

const ADJECTIVES: [&str; 6] = ["Classic", "Large", "Travel", "Ceramic", "Steel", "Tiny"];
const NOUNS: [&str; 4] = ["mug", "teapot", "grinder", "kettle"];
const FIRST: [&str; 10] = [
    "Ada", "Grace", "Alan", "Barbara", "Edsger", "Frances", "Donald", "Radia", "Ken", "Margaret",
];
const LAST: [&str; 6] = [
    "Lovelace", "Hopper", "Turing", "Liskov", "Dijkstra", "Allen",
];

fn price_of(product_id: i64) -> i64 {
    499 + (product_id * 250) % 4500
}

/// `n mod len` as an index; the seed only uses small positive numbers.
fn index(n: i64, len: usize) -> usize {
    usize::try_from(n).unwrap_or(0) % len
}
