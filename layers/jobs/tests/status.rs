//! The status route on a real SQLite database: a job's status under the access rule the
//! route chooses (a refused reader gets the same 404 as for no job), and a 503 — not a 500 —
//! when the database is gone.
#![cfg(all(feature = "sqlite", feature = "axum"))]
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqlitePoolOptions;
use tower::ServiceExt;
use vitals_jobs::{Job, JobStore, StatusRoute};

#[derive(Serialize, Deserialize)]
struct Export {
    owner: String,
}

impl Job for Export {
    const KIND: &'static str = "test.export";
    type Output = u32;
}

async fn get(app: &axum::Router, path: &str, owner: &str) -> (StatusCode, serde_json::Value) {
    let request = Request::get(path)
        .header("x-owner", owner)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn the_access_rule_decides_and_a_lost_database_is_a_503() {
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect("sqlite:file:vitals-jobs-status?mode=memory&cache=shared")
        .await
        .unwrap();
    let store = JobStore::sqlite(&pool)
        .await
        .unwrap()
        .with_status_path("/exports/")
        .unwrap();
    let accepted = store
        .accept(Export {
            owner: "ada".to_owned(),
        })
        .await
        .unwrap();
    assert!(accepted.location().starts_with("/exports/"));
    let app: axum::Router = StatusRoute::new(&store)
        .with_access(|head, status| {
            // The owner of the job, as an authentication layer would have told it.
            head.headers
                .get("x-owner")
                .is_some_and(|owner| owner == "ada")
                && status.kind == "test.export"
        })
        .router();
    let (status, body) = get(&app, accepted.location(), "ada").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["state"], "pending");
    assert_eq!(body["attempts"], 0);
    assert_eq!(body["max_attempts"], 5);
    let (status, refused) = get(&app, accepted.location(), "mallory").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, missing) = get(&app, "/exports/01ARZ3NDEKTSV4RRFFQ69G5FAV", "ada").await;
    assert_eq!(
        refused, missing,
        "a refused reader learns nothing more than of no job"
    );
    assert!(
        JobStore::sqlite(&pool)
            .await
            .unwrap()
            .with_max_attempts(0)
            .is_err()
    );
    for bad in ["jobs", "/jobs/{id}", "/jobs?x", "/j obs"] {
        assert!(store.clone().with_status_path(bad).is_err(), "{bad}");
    }

    pool.close().await;
    let (status, body) = get(&app, accepted.location(), "ada").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], 503);
}
