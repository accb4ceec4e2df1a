//! `IdempotencyLayer` on an axum router: what each kind of request gets, and how often the
//! handler runs.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::post;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vitals_idempotency::{IDEMPOTENT_REPLAYED, IdempotencyLayer, IdempotencySettings};

#[derive(Clone, Default)]
struct Runs(Arc<AtomicU64>);

impl Runs {
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// `/orders` creates an order (counted) after `ms` of work; `/flaky` fails the first time;
/// `/big` answers 2 KiB; `/cookie` sets a cookie.
fn app(layer: IdempotencyLayer, runs: Runs) -> Router {
    Router::new()
        .route(
            "/orders",
            post(|State(runs): State<Runs>, body: Bytes| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let n = runs.0.fetch_add(1, Ordering::SeqCst) + 1;
                let order = format!(
                    "{{\"id\":{n},\"request\":{}}}",
                    String::from_utf8_lossy(&body)
                );
                (
                    StatusCode::CREATED,
                    [(header::LOCATION, format!("/orders/{n}"))],
                    order,
                )
            }),
        )
        .route(
            "/flaky",
            post(|State(runs): State<Runs>| async move {
                if runs.0.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                } else {
                    (StatusCode::OK, "done")
                }
            }),
        )
        .route(
            "/big",
            post(|State(runs): State<Runs>| async move {
                runs.0.fetch_add(1, Ordering::SeqCst);
                "x".repeat(2_048)
            }),
        )
        .route(
            "/cookie",
            post(|State(runs): State<Runs>| async move {
                runs.0.fetch_add(1, Ordering::SeqCst);
                ([(header::SET_COOKIE, "session=secret")], "ok")
            }),
        )
        .route("/open", post(|| async { "open" }).get(|| async { "read" }))
        .route_layer(layer)
        .with_state(runs)
}

fn request(path: &str, key: Option<&str>, body: &'static str) -> Request<Body> {
    let mut builder = Request::post(path);
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    builder.body(Body::from(body)).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Response<()>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (head, body) = response.into_parts();
    let text = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (head.status, Response::from_parts(head, ()), text)
}

#[tokio::test]
async fn the_first_request_runs_and_a_retry_gets_its_answer() {
    let runs = Runs::default();
    let app = app(IdempotencyLayer::new(), runs.clone());
    let (status, first, body) = send(&app, request("/orders", Some("\"k1\""), "{\"q\":1}")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(first.headers().get(IDEMPOTENT_REPLAYED).is_none());
    let (status, again, replayed) =
        send(&app, request("/orders", Some("\"k1\""), "{\"q\":1}")).await;
    assert_eq!(
        (status, replayed.as_str()),
        (StatusCode::CREATED, body.as_str())
    );
    assert_eq!(again.headers()[IDEMPOTENT_REPLAYED], "true");
    assert_eq!(again.headers()[header::LOCATION], "/orders/1");
    assert_eq!(runs.get(), 1, "one order");
    // Without a key, every request runs (the key is optional by default).
    send(&app, request("/orders", None, "{\"q\":1}")).await;
    assert_eq!(runs.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_get_409_and_the_handler_runs_once() {
    let runs = Runs::default();
    let app = app(IdempotencyLayer::new(), runs.clone());
    let answers: Vec<_> = (0..50)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(
                async move { send(&app, request("/orders", Some("\"same\""), "{}")).await },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for answer in answers {
        let (status, head, _) = answer.await.unwrap();
        let replayed = head.headers().contains_key(IDEMPOTENT_REPLAYED);
        statuses.push((status, replayed));
    }
    assert_eq!(runs.get(), 1, "{statuses:?}");
    let first_runs = statuses
        .iter()
        .filter(|(s, r)| *s == StatusCode::CREATED && !r)
        .count();
    assert_eq!(first_runs, 1);
    assert!(
        statuses.iter().all(|(s, r)| *s == StatusCode::CONFLICT
            || *s == StatusCode::CREATED && (*r || first_runs == 1)),
        "{statuses:?}"
    );
    assert!(statuses.iter().any(|(s, _)| *s == StatusCode::CONFLICT));
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_422_and_a_missing_one_400_where_required() {
    let runs = Runs::default();
    let app = app(
        IdempotencyLayer::new().with_route("/orders", IdempotencySettings::new().required()),
        runs.clone(),
    );
    send(&app, request("/orders", Some("\"k\""), "{\"q\":1}")).await;
    let (status, head, body) = send(&app, request("/orders", Some("\"k\""), "{\"q\":2}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        head.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["status"], 422);
    let (status, _, body) = send(&app, request("/orders", None, "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for bad in ["k", "\"\"", "?1"] {
        let (status, _, _) = send(&app, request("/orders", Some(bad), "{}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(runs.get(), 1);
    // Unprotected: a method the layer leaves alone.
    let get = Request::get("/open")
        .header("idempotency-key", "\"k\"")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, get).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_server_error_frees_the_key_and_a_too_large_answer_is_not_replayed() {
    let runs = Runs::default();
    let app = app(IdempotencyLayer::new().with_max_body(1_024), runs.clone());
    let (status, _, _) = send(&app, request("/flaky", Some("\"f\""), "")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _, body) = send(&app, request("/flaky", Some("\"f\""), "")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "done"),
        "the retry ran"
    );
    let (status, _, body) = send(&app, request("/big", Some("\"b\""), "")).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 2_048));
    let (status, _, _) = send(&app, request("/big", Some("\"b\""), "")).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "ran, not kept: never a second run"
    );
    assert_eq!(runs.get(), 3);
    let too_big: &'static str = "y".repeat(2_000).leak();
    let (status, _, _) = send(&app, request("/orders", Some("\"t\""), too_big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn keys_are_scoped_per_principal_and_cookies_are_not_replayed() {
    let runs = Runs::default();
    let app = app(
        IdempotencyLayer::new()
            .with_principal(|head| Some(head.headers.get("x-user")?.to_str().ok()?.to_owned())),
        runs.clone(),
    );
    for user in ["alice", "bob"] {
        let mut request = request("/cookie", Some("\"same\""), "");
        request
            .headers_mut()
            .insert("x-user", user.parse().unwrap());
        let (_, head, _) = send(&app, request).await;
        assert_eq!(head.headers()[header::SET_COOKIE], "session=secret");
    }
    assert_eq!(runs.get(), 2, "one key, two clients: two operations");
    let mut again = request("/cookie", Some("\"same\""), "");
    again
        .headers_mut()
        .insert("x-user", "alice".parse().unwrap());
    let (status, head, _) = send(&app, again).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(head.headers()[IDEMPOTENT_REPLAYED], "true");
    assert!(
        !head.headers().contains_key(header::SET_COOKIE),
        "a cookie is one client's, once"
    );
    assert_eq!(runs.get(), 2);
}

#[tokio::test]
async fn a_handler_dropped_mid_work_is_never_run_again_and_try_again_answers_free_the_key() {
    let runs = Runs::default();
    let counted = runs.clone();
    let slow = Router::new()
        .route(
            "/transfer",
            post(move || {
                let counted = counted.clone();
                async move {
                    counted.0.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "moved"
                }
            }),
        )
        .route(
            "/busy",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        )
        .route_layer(IdempotencyLayer::new());
    // The client gives up after 50 ms: the handler's future is dropped after it started.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(50),
        send(&slow, request("/transfer", Some("\"t1\""), "")),
    )
    .await;
    assert!(gave_up.is_err());
    let (status, _, body) = send(&slow, request("/transfer", Some("\"t1\""), "")).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "may have run: never again ({body})"
    );
    assert_eq!(runs.get(), 1);
    // 429 says "try again": the key is free.
    for _ in 0..2 {
        let (status, head, _) = send(&slow, request("/busy", Some("\"b1\""), "")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(!head.headers().contains_key(IDEMPOTENT_REPLAYED));
    }
}

#[tokio::test]
async fn without_a_principal_rule_credentials_scope_the_key() {
    let runs = Runs::default();
    let app = app(IdempotencyLayer::new(), runs.clone());
    for token in ["Bearer alice", "Bearer bob"] {
        let mut request = request("/orders", Some("\"shared\""), "{}");
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, token.parse().unwrap());
        let (status, head, _) = send(&app, request).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(!head.headers().contains_key(IDEMPOTENT_REPLAYED), "{token}");
    }
    assert_eq!(runs.get(), 2, "bob never gets alice's order");
}
