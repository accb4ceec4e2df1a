//! Retries against a real downstream over TCP (an axum server on a loopback port), through
//! hyper-util's client: the budget bounds the extra load, a POST without `Idempotency-Key` is
//! never sent twice, `Retry-After` is honoured up to its cap, the deadline is never passed.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};
use vitals_client::RetryLayer;
use vitals_client::retry::Retry;
use vitals_core::deadline::RequestDeadline;

#[derive(Default)]
struct Downstream {
    calls: AtomicUsize,
}

async fn start(downstream: Arc<Downstream>) -> String {
    let unavailable = |State(d): State<Arc<Downstream>>| async move {
        d.calls.fetch_add(1, Ordering::SeqCst);
        StatusCode::SERVICE_UNAVAILABLE
    };
    let app = Router::new()
        .route("/fail", get(unavailable).post(unavailable))
        .route(
            // Fails once asking for `Retry-After: {seconds}`, then answers.
            "/after/{seconds}",
            get(
                |State(d): State<Arc<Downstream>>, Path(seconds): Path<u64>| async move {
                    if d.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        let mut headers = HeaderMap::new();
                        headers.insert("retry-after", seconds.into());
                        (StatusCode::SERVICE_UNAVAILABLE, headers).into_response()
                    } else {
                        StatusCode::OK.into_response()
                    }
                },
            ),
        )
        .route("/ok", post(|| async { "created" }))
        .with_state(downstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

type Transport = Client<HttpConnector, Full<Bytes>>;

fn client(layer: RetryLayer) -> Retry<Transport> {
    ServiceBuilder::new()
        .layer(layer)
        .service(Client::builder(TokioExecutor::new()).build_http())
}

async fn send(client: &Retry<Transport>, request: http::Request<Full<Bytes>>) -> StatusCode {
    client.clone().oneshot(request).await.unwrap().status()
}

fn get_request(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_downstream_failing_every_call_retries_stay_within_the_budget() {
    let downstream = Arc::new(Downstream::default());
    let url = format!("{}/fail", start(Arc::clone(&downstream)).await);
    // No waits, so the test is quick; the default budget: 20% plus 10 a second.
    let client = client(RetryLayer::new().with_backoff(Duration::ZERO, Duration::ZERO));
    let began = Instant::now();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for _ in 0..1_250 {
                    assert_eq!(send(&client, get_request(&url)).await, 503);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let seconds = began.elapsed().as_secs_f64();
    let attempts = downstream.calls.load(Ordering::SeqCst);
    // 10,000 calls; retries: 20% of them, 10 a second, and the budget's starting reserve of
    // 10 s at 10 a second. Without a budget, three attempts each would make 30,000.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let allowed = 10_000 + 2_000 + 100 + (10.0 * seconds).ceil() as usize;
    eprintln!("{attempts} attempts for 10,000 calls in {seconds:.2} s (allowed {allowed})");
    assert!(attempts > 10_000, "no retry at all: {attempts}");
    assert!(
        attempts <= allowed,
        "{attempts} attempts for 10,000 calls in {seconds:.1} s (allowed {allowed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_retried_only_with_an_idempotency_key() {
    let downstream = Arc::new(Downstream::default());
    let url = format!("{}/fail", start(Arc::clone(&downstream)).await);
    let client = client(RetryLayer::new().with_backoff(Duration::ZERO, Duration::ZERO));
    let post = |key: Option<&str>| {
        let mut request = http::Request::post(&url);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.body(Full::from("{\"amount\":100}")).unwrap()
    };
    for _ in 0..200 {
        assert_eq!(send(&client, post(None)).await, 503);
    }
    assert_eq!(
        downstream.calls.load(Ordering::SeqCst),
        200,
        "a POST was sent twice"
    );
    downstream.calls.store(0, Ordering::SeqCst);
    for i in 0..10 {
        assert_eq!(
            send(&client, post(Some(&format!("\"order-{i}\"")))).await,
            503
        );
    }
    assert_eq!(
        downstream.calls.load(Ordering::SeqCst),
        30,
        "three attempts each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_up_to_its_cap() {
    let downstream = Arc::new(Downstream::default());
    let base = start(Arc::clone(&downstream)).await;
    let client = client(RetryLayer::new());
    let began = Instant::now();
    assert_eq!(
        send(&client, get_request(&format!("{base}/after/1"))).await,
        200
    );
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 2);

    // Asking for 30 s, over the 2 s cap: the 503 stands, at once.
    downstream.calls.store(0, Ordering::SeqCst);
    let began = Instant::now();
    assert_eq!(
        send(&client, get_request(&format!("{base}/after/30"))).await,
        503
    );
    assert!(began.elapsed() < Duration::from_millis(500));
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_retry_waits_past_the_requests_deadline() {
    let downstream = Arc::new(Downstream::default());
    let url = format!("{}/fail", start(Arc::clone(&downstream)).await);
    let client = client(
        RetryLayer::new()
            .with_max_attempts(10)
            .with_backoff(Duration::from_millis(100), Duration::from_secs(1)),
    );
    for _ in 0..5 {
        let deadline = RequestDeadline::after(Duration::from_millis(150)).unwrap();
        let began = Instant::now();
        let status = deadline.scope(send(&client, get_request(&url))).await;
        assert_eq!(status, 503);
        assert!(
            began.elapsed() < Duration::from_millis(300),
            "{:?}",
            began.elapsed()
        );
    }
    // And a call that succeeds is never repeated.
    let ok = format!("{}/ok", url.trim_end_matches("/fail"));
    downstream.calls.store(0, Ordering::SeqCst);
    let request = http::Request::post(&ok).body(Full::default()).unwrap();
    assert_eq!(send(&client, request).await, 200);
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_is_reported_once() {
    let downstream = Arc::new(Downstream::default());
    let url = format!("{}/fail", start(Arc::clone(&downstream)).await);
    let findings = vitals_core::findings::Findings::default();
    // No share and no floor: the budget has nothing to spend.
    let client = client(
        RetryLayer::new()
            .with_budget(0.0, 0)
            .with_backoff(Duration::ZERO, Duration::ZERO)
            .with_findings(findings.clone()),
    );
    for _ in 0..20 {
        assert_eq!(send(&client, get_request(&url)).await, 503);
    }
    assert_eq!(
        downstream.calls.load(Ordering::SeqCst),
        20,
        "retried without a budget"
    );
    let recent = findings.recent();
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert!(matches!(
        &recent[0].finding,
        vitals_core::findings::Finding::Downstream { event: "retry_budget_exhausted", downstream, .. }
            if downstream == "127.0.0.1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_refused_before_it_is_sent_leaves_the_answer_it_was_to_replace() {
    let downstream = Arc::new(Downstream::default());
    let url = format!("{}/fail", start(Arc::clone(&downstream)).await);
    // One failed call opens this breaker: the retry of the first 503 is refused by it.
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new().with_backoff(Duration::ZERO, Duration::ZERO))
        .layer(vitals_client::CircuitBreakerLayer::new("downstream").with_minimum_calls(1))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let response = client.oneshot(get_request(&url)).await.unwrap();
    assert_eq!(
        response.status(),
        503,
        "the downstream's answer, not BreakerOpen"
    );
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 1);
}
