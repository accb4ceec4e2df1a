//! The `testing` feature: query budgets on a real SQLite database.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use sqlx::sqlite::SqlitePoolOptions;
use vitals_queries::testing::{
    assert_max_queries, assert_no_n_plus_one, assert_query_count, capture,
};

async fn names(pool: &sqlx::SqlitePool, ids: &[i64]) -> Vec<String> {
    let mut names = Vec::new();
    for id in ids {
        let name: String = sqlx::query_scalar("SELECT name FROM t WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        names.push(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_pass_and_fail_with_the_statements_listed() {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')")
        .execute(&pool)
        .await
        .unwrap();

    let (found, report) = capture(names(&pool, &[1, 2])).await;
    assert_eq!(found, ["a", "b"]);
    assert_query_count(&report, 2);
    assert_max_queries(&report, 3);
    assert_no_n_plus_one(&report);

    let (_, report) = capture(names(&pool, &[1, 2, 3, 4, 5])).await;
    let failure = std::panic::catch_unwind(|| assert_max_queries(&report, 2)).unwrap_err();
    let message = failure.downcast_ref::<String>().unwrap();
    assert!(
        message.starts_with("expected at most 2 queries, 5 ran"),
        "{message}"
    );
    assert!(
        message.contains("  1. SELECT name FROM t WHERE id = $1"),
        "{message}"
    );
    assert!(
        message.contains("  5. SELECT name FROM t WHERE id = $1"),
        "{message}"
    );
    assert!(
        message.contains("N+1: SELECT name FROM t WHERE id = ? ran 5 times"),
        "{message}"
    );
    assert!(std::panic::catch_unwind(|| assert_no_n_plus_one(&report)).is_err());
    assert!(std::panic::catch_unwind(|| assert_query_count(&report, 4)).is_err());
}
