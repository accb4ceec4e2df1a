//! `POST /reports` on the shop over real TCP, on SQLite and PostgreSQL: the report leaves the
//! request (`202`, `Location: /jobs/{id}`), the status route reads the queue's table until the
//! job succeeded; a job that always fails is retried with backoff and dead-lettered after its
//! last attempt; a worker killed mid-job leaves it to another, and its report is recorded once.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use serde_json::Value;
use vitals_integration_tests::{TestShop, postgres_admin_url, test_config};

/// Longer than any job here takes (a dead-lettered one waits 1 s, then 2 s, between runs; an
/// orphaned one is taken back after two missed heartbeats).
const PATIENCE: Duration = Duration::from_secs(30);

/// `POST path`: the 202's body and its `Location`.
async fn enqueue(shop: &TestShop, path: &str) -> (Value, String) {
    let response = shop.client().post(shop.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["state"], "pending");
    assert_eq!(location, format!("/jobs/{}", body["id"].as_str().unwrap()));
    (body, location)
}

/// Polls `location` until the job's state is `state`; its last status.
async fn wait_for(shop: &TestShop, location: &str, state: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let response = shop.get(location).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let waiting = response.headers().contains_key("retry-after");
        let status: Value = response.json().await.unwrap();
        if status["state"] == state {
            return status;
        }
        assert!(
            waiting,
            "a job still on its way says when to ask again: {status}"
        );
        assert!(Instant::now() < deadline, "never {state}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_report_leaves_the_request_and_is_read_from_the_queue(shop: &TestShop) {
    let (accepted, location) = enqueue(shop, "/reports").await;
    let status = wait_for(shop, &location, "succeeded").await;
    assert_eq!(status["id"], accepted["id"]);
    assert_eq!(status["kind"], "shop.report");
    assert_eq!(status["attempts"], 1);
    assert!(status["result"]["orders"].as_u64().unwrap() > 0, "{status}");
    assert!(status["result"]["score"].is_string(), "{status}");
    for time in ["created_at", "started_at", "finished_at"] {
        assert!(status[time].as_str().unwrap().starts_with("20"), "{status}");
    }
    assert!(status["error"].is_null());
    let id = status["id"].as_str().unwrap();
    assert_eq!(shop.shop().db().reports_recorded(id).await.unwrap(), 1);
    // No such job, and what is not a job id at all: 404, the same problem document.
    for path in [
        "/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "/jobs/42",
        "/jobs/..%2f..%2fetc",
    ] {
        let missing = shop.get(path).await;
        assert_eq!(missing.status(), 404, "{path}");
        assert_eq!(
            missing.headers()["content-type"],
            "application/problem+json"
        );
    }
    let bad = shop
        .client()
        .post(shop.url("/reports?hold_ms=999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_a_job_on_sqlite() {
    let shop = TestShop::start_sqlite().await;
    a_report_leaves_the_request_and_is_read_from_the_queue(&shop).await;
    // The queue's metrics, as Prometheus reads them (promtool checks the text).
    let metrics = shop.get("/metrics").await.text().await.unwrap();
    for family in [
        "vitals_jobs_enqueued_total{job_type=\"shop.report\"}",
        "vitals_jobs_wait_duration_seconds_bucket{job_type=\"shop.report\",le=",
        "vitals_jobs_run_duration_seconds_bucket{job_type=\"shop.report\",outcome=\"succeeded\",le=",
    ] {
        assert!(metrics.contains(family), "{family} not in:\n{metrics}");
    }
    vitals_integration_tests::promtool_check(&metrics);
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_a_job_on_postgres() {
    let Some(admin) = postgres_admin_url("a_report_is_a_job_on_postgres") else {
        return;
    };
    let shop = TestShop::start_postgres(&admin).await;
    a_report_leaves_the_request_and_is_read_from_the_queue(&shop).await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_retried_with_backoff_then_dead_lettered() {
    let shop = TestShop::start_sqlite().await;
    let started = Instant::now();
    let (_, location) = enqueue(&shop, "/reports?fail=true").await;
    let status = wait_for(&shop, &location, "failed").await;
    // Three runs (the shop's default), the second and third after their backoff (at least
    // 1 s each: the queue counts seconds).
    assert_eq!(status["attempts"], 3, "{status}");
    assert_eq!(status["max_attempts"], 3);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "retried without backoff"
    );
    assert_eq!(
        status["error"],
        "this report was asked to fail (POST /reports?fail=true)"
    );
    assert!(status["result"].is_null());
    // Never run again: still failed, still three attempts, a while later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later: Value = shop.get(&location).await.json().await.unwrap();
    assert_eq!(
        (later["state"].clone(), later["attempts"].clone()),
        (status["state"].clone(), status["attempts"].clone())
    );
    let counts = shop.shop().jobs().counts().await.unwrap();
    let reports = counts.iter().find(|c| c.kind == "shop.report").unwrap();
    assert_eq!(reports.failed, 1, "{counts:?}");
    // And on the dashboard (its Jobs panel reads the queue every 5 s).
    let id = status["id"].as_str().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let summary = shop.get_json("/_vitals/api/summary", 200).await;
        let jobs = &summary["jobs"];
        let dead = jobs["dead_lettered"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if dead.iter().any(|job| job["id"] == id) {
            let kind = jobs["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kind"] == "shop.report")
                .unwrap();
            assert_eq!(kind["failed"], 1, "{jobs}");
            break;
        }
        assert!(Instant::now() < deadline, "not on the dashboard: {jobs}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shop.shutdown().await;
}

/// A worker dies while its job runs (after the report was recorded, before the run was):
/// another worker takes the job once the first one's heartbeats stop, runs it again, and the
/// report is recorded once.
async fn a_killed_worker_leaves_its_job_to_another(shop: &TestShop) {
    let (accepted, location) = enqueue(shop, "/reports?hold_ms=60000").await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    while shop.shop().db().reports_recorded(&id).await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "the first run never recorded its report"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its run is recorded as started a moment after it starts.
    wait_for(shop, &location, "running").await;
    shop.shop().jobs_worker().unwrap().abort();
    let settings = shop::jobs::JobSettings {
        workers: 1,
        attempts: 3,
        heartbeat: Duration::from_secs(1),
    };
    let second = shop::jobs::spawn_worker(
        shop.shop().jobs(),
        shop.shop().db(),
        shop.shop().workload(),
        settings,
    );
    let status = wait_for(shop, &location, "succeeded").await;
    assert_eq!(status["attempts"], 2, "{status}");
    assert_eq!(shop.shop().db().reports_recorded(&id).await.unwrap(), 1);
    second.shutdown().await;
}

fn with_short_heartbeats() -> shop::config::Config {
    let mut config = test_config();
    config.job_heartbeat_s = 1;
    config.job_workers = 1;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_leaves_its_job_to_another_on_sqlite() {
    let shop = TestShop::start(with_short_heartbeats()).await;
    a_killed_worker_leaves_its_job_to_another(&shop).await;
    shop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_leaves_its_job_to_another_on_postgres() {
    let Some(admin) = postgres_admin_url("a_killed_worker_leaves_its_job_to_another_on_postgres")
    else {
        return;
    };
    let shop = TestShop::start_postgres_with(&admin, with_short_heartbeats()).await;
    a_killed_worker_leaves_its_job_to_another(&shop).await;
    shop.shutdown().await;
}
