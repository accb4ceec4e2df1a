//! The downstream payment service `GET /checkout` calls, and a stub of it.
//!
//! Without `--payment-url` the shop starts [`PaymentStub`] on a free loopback port: a real
//! HTTP server with a configurable latency, so a slow dependency can be shown without any
//! other process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::Instrument;

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
    /// No answer within the timeout.
    Timeout,
    /// Connection failure, bad status or unreadable answer.
    Failed(String),
}

/// Calls the payment service over HTTP.
#[derive(Clone, Debug)]
pub struct PaymentClient {
    http: reqwest::Client,
    pay_url: reqwest::Url,
}

impl PaymentClient {
    /// A client for the service at `base_url`, giving up after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, String> {
        let base = reqwest::Url::parse(base_url)
            .map_err(|e| format!("invalid payment URL {base_url:?}: {e}"))?;
        if !matches!(base.scheme(), "http") {
            return Err(format!("payment URL {base_url:?} must be http://"));
        }
        let pay_url = base
            .join("pay")
            .map_err(|e| format!("invalid payment URL {base_url:?}: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { http, pay_url })
    }

    /// Charges `request.amount_cents`.
    pub async fn pay(&self, request: &PaymentRequest) -> Result<PaymentReceipt, PaymentError> {
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
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
        let mut trace = reqwest::header::HeaderMap::new();
        vitals::trace_context::inject_span(&span, &mut trace);
        let sent = self
            .http
            .post(self.pay_url.clone())
            .headers(trace)
            .json(request)
            .send()
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
                let kind = if error.is_timeout() {
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
        response.json().await.map_err(classify)
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
    /// Starts the stub on a free loopback port, answering after `latency`.
    pub async fn start(latency: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(StubState {
            latency,
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

    /// The stub's base URL (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
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
    next_id: AtomicU64,
    last_traceparent: std::sync::Mutex<Option<String>>,
}

async fn pay(
    State(state): State<Arc<StubState>>,
    headers: axum::http::HeaderMap,
    Json(request): Json<PaymentRequest>,
) -> Json<PaymentReceipt> {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *state
        .last_traceparent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = traceparent;
    tokio::time::sleep(state.latency).await;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    Json(PaymentReceipt {
        payment_id: format!("pay_{id:06}"),
        status: "approved".to_owned(),
        amount_cents: request.amount_cents,
    })
}
