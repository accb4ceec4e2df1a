//! `vitals::telemetry::JsonLogLayer`, the one layer `vitals::telemetry` installs for JSON logs:
//! its lines carry the request's ids, its filter decides what is written, and the query events
//! it reads (from sqlx-sqlite's worker thread, inside the request span) reach the ledger.
#![cfg(all(feature = "telemetry", feature = "queries"))]
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use tower::ServiceExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use vitals::VitalsLayer;
use vitals::queries::fingerprint::SqlDialect;
use vitals::telemetry::JsonLogLayer;

/// Every line written, shared with the writer the layer makes per line.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// The lines written so far, each parsed (a line that is not JSON fails the test).
    fn parsed(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
            .collect()
    }

    /// The lines whose message is `message`.
    fn with_message(&self, message: &str) -> Vec<Value> {
        self.parsed()
            .into_iter()
            .filter(|line| line["message"] == message)
            .collect()
    }
}

/// The global subscriber of this binary (sqlx-sqlite reports from its worker thread, where only
/// a global subscriber sees the events): the layer at `info`, its lines in the returned buffer.
fn global_lines() -> &'static Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = JsonLogLayer::new(move || writer.clone(), EnvFilter::new("info"))
            .with_sql_dialect(SqlDialect::Sqlite);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .unwrap();
        lines
    })
}

async fn pool() -> SqlitePool {
    // One connection opened here, so the request's count holds only its own statements.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
    pool
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn lines_carry_the_request_ids_and_the_query_events_reach_the_ledger() {
    let lines = global_lines();
    let app = Router::new()
        .route(
            "/items",
            get(|State(pool): State<SqlitePool>| async move {
                for _ in 0..2 {
                    sqlx::query("SELECT 1").fetch_one(&pool).await.unwrap();
                }
                tracing::info!(count = 2, "listed the items");
                tracing::debug!("below the filter");
                "[]"
            }),
        )
        .with_state(pool().await)
        .layer(VitalsLayer::new());
    let response = app
        .oneshot(
            Request::get("/items")
                .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
                .header("x-request-id", "order-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let server_timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    response.into_body().collect().await.unwrap();

    // The statements sqlx-sqlite ran on its worker thread were counted for the request.
    assert!(
        server_timing.contains("desc=\"2 queries\""),
        "{server_timing}"
    );
    let listed = lines.with_message("listed the items");
    assert_eq!(listed.len(), 1, "{:?}", lines.parsed());
    let line = &listed[0];
    assert_eq!(line["trace_id"], TRACE_ID);
    assert_eq!(line["request_id"], "order-42");
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(line["span"], "request");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["count"], 2);
    assert!(lines.with_message("below the filter").is_empty());
    // sqlx's DEBUG statement events are read for the ledger, not written.
    assert!(
        lines
            .parsed()
            .iter()
            .all(|line| line["target"] != "sqlx::query"),
        "{:?}",
        lines.parsed()
    );
}

#[test]
fn the_filter_decides_what_is_written_and_a_warning_still_carries_the_ids() {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry().with(JsonLogLayer::new(
        move || writer.clone(),
        EnvFilter::new("warn,json_logs::noisy=debug"),
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let app = Router::new()
                .route(
                    "/pay",
                    get(|| async {
                        tracing::info!("hidden at warn");
                        tracing::warn!("card declined");
                        tracing::debug!(target: "json_logs::noisy", "shown by its directive");
                        "declined"
                    }),
                )
                .layer(VitalsLayer::new());
            let response = app
                .oneshot(
                    Request::get("/pay")
                        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            response.into_body().collect().await.unwrap();
        });
    });
    assert!(lines.with_message("hidden at warn").is_empty());
    let declined = lines.with_message("card declined");
    assert_eq!(declined.len(), 1, "{:?}", lines.parsed());
    assert_eq!(declined[0]["trace_id"], TRACE_ID);
    assert_eq!(declined[0]["level"], "WARN");
    // The INFO request span is hidden at `warn`: the line names no span, as the fmt layer
    // behind the same filter would not.
    assert!(declined[0].get("span").is_none(), "{:?}", declined[0]);
    assert_eq!(lines.with_message("shown by its directive").len(), 1);
}
