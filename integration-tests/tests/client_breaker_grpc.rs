//! vitals-client on a tonic channel over HTTP/2, against a real tonic server. The circuit
//! breaker: a streaming call that fails after its first message says so only in its trailers
//! (`grpc-status: 14`, its head is HTTP 200); those calls open the breaker, streams that end
//! with `OK` do not. The client metrics: the channel's requests carry only their path, so
//! `server.address` and `server.port` are the ones the layer was given.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use metrics_util::debugging::DebuggingRecorder;
use tonic::codegen::tokio_stream::{self, Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use vitals_client::{BreakerOpen, BreakerState, CircuitBreakerLayer, ClientMetricsLayer};

/// What the flaky service does, and how many calls reached it.
#[derive(Default)]
struct State {
    failing: AtomicBool,
    calls: AtomicUsize,
}

/// A health service whose `Watch` streams one message, then ends with `UNAVAILABLE` (while
/// `failing`) or `OK`.
struct Flaky(Arc<State>);

type Watch = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for Flaky {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = Watch;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Watch>, Status> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let first = Ok(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        });
        let items = if self.0.failing.load(Ordering::SeqCst) {
            vec![first, Err(Status::unavailable("the backend went away"))]
        } else {
            vec![first]
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
}

/// A tonic server of the flaky health service on a loopback port, and a channel to it.
async fn serve(state: Arc<State>) -> tonic::transport::Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(Flaky(state)))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One `Watch` call read to its end: the stream's final status (`Ok` when it ended with `OK`).
async fn watch<S>(client: &mut HealthClient<S>) -> Result<(), Status>
where
    S: tonic::client::GrpcService<tonic::body::Body>,
    S::Error: Into<tonic::codegen::StdError>,
    S::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <S::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut stream = client
        .watch(HealthCheckRequest::default())
        .await?
        .into_inner();
    let first = stream.next().await.unwrap()?;
    assert_eq!(first.status, i32::from(ServingStatus::Serving));
    while let Some(item) = stream.next().await {
        item?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_status_in_the_trailers_of_a_stream_counts_and_opens_the_breaker() {
    let flaky = Arc::new(State::default());
    let channel = serve(Arc::clone(&flaky)).await;
    let layer = CircuitBreakerLayer::new("health").with_minimum_calls(4);
    let breaker = layer.handle();
    let mut client = HealthClient::new(tower::ServiceBuilder::new().layer(layer).service(channel));

    // Streams that end with OK: counted as successes.
    for _ in 0..4 {
        watch(&mut client).await.unwrap();
    }
    assert_eq!(breaker.window(), (4, 0));

    // Now each stream sends its message, then fails in its trailers: the head said HTTP 200,
    // the trailers say UNAVAILABLE, and that is what the breaker counts.
    flaky.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let status = watch(&mut client).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
    assert_eq!(breaker.window(), (7, 3));
    // The fourth failure makes 4 of 8: the breaker opens.
    watch(&mut client).await.unwrap_err();
    assert_eq!(breaker.state(), BreakerState::Open);

    // Open: the next call fails at once, without reaching the server.
    let reached = flaky.calls.load(Ordering::SeqCst);
    let status = watch(&mut client).await.unwrap_err();
    let source = std::error::Error::source(&status).unwrap();
    assert!(source.is::<BreakerOpen>(), "{status}: {source}");
    assert_eq!(flaky.calls.load(Ordering::SeqCst), reached);
}

/// The labels of each sample a `Check` through `layer` on a channel to a real server records.
fn check_labels(layer: ClientMetricsLayer) -> Vec<Vec<String>> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The recorder is this thread's while the calls run on it.
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let channel = serve(Arc::default()).await;
            let mut client =
                HealthClient::new(tower::ServiceBuilder::new().layer(layer).service(channel));
            client.check(HealthCheckRequest::default()).await.unwrap();
        });
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            labels
        })
        .collect()
}

#[test]
fn a_channels_calls_name_no_server_so_the_metrics_take_the_one_given() {
    let answered = ["http.request.method=POST", "http.response.status_code=200"];
    assert_eq!(check_labels(ClientMetricsLayer::new()), [answered]);
    assert_eq!(
        check_labels(ClientMetricsLayer::new().with_server("health.internal", 50051)),
        [[
            answered[0],
            answered[1],
            "server.address=health.internal",
            "server.port=50051"
        ]]
    );
}
