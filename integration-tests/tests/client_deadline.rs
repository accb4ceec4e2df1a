//! Deadline propagation end to end, over real TCP: a request with 200 ms left whose handler
//! calls a downstream that takes 1 s answers within the 200 ms, and the downstream learns it —
//! an HTTP call is cut (its connection closes, the downstream's handler is dropped), a gRPC
//! call over HTTP/2 carries `grpc-timeout` with what was left.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
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
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Service, ServiceBuilder, ServiceExt};
use vitals::{RouteSettings, VitalsLayer};
use vitals_client::{DeadlineExceeded, DeadlineLayer, ServerTimingLayer};
use vitals_concurrency::TimeoutLayer;

const DEADLINE: Duration = Duration::from_millis(200);
/// Kept back from the request's deadline so the handler answers before the server's deadline.
const RESERVE: Duration = Duration::from_millis(20);

/// The HTTP client to the payment service: hyper-util's, under the request's deadline, its
/// time in the response's `Server-Timing`.
type Payment = vitals_client::server_timing::ServerTimed<
    vitals_client::deadline::Deadline<Client<HttpConnector, Full<Bytes>>>,
>;

/// When the downstream's work for a call ended, in ms after it began (dropped or done).
type Ended = Arc<Mutex<Option<u128>>>;

struct EndGuard(Ended, Instant);

impl Drop for EndGuard {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(self.1.elapsed().as_millis());
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// The handler's answer to a failed downstream call: its own `504` when the deadline cut it.
fn answer(error: &vitals_client::BoxError) -> (StatusCode, String) {
    if error.is::<DeadlineExceeded>() {
        (StatusCode::GATEWAY_TIMEOUT, format!("payment: {error}"))
    } else {
        (StatusCode::BAD_GATEWAY, format!("payment: {error}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_call_is_cut_at_the_requests_deadline_in_the_preset() {
    let ended = Ended::default();
    let slow = {
        let ended = Arc::clone(&ended);
        Router::new().route(
            "/pay",
            get(move || async move {
                let _guard = EndGuard(ended, Instant::now());
                tokio::time::sleep(Duration::from_secs(1)).await;
                "paid"
            }),
        )
    };
    let payment = format!("{}/pay", serve(slow).await);

    let transport: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new()
        .layer(ServerTimingLayer::new("payment"))
        .layer(DeadlineLayer::new().with_reserve(RESERVE))
        .service(transport);
    let vitals = VitalsLayer::builder()
        .with_route("/checkout", RouteSettings::new().with_timeout(DEADLINE))
        .build()
        .unwrap();
    let front = Router::new()
        .route(
            "/checkout",
            get(
                |State((client, url)): State<(Payment, String)>| async move {
                    let request = http::Request::get(url).body(Full::default()).unwrap();
                    match client.oneshot(request).await {
                        Ok(response) => (StatusCode::OK, format!("{}", response.status())),
                        Err(error) => answer(&error),
                    }
                },
            ),
        )
        .with_state((client, payment))
        .layer(vitals);
    let front = serve(front).await;

    let began = Instant::now();
    let response = reqwest::get(format!("{front}/checkout")).await.unwrap();
    let took = began.elapsed();
    // The payment call's time is in the response's `Server-Timing`, beside the server's own.
    let server_timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    let payment_ms: f64 = server_timing
        .split(", ")
        .find_map(|entry| entry.strip_prefix("payment;dur="))
        .unwrap_or_else(|| panic!("no payment entry in {server_timing:?}"))
        .parse()
        .unwrap();
    assert!((150.0..500.0).contains(&payment_ms), "{server_timing}");
    assert!(server_timing.contains("total;dur="), "{server_timing}");
    assert_eq!(response.status(), 504, "{:?}", response.text().await);
    assert!(took < DEADLINE + Duration::from_millis(300), "{took:?}");
    // The downstream's work for the call stopped with it, not a second later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ended = ended.lock().unwrap().unwrap();
    assert!(
        ended < 700,
        "the downstream worked {ended} ms for a caller that gave up"
    );
}

/// A downstream gRPC server that takes a second, and notes the `grpc-timeout` it was given.
#[derive(Clone)]
struct Slow<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Option<Duration>>>>,
}

impl<S, B> Service<http::Request<B>> for Slow<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(vitals_core::grpc_timeout::parse);
        self.seen.lock().unwrap().push(timeout);
        let call = self.inner.call(request);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            call.await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_carries_the_time_left_as_grpc_timeout() {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let layer = {
        let seen = Arc::clone(&seen);
        tower::layer::layer_fn(move |inner| Slow {
            inner,
            seen: Arc::clone(&seen),
        })
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(
        ServiceBuilder::new()
            .layer(DeadlineLayer::new().with_reserve(RESERVE))
            .service(channel),
    );

    let front = Router::new()
        .route(
            "/status",
            get(|State(mut health): State<HealthClient<_>>| async move {
                let check = HealthCheckRequest {
                    service: String::new(),
                };
                match health.check(check).await {
                    Ok(_) => (StatusCode::OK, "serving".to_owned()),
                    Err(status) => {
                        // Cut at the deadline: by the deadline layer, or by tonic's channel, which
                        // enforces the `grpc-timeout` the layer set (whichever fires first).
                        let source = std::error::Error::source(&status);
                        let cut = source
                            .and_then(|source| source.downcast_ref::<DeadlineExceeded>())
                            .is_some()
                            || source.is_some_and(|source| {
                                format!("{source:?}").contains("TimeoutExpired")
                            });
                        let code = if cut {
                            StatusCode::GATEWAY_TIMEOUT
                        } else {
                            StatusCode::BAD_GATEWAY
                        };
                        (code, status.to_string())
                    }
                }
            }),
        )
        .with_state(health)
        .layer(TimeoutLayer::new(DEADLINE));
    let front = serve(front).await;

    let began = Instant::now();
    let response = reqwest::get(format!("{front}/status")).await.unwrap();
    let took = began.elapsed();
    assert_eq!(response.status(), 504, "{:?}", response.text().await);
    assert!(took < DEADLINE + Duration::from_millis(300), "{took:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let carried = seen[0].unwrap();
    assert!(
        carried <= DEADLINE.saturating_sub(RESERVE) && carried >= Duration::from_millis(120),
        "grpc-timeout {carried:?}"
    );
}

#[tokio::test]
async fn the_timing_layer_alone_takes_a_calls_server_timing_entry_too() {
    let inventory = ServiceBuilder::new()
        .layer(ServerTimingLayer::new("inventory"))
        .service(tower::service_fn(|(): ()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>("in stock")
        }));
    let app = Router::new()
        .route(
            "/stock",
            get(move || {
                let inventory = inventory.clone();
                async move { inventory.oneshot(()).await.unwrap_or("unknown") }
            }),
        )
        .layer(vitals::timing::RequestTimingLayer::new());
    let response = app
        .oneshot(
            http::Request::get("/stock")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let server_timing = response.headers()["server-timing"].to_str().unwrap();
    let inventory_ms: f64 = server_timing
        .split(", ")
        .find_map(|entry| entry.strip_prefix("inventory;dur="))
        .unwrap_or_else(|| panic!("no inventory entry in {server_timing:?}"))
        .parse()
        .unwrap();
    assert!(inventory_ms >= 20.0, "{server_timing}");
}
