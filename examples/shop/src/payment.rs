//! The downstream payment service `GET /checkout` calls, and a stub of it.
//!
//! Without `--payment-url` the shop starts [`PaymentStub`] on a free loopback port: a real
//! HTTP server with a configurable latency, so a slow dependency can be shown without any
//! other process.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tracing::Instrument;
use vitals::client::{
    BoxError, BreakerBody, BreakerHandle, BreakerOpen, CircuitBreakerLayer, ClientMetricsLayer,
    DeadlineExceeded, DeadlineLayer, ServerTimingLayer,
};
use vitals::core::findings::Findings;

/// What the shop sends to the payment service.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The product paid for.
    pub product_id: i64,
    /// Amount in cents.
    pub amount_cents: i64,
}

/// What the payment service answers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// The payment's id.
    pub payment_id: String,
    /// `approved`.
    pub status: String,
    /// Amount charged, in cents.
    pub amount_cents: i64,
}

/// Why a payment failed.
#[derive(Debug)]
pub enum PaymentError {
    /// No answer within the timeout, or the request's deadline.
    Timeout,
    /// The payment service kept failing: its circuit breaker is open, so it was not called.
    Unavailable {
        /// When the breaker lets a probe call through.
        retry_after: Duration,
    },
    /// Connection failure, bad status or unreadable answer.
    Failed(String),
}

/// reqwest as a tower service over `http` types, for the client layers.
#[derive(Clone, Debug)]
struct Reqwest(reqwest::Client);

impl tower::Service<http::Request<reqwest::Body>> for Reqwest {
    type Response = http::Response<reqwest::Body>;
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, reqwest::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), reqwest::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<reqwest::Body>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            Ok(http::Response::from(client.execute(request).await?))
        })
    }
}

/// The client stack to the payment service: its time in `Server-Timing` (`payment;dur=…`), a
/// circuit breaker, `http.client.request.duration`,
/// the request's deadline (or the shop's payment timeout, whichever is first), reqwest.
type Transport = BoxCloneSyncService<
    http::Request<reqwest::Body>,
    http::Response<BreakerBody<reqwest::Body>>,
    BoxError,
>;

/// Calls the payment service over HTTP.
#[derive(Clone)]
pub struct PaymentClient {
    transport: Transport,
    breaker: BreakerHandle,
    pay_url: reqwest::Url,
}

impl std::fmt::Debug for PaymentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentClient")
            .field("pay_url", &self.pay_url.as_str())
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl PaymentClient {
    /// A client for the service at `base_url`, giving up after `timeout` (or the request's
    /// deadline); its breaker's openings and closings, and calls out of time, go to `findings`.
    pub fn new(base_url: &str, timeout: Duration, findings: Findings) -> Result<Self, String> {
        let base = reqwest::Url::parse(base_url)
            .map_err(|e| format!("invalid payment URL {base_url:?}: {e}"))?;
        if !matches!(base.scheme(), "http") {
            return Err(format!("payment URL {base_url:?} must be http://"));
        }
        let pay_url = base
            .join("pay")
            .map_err(|e| format!("invalid payment URL {base_url:?}: {e}"))?;
        // reqwest's own timeout bounds the whole exchange, body included; the deadline layer
        // ends the call sooner when the request being served has less time left.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let breaker = CircuitBreakerLayer::new("payment").with_findings(findings.clone());
        let handle = breaker.handle();
        let transport = Transport::new(
            tower::ServiceBuilder::new()
                .layer(ServerTimingLayer::new("payment"))
                .layer(breaker)
                .layer(ClientMetricsLayer::new())
                .layer(
                    DeadlineLayer::new()
                        .with_timeout(timeout)
                        .with_findings(findings),
                )
                .service(Reqwest(http)),
        );
        Ok(Self {
            transport,
            breaker: handle,
            pay_url,
        })
    }

    /// The payment service's circuit breaker.
    pub fn breaker(&self) -> &BreakerHandle {
        &self.breaker
    }

    /// Charges `request.amount_cents`.
    pub async fn pay(&self, request: &PaymentRequest) -> Result<PaymentReceipt, PaymentError> {
        let classify = |e: BoxError| {
            if let Some(open) = e.downcast_ref::<BreakerOpen>() {
                PaymentError::Unavailable {
                    retry_after: open.retry_after(),
                }
            } else if e.is::<DeadlineExceeded>()
                || e.downcast_ref::<reqwest::Error>()
                    .is_some_and(reqwest::Error::is_timeout)
            {
                PaymentError::Timeout
            } else {
                PaymentError::Failed(e.to_string())
            }
        };
        // A client span of the request, whose context the payment service continues (made
        // before the first await: the handler's context is current while it is polled).
        let span = tracing::info_span!(
            "POST",
            otel.name = "POST",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = %self.pay_url,
            server.address = self.pay_url.host_str().unwrap_or_default(),
            server.port = self.pay_url.port_or_known_default().map(i64::from),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let body = serde_json::to_vec(request)
            .map_err(|e| PaymentError::Failed(format!("cannot encode the payment: {e}")))?;
        let mut outgoing = http::Request::post(self.pay_url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(reqwest::Body::from(body))
            .map_err(|e| PaymentError::Failed(format!("cannot build the payment call: {e}")))?;
        vitals::trace_context::inject_span(&span, outgoing.headers_mut());
        let sent = self
            .transport
            .clone()
            .oneshot(outgoing)
            .instrument(span.clone())
            .await;
        // What the conventions ask of a client span: the status as an integer; an error for
        // 4xx and 5xx (the call failed, whoever's fault), or for no answer at all.
        match &sent {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if status.is_client_error() || status.is_server_error() {
                    span.record("error.type", status.as_str());
                    span.record("otel.status_code", "ERROR");
                }
            }
            Err(error) => {
                let kind = if error.is::<BreakerOpen>() {
                    "circuit_open"
                } else if error.is::<DeadlineExceeded>()
                    || error
                        .downcast_ref::<reqwest::Error>()
                        .is_some_and(reqwest::Error::is_timeout)
                {
                    "timeout"
                } else {
                    "_OTHER"
                };
                span.record("error.type", kind);
                span.record("otel.status_code", "ERROR");
            }
        }
        let response = sent.map_err(classify)?;
        if !response.status().is_success() {
            return Err(PaymentError::Failed(format!(
                "payment service answered {}",
                response.status()
            )));
        }
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| classify(Box::new(e)))?
            .to_bytes();
        serde_json::from_slice(&body)
            .map_err(|e| PaymentError::Failed(format!("unreadable payment answer: {e}")))
    }
}

/// A stub payment service on a loopback port. Stops when dropped.
#[derive(Debug)]
pub struct PaymentStub {
    addr: SocketAddr,
    task: JoinHandle<()>,
    state: Arc<StubState>,
}

impl PaymentStub {
    /// Starts the stub on a free loopback port, answering after `latency`, failing (503) the
    /// share `failure_rate` of the calls (0 to 1, spread evenly: 0.25 fails every fourth).
    pub async fn start(latency: Duration, failure_rate: f64) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(StubState {
            latency,
            failure_rate: AtomicU64::new(valid_rate(failure_rate).to_bits()),
            spike_ms: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            last_traceparent: std::sync::Mutex::new(None),
        });
        let app = Router::new()
            .route("/pay", post(pay))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "payment stub stopped");
            }
        });
        Ok(Self { addr, task, state })
    }

    /// The `traceparent` of the last payment request, as the stub received it.
    pub fn last_traceparent(&self) -> Option<String> {
        self.state
            .last_traceparent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A handle that changes how the stub fails while it runs.
    pub fn control(&self) -> StubControl {
        StubControl(Arc::clone(&self.state))
    }

    /// How many payment calls reached the stub.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }

    /// The stub's base URL (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Changes how a running [`PaymentStub`] fails (the demo traffic gives it an outage now and
/// then). Cheap to clone.
#[derive(Clone, Debug)]
pub struct StubControl(Arc<StubState>);

impl StubControl {
    /// Changes the share of calls that fail (0 to 1), from the next call on.
    pub fn set_failure_rate(&self, rate: f64) {
        self.0
            .failure_rate
            .store(valid_rate(rate).to_bits(), Ordering::Relaxed);
    }

    /// Makes every tenth call take `spike` longer (zero: no spike): a dependency whose tail
    /// latency jumps, to show the deadline cutting calls and the `Server-Timing` entry.
    pub fn set_latency_spike(&self, spike: Duration) {
        self.0.spike_ms.store(
            u64::try_from(spike.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The share of calls that fail now.
    pub fn failure_rate(&self) -> f64 {
        f64::from_bits(self.0.failure_rate.load(Ordering::Relaxed))
    }
}

impl Drop for PaymentStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct StubState {
    latency: Duration,
    /// An `f64`'s bits: changed while the stub runs.
    failure_rate: AtomicU64,
    /// Extra latency of every tenth call, in milliseconds (0: none).
    spike_ms: AtomicU64,
    calls: AtomicU64,
    next_id: AtomicU64,
    last_traceparent: std::sync::Mutex<Option<String>>,
}

async fn pay(
    State(state): State<Arc<StubState>>,
    headers: axum::http::HeaderMap,
    Json(request): Json<PaymentRequest>,
) -> Result<Json<PaymentReceipt>, StatusCode> {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *state
        .last_traceparent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = traceparent;
    let call = state.calls.fetch_add(1, Ordering::Relaxed);
    // Every tenth call: the latency spike, when there is one.
    let spike = if call % SPIKE_EVERY == SPIKE_EVERY - 1 {
        Duration::from_millis(state.spike_ms.load(Ordering::Relaxed))
    } else {
        Duration::ZERO
    };
    tokio::time::sleep(state.latency + spike).await;
    if fails(
        call,
        f64::from_bits(state.failure_rate.load(Ordering::Relaxed)),
    ) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    Ok(Json(PaymentReceipt {
        payment_id: format!("pay_{id:06}"),
        status: "approved".to_owned(),
        amount_cents: request.amount_cents,
    }))
}

/// One call in this many takes the latency spike.
const SPIKE_EVERY: u64 = 10;

/// `rate` within 0 to 1 (NaN: 0).
fn valid_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// Whether call number `call` (from 0) fails at `rate`: the failures spread evenly, so any
/// run of calls fails the share `rate` of them, give or take one.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn fails(call: u64, rate: f64) -> bool {
    let before = (call as f64 * rate).floor() as u64;
    let after = ((call + 1) as f64 * rate).floor() as u64;
    after > before
}

#[cfg(test)]
mod tests {
    use super::fails;

    #[test]
    fn failures_spread_evenly_at_the_rate() {
        let count = |rate: f64| (0..100).filter(|&call| fails(call, rate)).count();
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 100);
        assert_eq!(count(0.25), 25);
        assert!((0..4).filter(|&call| fails(call, 0.25)).count() == 1);
    }
}
