//! The tower contract, against tower-test's mock (which panics when called without
//! readiness): an open breaker never polls the inner service; readiness — and a half-open
//! probe's slot — belongs to the clone that reserved it; a call with no time left asks nothing
//! of the inner service.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, Service};
use tower_test::mock::{self, Handle, Mock, Spawn};
use vitals_client::{
    BreakerOpen, BreakerState, CircuitBreakerLayer, DeadlineExceeded, DeadlineLayer,
};
use vitals_core::deadline::RequestDeadline;

type Inner = Counted<Mock<Request<()>, Response<()>>>;
type MockHandle = Handle<Request<()>, Response<()>>;

/// The inner service, counting how often it is asked for readiness.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    ready_polls: Arc<AtomicUsize>,
}

impl<S: Service<R>, R> Service<R> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.ready_polls.fetch_add(1, Ordering::SeqCst);
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.inner.call(request)
    }
}

fn spawn<L: Layer<Inner>>(layer: L) -> (Spawn<L::Service>, MockHandle, Arc<AtomicUsize>) {
    let ready_polls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ready_polls);
    let (service, handle) = mock::spawn_with(move |inner| {
        layer.layer(Counted {
            inner,
            ready_polls: Arc::clone(&counter),
        })
    });
    (service, handle, ready_polls)
}

fn status(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// One call through `service`, answered by the mock with `answer`.
async fn exchange<S, B>(
    service: &mut Spawn<S>,
    handle: &mut MockHandle,
    answer: StatusCode,
) -> StatusCode
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    handle.allow(1);
    assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    let call = service.call(Request::new(()));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(status(answer));
    call.await.unwrap().status()
}

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::new("mock")
        .with_minimum_calls(3)
        .with_open_for(Duration::from_millis(100))
        .with_probes(2)
}

#[tokio::test]
async fn an_open_breaker_answers_without_polling_or_calling_the_inner_service() {
    let layer = breaker();
    let state = layer.handle();
    let (mut service, mut handle, ready_polls) = spawn(layer);
    // 4xx is the caller's fault: it never opens the breaker.
    for _ in 0..5 {
        exchange(&mut service, &mut handle, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(state.state(), BreakerState::Closed);
    // Half of the ten calls in the window failed: open.
    for _ in 0..4 {
        exchange(&mut service, &mut handle, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(state.state(), BreakerState::Closed);
    }
    exchange(&mut service, &mut handle, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(state.state(), BreakerState::Open);
    let polls_before = ready_polls.load(Ordering::SeqCst);
    handle.allow(0);
    for _ in 0..10 {
        // Ready to refuse, though the inner mock is not ready at all.
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        let error = service.call(Request::new(())).await.unwrap_err();
        let open = error.downcast_ref::<BreakerOpen>().unwrap();
        assert_eq!(open.name(), "mock");
        assert!(open.retry_after() <= Duration::from_millis(100));
    }
    assert_eq!(ready_polls.load(Ordering::SeqCst), polls_before);
    // Nothing reached the mock.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn half_open_probes_belong_to_the_clones_that_reserved_them() {
    let layer = breaker();
    let state = layer.handle();
    let (mut service, mut handle, ready_polls) = spawn(layer);
    for _ in 0..3 {
        exchange(&mut service, &mut handle, StatusCode::BAD_GATEWAY).await;
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(state.state(), BreakerState::HalfOpen);
    handle.allow(10);
    let polls_before = ready_polls.load(Ordering::SeqCst);
    // Five concurrent callers, each its own clone: two probes go, three are refused at once.
    let mut callers: Vec<_> = (0..5)
        .map(|_| Spawn::new(service.get_ref().clone()))
        .collect();
    for caller in &mut callers {
        assert!(matches!(caller.poll_ready(), Poll::Ready(Ok(()))));
    }
    assert_eq!(ready_polls.load(Ordering::SeqCst) - polls_before, 2);
    let mut calls: Vec<_> = callers
        .iter_mut()
        .map(|caller| caller.call(Request::new(())))
        .collect();
    let refused = calls.split_off(2);
    for call in refused {
        assert!(call.await.unwrap_err().is::<BreakerOpen>());
    }
    // A clone made from a ready one has no readiness of its own: it asks for it.
    let mut ready = Spawn::new(service.get_ref().clone());
    let clone_of_ready = Spawn::new(ready.get_ref().clone());
    drop(clone_of_ready);
    // (Both probe slots are taken: a third caller is refused, the inner service unasked.)
    assert!(matches!(ready.poll_ready(), Poll::Ready(Ok(()))));
    assert!(
        ready
            .call(Request::new(()))
            .await
            .unwrap_err()
            .is::<BreakerOpen>()
    );
    // The first probe succeeds: closed; the second's late failure changes nothing.
    let (_, first) = handle.next_request().await.unwrap();
    let (_, second) = handle.next_request().await.unwrap();
    first.send_response(status(StatusCode::OK));
    second.send_response(status(StatusCode::INTERNAL_SERVER_ERROR));
    let mut calls = calls.into_iter();
    assert_eq!(calls.next().unwrap().await.unwrap().status(), 200);
    assert_eq!(state.state(), BreakerState::Closed);
    assert_eq!(calls.next().unwrap().await.unwrap().status(), 500);
    assert_eq!(state.state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_probe_given_up_before_its_call_frees_its_slot() {
    let layer = breaker().with_probes(1);
    let state = layer.handle();
    let (mut service, mut handle, _) = spawn(layer);
    for _ in 0..3 {
        exchange(&mut service, &mut handle, StatusCode::INTERNAL_SERVER_ERROR).await;
    }
    tokio::time::sleep(Duration::from_millis(120)).await;
    handle.allow(10);
    let mut first = Spawn::new(service.get_ref().clone());
    assert!(matches!(first.poll_ready(), Poll::Ready(Ok(()))));
    // Its readiness reserved the only probe: another caller is refused…
    let mut second = Spawn::new(service.get_ref().clone());
    assert!(matches!(second.poll_ready(), Poll::Ready(Ok(()))));
    assert!(
        second
            .call(Request::new(()))
            .await
            .unwrap_err()
            .is::<BreakerOpen>()
    );
    // …until the first caller gives up without calling.
    drop(first);
    assert_eq!(
        exchange(&mut service, &mut handle, StatusCode::OK).await,
        StatusCode::OK
    );
    assert_eq!(state.state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_call_with_no_time_left_asks_nothing_of_the_inner_service() {
    let (mut service, mut handle, ready_polls) = spawn(DeadlineLayer::new());
    handle.allow(0);
    let passed = RequestDeadline::at(std::time::Instant::now());
    let error = RequestDeadline::in_scope(Some(passed), || {
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        service.call(Request::new(()))
    })
    .await
    .unwrap_err();
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert!(exceeded.by_request_deadline() && !exceeded.call_started());
    assert_eq!(ready_polls.load(Ordering::SeqCst), 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(20), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_grpc_call_carries_what_is_left_and_never_more_than_it_asked() {
    let (mut service, mut handle, _) = spawn(DeadlineLayer::new());
    handle.allow(2);
    let deadline = RequestDeadline::after(Duration::from_millis(200)).unwrap();
    let grpc = |timeout: Option<&'static str>| {
        let mut request = Request::new(());
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc+proto"),
        );
        if let Some(timeout) = timeout {
            request
                .headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static(timeout));
        }
        request
    };
    for (asked, at_most) in [(None, 200_000), (Some("50m"), 50_000)] {
        let call = RequestDeadline::in_scope(Some(deadline), || {
            assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
            service.call(grpc(asked))
        });
        let (request, responder) = handle.next_request().await.unwrap();
        let carried = vitals_core::grpc_timeout::parse(&request.headers()["grpc-timeout"]).unwrap();
        assert!(carried <= Duration::from_micros(at_most), "{carried:?}");
        assert!(carried >= Duration::from_millis(40), "{carried:?}");
        responder.send_response(Response::new(()));
        call.await.unwrap();
    }
}

#[tokio::test]
async fn a_full_bulkhead_refuses_without_polling_and_permits_belong_to_their_clones() {
    let layer = vitals_client::BulkheadLayer::new("mock", 2);
    let (service, mut handle, ready_polls) = spawn(layer.clone());
    handle.allow(10);
    let mut first = Spawn::new(service.get_ref().clone());
    let mut second = Spawn::new(service.get_ref().clone());
    assert!(matches!(first.poll_ready(), Poll::Ready(Ok(()))));
    assert!(matches!(second.poll_ready(), Poll::Ready(Ok(()))));
    assert_eq!(layer.in_flight(), 2);
    let polls = ready_polls.load(Ordering::SeqCst);
    // Both permits are reserved: a third caller is refused, the inner service unasked.
    let mut third = Spawn::new(service.get_ref().clone());
    assert!(matches!(third.poll_ready(), Poll::Ready(Ok(()))));
    let error = third.call(Request::new(())).await.unwrap_err();
    assert!(error.is::<vitals_client::BulkheadFull>(), "{error}");
    assert_eq!(ready_polls.load(Ordering::SeqCst), polls);
    // A clone that reserved a permit and gives up frees it; a call holds it to its answer.
    drop(second);
    assert_eq!(layer.in_flight(), 1);
    let call = first.call(Request::new(()));
    assert_eq!(layer.in_flight(), 1);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(()));
    call.await.unwrap();
    assert_eq!(layer.in_flight(), 0);
}

#[tokio::test]
async fn waiting_for_readiness_ends_with_the_requests_time() {
    let (mut service, mut handle, ready_polls) = spawn(DeadlineLayer::new());
    handle.allow(0);
    let deadline = RequestDeadline::after(Duration::from_millis(50)).unwrap();
    // The inner service is not ready: the caller waits…
    assert!(RequestDeadline::in_scope(Some(deadline), || service.poll_ready()).is_pending());
    tokio::time::sleep(Duration::from_millis(70)).await;
    // …until the request's time is up: then the call is refused, the inner service unasked.
    assert!(service.is_woken());
    let polls = ready_polls.load(Ordering::SeqCst);
    let error = RequestDeadline::in_scope(Some(deadline), || {
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
        service.call(Request::new(()))
    })
    .await
    .unwrap_err();
    assert!(
        !error
            .downcast_ref::<DeadlineExceeded>()
            .unwrap()
            .call_started()
    );
    assert_eq!(ready_polls.load(Ordering::SeqCst), polls);
}

#[tokio::test]
async fn readiness_decided_under_one_deadline_is_not_the_time_of_a_call_under_another() {
    let (mut service, mut handle, _) = spawn(DeadlineLayer::new());
    handle.allow(1);
    let far = RequestDeadline::after(Duration::from_hours(1)).unwrap();
    let passed = RequestDeadline::at(std::time::Instant::now());
    // Ready under a request with an hour left; called under one whose time is up.
    RequestDeadline::in_scope(Some(far), || {
        assert!(matches!(service.poll_ready(), Poll::Ready(Ok(()))));
    });
    let call = RequestDeadline::in_scope(Some(passed), || service.call(Request::new(())));
    // Refused at once (judged by the hour-long deadline, it would wait for the mock's answer).
    let error = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call's own deadline decides")
        .unwrap_err();
    let exceeded = error.downcast_ref::<DeadlineExceeded>().unwrap();
    assert!(exceeded.by_request_deadline() && !exceeded.call_started());
}
