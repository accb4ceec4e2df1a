//! Plans from PostgreSQL: a generic plan of the statement, on a read-only connection of the
//! detector's own.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

use super::{Explain, ExplainFuture, OwnConnection, ScannedTable, plan};

/// The prepared statement's name on the detector's connection.
const PREPARED: &str = "vitals_explain";

/// Asks PostgreSQL for plans, on a connection of its own with
/// `default_transaction_read_only`, a 2 s `statement_timeout` and
/// `plan_cache_mode = force_generic_plan`.
///
/// sqlx's events carry the statement text without its parameters, and PostgreSQL 15 has no
/// `EXPLAIN (GENERIC_PLAN)`; so the statement is prepared (`PREPARE vitals_explain AS …`),
/// explained as executed with `NULL` for every parameter — the generic plan, which does not
/// depend on the values — and deallocated. `EXPLAIN` without `ANALYZE` runs nothing.
#[derive(Debug)]
pub struct PostgresExplainer {
    options: PgConnectOptions,
    connection: OwnConnection<PgConnection>,
}

impl PostgresExplainer {
    /// Opens the detector's connection to `url` (`postgres://…`).
    ///
    /// # Errors
    ///
    /// The URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Self::connect_with(PgConnectOptions::from_str(url)?).await
    }

    /// Opens the detector's connection with `options` (its statements are not logged). A
    /// connection that failed is opened again at the next plan.
    ///
    /// # Errors
    ///
    /// The server cannot be reached or refuses the settings.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, sqlx::Error> {
        let options = options
            .options([
                ("default_transaction_read_only", "on"),
                ("plan_cache_mode", "force_generic_plan"),
                ("statement_timeout", "2s"),
            ])
            .application_name("vitals-index-detector")
            .disable_statement_logging();
        let connection = open(&options).await?;
        Ok(Self {
            options,
            connection: OwnConnection::new(connection),
        })
    }
}

async fn open(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    let mut connection = options.connect().await?;
    // Checked, not assumed: the server applied the settings.
    let read_only: String = sqlx::raw_sql("SHOW default_transaction_read_only")
        .fetch_one(&mut connection)
        .await?
        .try_get(0)?;
    if read_only != "on" {
        return Err(sqlx::Error::Configuration(
            "the index detector's connection is not read-only".into(),
        ));
    }
    Ok(connection)
}

impl Explain for PostgresExplainer {
    fn explain<'a>(&'a self, statement: &'a str) -> ExplainFuture<'a> {
        Box::pin(self.connection.plans(
            async || open(&self.options).await,
            async |connection| plans(connection, statement).await,
        ))
    }
}

async fn plans(
    connection: &mut PgConnection,
    statement: &str,
) -> Result<Vec<ScannedTable>, sqlx::Error> {
    // A statement left prepared by a plan that failed half-way goes first.
    sqlx::raw_sql("DEALLOCATE ALL")
        .execute(&mut *connection)
        .await?;
    let prepare = format!("PREPARE {PREPARED} AS {statement}");
    sqlx::raw_sql(AssertSqlSafe(prepare))
        .execute(&mut *connection)
        .await?;
    let parameters = plan::placeholder_count(statement);
    let explain = if parameters == 0 {
        format!("EXPLAIN (FORMAT JSON) EXECUTE {PREPARED}")
    } else {
        let nulls = vec!["NULL"; parameters].join(", ");
        format!("EXPLAIN (FORMAT JSON) EXECUTE {PREPARED}({nulls})")
    };
    let row = sqlx::raw_sql(AssertSqlSafe(explain))
        .fetch_one(&mut *connection)
        .await?;
    // The plan is `json`, sent as text by the simple query protocol.
    let text: String = row.try_get_unchecked(0)?;
    let plan: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
    let mut tables = Vec::new();
    for scan in plan::postgres_full_scans(&plan) {
        let rows = table_rows(connection, &scan.table).await?;
        tables.push(ScannedTable { scan, rows });
    }
    Ok(tables)
}

/// The table's size: the planner's estimate (`pg_class.reltuples`), else a count for a table
/// never analyzed.
async fn table_rows(connection: &mut PgConnection, table: &str) -> Result<u64, sqlx::Error> {
    let estimate: Option<f32> =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)")
            .bind(format!("\"{}\"", table.replace('"', "\"\"")))
            .persistent(false)
            .fetch_optional(&mut *connection)
            .await?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    match estimate {
        Some(rows) if rows >= 0.0 => Ok(rows as u64),
        _ => {
            let quoted = format!("\"{}\"", table.replace('"', "\"\""));
            let count: i64 = sqlx::raw_sql(AssertSqlSafe(format!("SELECT count(*) FROM {quoted}")))
                .fetch_one(&mut *connection)
                .await?
                .try_get(0)?;
            Ok(u64::try_from(count).unwrap_or(0))
        }
    }
}
