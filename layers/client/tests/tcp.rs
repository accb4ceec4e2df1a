//! The breaker and the deadline against a real downstream over TCP (an axum server on a
//! loopback port), through hyper-util's client.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use vitals_client::{
    BoxError, BreakerOpen, BreakerState, BulkheadFull, BulkheadLayer, CircuitBreakerLayer,
    DeadlineExceeded, DeadlineLayer,
};
use vitals_core::deadline::RequestDeadline;

/// The downstream: fails or answers, after a delay; counts what reaches it.
#[derive(Default)]
struct Downstream {
    failing: AtomicBool,
    delay_ms: AtomicU64,
    calls: AtomicUsize,
    /// When the slow handler's work ended, in ms after it began (dropped or done).
    slow_ended_ms: AtomicU64,
}

/// Records when the slow handler's future ends, however it ends.
struct EndGuard(Arc<Downstream>, Instant);

impl Drop for EndGuard {
    fn drop(&mut self) {
        let ms = u64::try_from(self.1.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.slow_ended_ms.store(ms, Ordering::SeqCst);
    }
}

async fn start(downstream: Arc<Downstream>) -> String {
    let app = Router::new()
        .route(
            "/pay",
            get(|State(d): State<Arc<Downstream>>| async move {
                d.calls.fetch_add(1, Ordering::SeqCst);
                let delay = d.delay_ms.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                if d.failing.load(Ordering::SeqCst) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/slow",
            get(|State(d): State<Arc<Downstream>>| async move {
                let _guard = EndGuard(Arc::clone(&d), Instant::now());
                tokio::time::sleep(Duration::from_secs(1)).await;
                "late"
            }),
        )
        .with_state(downstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

fn transport() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get_request(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

async fn call<S>(client: &S, url: &str) -> Result<StatusCode, BoxError>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone,
    S::Error: Into<BoxError>,
{
    let response = client
        .clone()
        .oneshot(get_request(url))
        .await
        .map_err(Into::into)?;
    Ok(response.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_downstream_opens_the_breaker_then_a_probe_closes_it() {
    let downstream = Arc::new(Downstream::default());
    downstream.failing.store(true, Ordering::SeqCst);
    let base = start(Arc::clone(&downstream)).await;
    let url = format!("{base}/pay");
    // The defaults, but a short open time for the test.
    let findings = vitals_core::findings::Findings::default();
    let layer = CircuitBreakerLayer::new("payment")
        .with_open_for(Duration::from_millis(300))
        .with_findings(findings.clone());
    let breaker = layer.handle();
    let client = ServiceBuilder::new().layer(layer).service(transport());

    // Every call fails: open within twenty calls.
    let mut made = 0;
    while breaker.state() == BreakerState::Closed {
        assert_eq!(call(&client, &url).await.unwrap(), 500);
        made += 1;
        assert!(made <= 20, "still closed after {made} failed calls");
    }
    assert_eq!(downstream.calls.load(Ordering::SeqCst), made);

    // Open: answered at once, the downstream not called. (Under 1 ms each; a few allowed
    // more, for a machine busy with other tests preempting this one.)
    let mut took = Vec::new();
    for _ in 0..100 {
        let began = Instant::now();
        let error = call(&client, &url).await.unwrap_err();
        took.push(began.elapsed());
        assert!(error.is::<BreakerOpen>(), "{error}");
    }
    let slow = took
        .iter()
        .filter(|t| **t >= Duration::from_millis(1))
        .count();
    assert!(
        slow <= 5,
        "{slow} of 100 refusals took 1 ms or more: {took:?}"
    );
    assert_eq!(downstream.calls.load(Ordering::SeqCst), made);

    // The downstream recovers; once the open time is over, ten callers at once: one probe
    // goes (slowly), the other nine are refused without a call.
    downstream.failing.store(false, Ordering::SeqCst);
    downstream.delay_ms.store(100, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { call(&client, &url).await })
        })
        .collect();
    let mut probes = 0;
    for caller in callers {
        match caller.await.unwrap() {
            Ok(status) => {
                assert_eq!(status, 200);
                probes += 1;
            }
            Err(error) => assert!(error.is::<BreakerOpen>(), "{error}"),
        }
    }
    assert_eq!(probes, 1);
    assert_eq!(downstream.calls.load(Ordering::SeqCst), made + 1);
    assert_eq!(breaker.state(), BreakerState::Closed);
    downstream.delay_ms.store(0, Ordering::SeqCst);
    assert_eq!(call(&client, &url).await.unwrap(), 200);
    assert_eq!(breaker.times_opened(), 1);
    // The dashboard's findings: opened, then closed, each once.
    let events: Vec<_> = findings
        .recent()
        .into_iter()
        .map(|recorded| match recorded.finding {
            vitals_core::findings::Finding::Downstream {
                downstream, event, ..
            } => (downstream, event),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        events,
        [
            ("payment".to_owned(), "breaker_closed"),
            ("payment".to_owned(), "breaker_opened")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_cut_at_the_request_deadline_and_the_downstream_sees_it_end() {
    let downstream = Arc::new(Downstream::default());
    downstream.slow_ended_ms.store(u64::MAX, Ordering::SeqCst);
    let base = start(Arc::clone(&downstream)).await;
    let findings = vitals_core::findings::Findings::default();
    let client = ServiceBuilder::new()
        .layer(
            DeadlineLayer::new()
                .with_timeout(Duration::from_secs(5))
                .with_findings(findings.clone()),
        )
        .service(transport());
    // What the server side does for a request with 200 ms left.
    let deadline = RequestDeadline::after(Duration::from_millis(200)).unwrap();
    let began = Instant::now();
    let url = format!("{base}/slow");
    let error = deadline.scope(call(&client, &url)).await.unwrap_err();
    let took = began.elapsed();
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert!(exceeded.by_request_deadline() && exceeded.call_started());
    assert!(
        took >= Duration::from_millis(195) && took < Duration::from_millis(600),
        "{took:?}"
    );
    // The connection closed with the call: the downstream stopped working for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ended = downstream.slow_ended_ms.load(Ordering::SeqCst);
    assert!(ended < 600, "the downstream's handler ran on ({ended} ms)");

    // Started with no time left: refused at once, nothing sent.
    let passed = RequestDeadline::at(Instant::now());
    let began = Instant::now();
    let error = passed.scope(call(&client, &url)).await.unwrap_err();
    assert!(
        !error
            .downcast_ref::<DeadlineExceeded>()
            .unwrap()
            .call_started()
    );
    assert!(began.elapsed() < Duration::from_millis(5));
    // Two calls out of time, one finding (at most one per 10 s).
    let recent = findings.recent();
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0].finding.kind(), "downstream");
    assert_eq!(recent[0].finding.route(), "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_downstream_holds_no_more_calls_than_its_bulkhead_and_does_not_open_the_breaker() {
    let downstream = Arc::new(Downstream::default());
    downstream.delay_ms.store(200, Ordering::SeqCst);
    let url = format!("{}/pay", start(Arc::clone(&downstream)).await);
    let breaker = CircuitBreakerLayer::new("payment").with_minimum_calls(5);
    let state = breaker.handle();
    let client = ServiceBuilder::new()
        .layer(breaker)
        .layer(BulkheadLayer::new("payment", 2))
        .service(transport());
    let began = Instant::now();
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { (call(&client, &url).await, began.elapsed()) })
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for caller in callers {
        match caller.await.unwrap() {
            (Ok(status), _) => {
                assert_eq!(status, 200);
                answered += 1;
            }
            (Err(error), took) => {
                assert!(error.is::<BulkheadFull>(), "{error}");
                assert!(took < Duration::from_millis(100), "refused after {took:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((answered, refused), (2, 8));
    assert_eq!(downstream.calls.load(Ordering::SeqCst), 2);
    // Eight refusals by the bulkhead are not the downstream's failures.
    assert_eq!(state.state(), BreakerState::Closed);
    assert_eq!(state.window(), (2, 0));
}
