//! The idempotency part inside `VitalsLayer`: after the rate limit, before the concurrency
//! limit — a replay takes no permit, every answer is timed and counted, the handler gets the
//! body that was read to fingerprint the request, and a failed run frees its key.
#![cfg(all(
    feature = "idempotency-stack",
    feature = "concurrency",
    feature = "latency"
))]
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vitals::concurrency::ConcurrencyLimitLayer;
use vitals::idempotency::{IdempotencyLayer, IdempotencySettings};
use vitals::{RouteSettings, VitalsLayer};

async fn post_order(app: &Router, key: Option<&str>, body: &'static str) -> Response {
    let mut request = Request::post("/orders");
    if let Some(key) = key {
        request = request.header("idempotency-key", format!("\"{key}\""));
    }
    app.clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap()
}

async fn text(response: Response) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `/orders` counts its runs and echoes the body it got; `/gate` holds the one permit until
/// `gate` is opened.
fn shop(
    vitals: &VitalsLayer,
    runs: &Arc<AtomicUsize>,
    gate: &Arc<tokio::sync::Semaphore>,
) -> Router {
    let runs = Arc::clone(runs);
    let gate = Arc::clone(gate);
    Router::new()
        .route(
            "/orders",
            post(move |body: String| {
                let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                async move { (StatusCode::CREATED, format!("order {run}: {body}")) }
            }),
        )
        .route(
            "/gate",
            get(move || async move {
                gate.acquire().await.unwrap().forget();
                "through"
            }),
        )
        .layer(vitals.clone())
}

#[tokio::test]
async fn a_replay_takes_no_permit_and_every_answer_is_timed() {
    let vitals = VitalsLayer::builder()
        .with_concurrency_limit(ConcurrencyLimitLayer::new(1).with_max_queued(0))
        .with_idempotency(IdempotencyLayer::new())
        .with_route(
            "/orders",
            RouteSettings::new().with_idempotency(IdempotencySettings::new().required()),
        )
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let app = shop(&vitals, &runs, &gate);

    // A required key missing: a problem document, the handler never runs, the answer timed.
    let missing = post_order(&app, None, "two lamps").await;
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&missing, "content-type"),
        Some("application/problem+json")
    );
    assert!(
        header(&missing, "server-timing")
            .unwrap()
            .contains("total;dur=")
    );
    text(missing).await;

    // The first run gets the body that was read to fingerprint it.
    let first = post_order(&app, Some("order-1"), "two lamps").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(header(&first, "idempotent-replayed").is_none());
    assert_eq!(text(first).await, "order 1: two lamps");

    // The one permit is held elsewhere: a replay is still answered, a new key is refused.
    let holder = {
        let app = app.clone();
        tokio::spawn(async move {
            let response = app
                .oneshot(Request::get("/gate").body(Body::empty()).unwrap())
                .await
                .unwrap();
            text(response).await
        })
    };
    let limit = vitals.limiter().unwrap();
    while limit.snapshot().in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let replay = post_order(&app, Some("order-1"), "two lamps").await;
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(header(&replay, "idempotent-replayed"), Some("true"));
    // Its own Server-Timing, not the first run's stored beside it.
    assert_eq!(replay.headers().get_all("server-timing").iter().count(), 1);
    assert_eq!(text(replay).await, "order 1: two lamps");
    let refused = post_order(&app, Some("order-2"), "a chair").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    text(refused).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The refusal freed its key: once the permit is back, the same key runs.
    gate.add_permits(1);
    assert_eq!(holder.await.unwrap(), "through");
    let second = post_order(&app, Some("order-2"), "a chair").await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(text(second).await, "order 2: a chair");

    // The same key with another body: 422, and nothing runs.
    let mismatch = post_order(&app, Some("order-1"), "three lamps").await;
    assert_eq!(mismatch.status(), StatusCode::UNPROCESSABLE_ENTITY);
    text(mismatch).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(limit.snapshot().in_flight, 0);

    // Latency counted what each client got: two runs and a replay, a 400, a 422, a 503.
    let latency = vitals
        .latency()
        .unwrap()
        .snapshot(vitals::latency::Window::OneMinute);
    let count = |status: u16| -> u64 {
        latency
            .series
            .iter()
            .filter(|s| s.route == "/orders" && s.status == Some(status))
            .map(|s| s.count)
            .sum()
    };
    assert_eq!(
        [count(201), count(400), count(422), count(503)],
        [3, 1, 1, 1],
        "{latency:?}"
    );
}

#[tokio::test]
async fn a_failed_run_frees_its_key_and_a_stack_without_the_part_passes_keys_through() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let flaky = {
        let attempts = Arc::clone(&attempts);
        post(move || {
            let attempt = attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt == 0 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "try again")
                } else {
                    (StatusCode::CREATED, "paid")
                }
            }
        })
    };
    let vitals = VitalsLayer::builder()
        .with_idempotency(IdempotencyLayer::new())
        .build()
        .unwrap();
    let app = Router::new().route("/orders", flaky).layer(vitals);
    let failed = post_order(&app, Some("pay-1"), "{}").await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    text(failed).await;
    let retried = post_order(&app, Some("pay-1"), "{}").await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(text(retried).await, "paid");
    let replayed = post_order(&app, Some("pay-1"), "{}").await;
    assert_eq!(header(&replayed, "idempotent-replayed"), Some("true"));
    assert_eq!(attempts.load(Ordering::SeqCst), 2);

    // Without the part, a key is the handler's business.
    let plain = VitalsLayer::builder().build().unwrap();
    let counted = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let app = shop(&plain, &counted, &gate);
    for _ in 0..2 {
        let response = post_order(&app, Some("order-1"), "x").await;
        assert!(header(&response, "idempotent-replayed").is_none());
        text(response).await;
    }
    assert_eq!(counted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_key_is_freed_when_the_handler_never_ran_and_spent_when_the_deadline_cut_it() {
    let vitals = VitalsLayer::builder()
        .with_concurrency_limit(
            ConcurrencyLimitLayer::new(1)
                .with_max_queued(1)
                .with_max_wait(Duration::from_secs(5)),
        )
        .with_idempotency(IdempotencyLayer::new())
        .with_route(
            "/orders/slow",
            RouteSettings::new().with_timeout(Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let slow_runs = Arc::clone(&runs);
    let app = shop(&vitals, &runs, &gate).route(
        "/orders/slow",
        post(move || {
            slow_runs.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "too late"
            }
        })
        .layer(vitals.clone()),
    );

    // Waiting for the permit, then dropped (the client left): the handler never ran.
    let holder = {
        let app = app.clone();
        tokio::spawn(async move {
            let request = Request::get("/gate").body(Body::empty()).unwrap();
            text(app.oneshot(request).await.unwrap()).await
        })
    };
    let limit = vitals.limiter().unwrap();
    while limit.snapshot().in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let waiting = tokio::time::timeout(
        Duration::from_millis(50),
        post_order(&app, Some("left-early"), "a lamp"),
    )
    .await;
    assert!(waiting.is_err(), "it waited in the queue");
    gate.add_permits(1);
    assert_eq!(holder.await.unwrap(), "through");
    // Its key is free: the same request runs.
    let retried = post_order(&app, Some("left-early"), "a lamp").await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(text(retried).await, "order 1: a lamp");

    // Cut by the deadline after its handler started: the key is spent, never run again.
    let request = |app: &Router| {
        app.clone().oneshot(
            Request::post("/orders/slow")
                .header("idempotency-key", "\"slow-1\"")
                .body(Body::from("x"))
                .unwrap(),
        )
    };
    let cut = request(&app).await.unwrap();
    assert!(cut.status().is_server_error(), "{}", cut.status());
    text(cut).await;
    let again = request(&app).await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    text(again).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "one order, one slow run");
}
