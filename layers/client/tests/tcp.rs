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

async fn call<S, B>(client: &S, url: &str) -> Result<StatusCode, BoxError>
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
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

/// The authority (`127.0.0.1:port`) of a downstream's base URL: its breaker's name per host.
fn authority(base: &str) -> &str {
    base.trim_start_matches("http://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_one_failing_host_is_cut_off_and_the_others_still_called() {
    let (failing, healthy) = (
        Arc::new(Downstream::default()),
        Arc::new(Downstream::default()),
    );
    failing.failing.store(true, Ordering::SeqCst);
    let failing_base = start(Arc::clone(&failing)).await;
    let healthy_base = start(Arc::clone(&healthy)).await;
    let layer = CircuitBreakerLayer::new("webhooks")
        .with_minimum_calls(5)
        .per_host();
    let hosts = layer.hosts().unwrap();
    // One client for both hosts, as a gateway or a webhook sender has.
    let client = ServiceBuilder::new().layer(layer).service(transport());

    for _ in 0..5 {
        assert_eq!(
            call(&client, &format!("{failing_base}/pay")).await.unwrap(),
            500
        );
        assert_eq!(
            call(&client, &format!("{healthy_base}/pay")).await.unwrap(),
            200
        );
    }
    // The failing host's breaker opened; its calls are refused without reaching it, named
    // after the host; the healthy host is still called.
    let error = call(&client, &format!("{failing_base}/pay"))
        .await
        .unwrap_err();
    let refused = error.downcast_ref::<BreakerOpen>().unwrap();
    assert_eq!(refused.name(), authority(&failing_base));
    assert_eq!(failing.calls.load(Ordering::SeqCst), 5);
    for _ in 0..10 {
        assert_eq!(
            call(&client, &format!("{healthy_base}/pay")).await.unwrap(),
            200
        );
    }
    assert_eq!(healthy.calls.load(Ordering::SeqCst), 15);

    let failing_breaker = hosts.get(authority(&failing_base)).unwrap();
    let healthy_breaker = hosts.get(authority(&healthy_base)).unwrap();
    assert_eq!(failing_breaker.state(), BreakerState::Open);
    assert_eq!(healthy_breaker.state(), BreakerState::Closed);
    assert_eq!(healthy_breaker.window(), (15, 0));
    let names: Vec<_> = hosts.all().iter().map(|h| h.name().to_owned()).collect();
    let mut expected = vec![
        authority(&failing_base).to_owned(),
        authority(&healthy_base).to_owned(),
    ];
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_hosts_past_the_limit_share_one_breaker() {
    let downstreams: Vec<_> = (0..3).map(|_| Arc::new(Downstream::default())).collect();
    let mut bases = Vec::new();
    for downstream in &downstreams {
        downstream.failing.store(true, Ordering::SeqCst);
        bases.push(start(Arc::clone(downstream)).await);
    }
    let layer = CircuitBreakerLayer::new("tenants")
        .with_minimum_calls(4)
        .with_max_hosts(1);
    let hosts = layer.hosts().unwrap();
    let client = ServiceBuilder::new().layer(layer).service(transport());

    // The first host has its own breaker; the other two share one: two failures each open it.
    assert_eq!(
        call(&client, &format!("{}/pay", bases[0])).await.unwrap(),
        500
    );
    for _ in 0..2 {
        assert_eq!(
            call(&client, &format!("{}/pay", bases[1])).await.unwrap(),
            500
        );
        assert_eq!(
            call(&client, &format!("{}/pay", bases[2])).await.unwrap(),
            500
        );
    }
    let error = call(&client, &format!("{}/pay", bases[2]))
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<BreakerOpen>().unwrap().name(),
        "(other hosts)"
    );
    assert!(
        call(&client, &format!("{}/pay", bases[1]))
            .await
            .unwrap_err()
            .is::<BreakerOpen>()
    );
    // The first host's breaker has one failure of the four it needs: still closed.
    assert_eq!(
        call(&client, &format!("{}/pay", bases[0])).await.unwrap(),
        500
    );
    assert_eq!(
        hosts.get(authority(&bases[0])).unwrap().state(),
        BreakerState::Closed
    );
    assert_eq!(hosts.all().len(), 2);
    assert!(hosts.get(authority(&bases[1])).is_none());
    let calls: Vec<_> = downstreams
        .iter()
        .map(|d| d.calls.load(Ordering::SeqCst))
        .collect();
    assert_eq!(calls, [2, 2, 2]);
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
