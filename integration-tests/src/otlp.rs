//! A real OTLP receiver for tests: HTTP/protobuf on a loopback port, decoding every export
//! request with the protocol's own generated types and keeping it for assertions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Received {
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
}

/// An OTLP/HTTP receiver accepting `POST /v1/metrics` and `POST /v1/traces` (protobuf).
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    server: JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts the receiver on a free loopback port.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the OTLP receiver: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let received = Arc::new(Received::default());
        let app = Router::new()
            .route("/v1/metrics", post(metrics))
            .route("/v1/traces", post(traces))
            .with_state(Arc::clone(&received));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            received,
            server,
        }
    }

    /// The base URL (`http://127.0.0.1:port`), what `OTEL_EXPORTER_OTLP_ENDPOINT` takes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every metrics export request received so far.
    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.received
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every trace export request received so far.
    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.received
            .traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn protobuf(message: &impl Message) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        message.encode_to_vec(),
    )
}

async fn metrics(State(received): State<Arc<Received>>, body: Bytes) -> axum::response::Response {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            received
                .metrics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request);
            protobuf(&ExportMetricsServiceResponse::default()).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}

async fn traces(State(received): State<Arc<Received>>, body: Bytes) -> axum::response::Response {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            received
                .traces
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request);
            protobuf(&ExportTraceServiceResponse::default()).into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}
