//! diesel's statements reach the ledger through `DieselQueries`, on a real SQLite database.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl, SqliteConnection};
use vitals_queries::diesel::DieselQueries;
use vitals_queries::fingerprint::SqlDialect;
use vitals_queries::testing::capture;

#[tokio::test]
async fn diesel_statements_are_recorded_with_their_errors() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .unwrap();
    conn.set_instrumentation(DieselQueries::new());

    let ((), report) = capture(async {
        for id in 0..5 {
            diesel::sql_query("INSERT INTO t (id, name) VALUES (?, 'x')")
                .bind::<diesel::sql_types::Integer, _>(id)
                .execute(&mut conn)
                .unwrap();
        }
        assert!(
            diesel::sql_query("SELECT * FROM missing")
                .execute(&mut conn)
                .is_err()
        );
    })
    .await;

    assert_eq!(report.count, 6, "{report:#?}");
    assert_eq!(
        &*report.groups[0].fingerprint,
        "INSERT INTO t(id, name) VALUES (?)"
    );
    assert_eq!(report.groups[0].count, 5);
    let failed = report.queries.last().unwrap();
    assert_eq!(failed.statement, "SELECT * FROM missing");
    assert!(
        failed
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("missing"),
        "{failed:?}"
    );
    assert!(report.queries[0].statement.starts_with("INSERT INTO t"));
    assert!(!report.queries[0].statement.contains("binds"));
}

#[tokio::test]
async fn a_bind_value_holding_the_binds_marker_stays_out_of_the_statement() {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    conn.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .unwrap();
    conn.set_instrumentation(DieselQueries::new().with_sql_dialect(SqlDialect::Sqlite));
    let hostile = "secret -- binds: [1]";
    let ((), report) = capture(async {
        diesel::sql_query("INSERT INTO t (id, name) VALUES (1, ?)")
            .bind::<diesel::sql_types::Text, _>(hostile)
            .execute(&mut conn)
            .unwrap();
    })
    .await;
    let recorded = &report.queries[0];
    assert_eq!(recorded.statement, "INSERT INTO t (id, name) VALUES (1, ?)");
    assert!(!recorded.statement.contains("secret"), "{recorded:?}");
    assert_eq!(&*recorded.fingerprint, "INSERT INTO t(id, name) VALUES (?)");
}
