//! Plans from SQLite: `EXPLAIN QUERY PLAN` on a read-only connection of the detector's own.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

use super::{Explain, ExplainFuture, OwnConnection, ScannedTable, plan};

/// Asks SQLite for plans (`EXPLAIN QUERY PLAN`), on a connection of its own opened read-only
/// (a file; a shared-cache in-memory database ignores the flag) and with `PRAGMA query_only`
/// set: it can read the schema and the table sizes, and write nothing — the detector hands it
/// single read-only statements only ([`plan::is_read_only`]). A connection that failed is
/// opened again at the next plan.
#[derive(Debug)]
pub struct SqliteExplainer {
    options: SqliteConnectOptions,
    connection: OwnConnection<SqliteConnection>,
}

impl SqliteExplainer {
    /// Opens the detector's connection to the database at `url` (`sqlite://shop.db`, or the
    /// application's `sqlite:file:NAME?mode=memory&cache=shared` for a shared in-memory
    /// database).
    ///
    /// # Errors
    ///
    /// The URL is invalid or the database cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_with(SqliteConnectOptions::from_str(url)?).await
    }

    /// Opens the detector's connection with `options`, read-only (its statements are not
    /// logged, so they never reach a ledger or the logs).
    ///
    /// # Errors
    ///
    /// The database cannot be opened.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let options = options.read_only(true).disable_statement_logging();
        let connection = open(&options).await?;
        Ok(Self {
            options,
            connection: OwnConnection::new(connection),
        })
    }
}

async fn open(options: &SqliteConnectOptions) -> Result<SqliteConnection, sqlx::Error> {
    let mut connection = options.connect().await?;
    sqlx::raw_sql("PRAGMA query_only = ON")
        .execute(&mut connection)
        .await?;
    Ok(connection)
}

impl Explain for SqliteExplainer {
    fn explain<'a>(&'a self, statement: &'a str) -> ExplainFuture<'a> {
        Box::pin(self.connection.plans(
            async || open(&self.options).await,
            async |connection| plans(connection, statement).await,
        ))
    }
}

async fn plans(
    connection: &mut SqliteConnection,
    statement: &str,
) -> Result<Vec<ScannedTable>, sqlx::Error> {
    // Parameters left unbound are NULL: the plan does not depend on their values.
    let sql = format!("EXPLAIN QUERY PLAN {statement}");
    let lines: Vec<String> = sqlx::raw_sql(AssertSqlSafe(sql))
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .filter_map(|row| row.try_get::<String, _>("detail").ok())
        .collect();
    let mut tables = Vec::new();
    for scan in plan::sqlite_full_scans(statement, &lines) {
        let rows = table_rows(connection, &scan.table).await?;
        tables.push(ScannedTable { scan, rows });
    }
    Ok(tables)
}

/// The table's size: its largest rowid (one step down the b-tree), else a count.
async fn table_rows(connection: &mut SqliteConnection, table: &str) -> Result<u64, sqlx::Error> {
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let largest = sqlx::raw_sql(AssertSqlSafe(format!("SELECT MAX(rowid) FROM {quoted}")))
        .fetch_one(&mut *connection)
        .await
        .and_then(|row| row.try_get::<Option<i64>, _>(0));
    let rows = match largest {
        Ok(largest) => largest.unwrap_or(0),
        // A WITHOUT ROWID table.
        Err(_) => sqlx::raw_sql(AssertSqlSafe(format!("SELECT COUNT(*) FROM {quoted}")))
            .fetch_one(&mut *connection)
            .await?
            .try_get::<i64, _>(0)?,
    };
    Ok(u64::try_from(rows).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn database() -> (sqlx::SqlitePool, String) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = format!(
            "sqlite:file:vitals-explain-{}-{n}?mode=memory&cache=shared",
            std::process::id()
        );
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for sql in [
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, login TEXT NOT NULL)",
            "CREATE INDEX customers_login ON customers (login)",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO customers SELECT i, 'c' || i || '@example.com', 'c' || i FROM n",
        ] {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        (pool, url)
    }

    #[tokio::test]
    async fn an_unindexed_filter_is_a_full_scan_and_an_indexed_one_is_not() {
        let (_pool, url) = database().await;
        let explainer = SqliteExplainer::connect(&url).await.unwrap();
        let tables = explainer
            .explain("SELECT id FROM customers WHERE email = $1")
            .await
            .unwrap();
        assert_eq!(tables.len(), 1, "{tables:?}");
        assert_eq!(tables[0].scan.table, "customers");
        assert_eq!(tables[0].scan.columns, ["email"]);
        assert_eq!(tables[0].rows, 3_000);
        let indexed = explainer
            .explain("SELECT id FROM customers WHERE login = $1")
            .await
            .unwrap();
        assert!(indexed.is_empty(), "{indexed:?}");
    }

    #[tokio::test]
    async fn the_connection_writes_nothing_and_bad_statements_are_errors() {
        let (pool, url) = database().await;
        let explainer = SqliteExplainer::connect(&url).await.unwrap();
        assert!(
            explainer
                .explain("SELECT * FROM nowhere WHERE a = 1")
                .await
                .is_err()
        );
        // A second statement never reaches the connection (the detector explains one
        // statement, no comment); a write that did is refused by `query_only`. (A shared-cache
        // in-memory database ignores the read-only open flag: `query_only` is what holds.)
        assert!(!plan::is_read_only(
            "SELECT 1; PRAGMA query_only = OFF; DELETE FROM customers"
        ));
        let mut slot = explainer.connection.slot.lock().await;
        let connection = slot.as_mut().unwrap();
        let write = sqlx::raw_sql("DELETE FROM customers")
            .execute(&mut *connection)
            .await;
        assert!(write.is_err(), "query_only");
        drop(slot);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM customers")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 3_000);
    }
}
