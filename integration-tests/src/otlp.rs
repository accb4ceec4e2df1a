//! A real OTLP receiver for tests: HTTP/protobuf and gRPC, each on a loopback port, decoding
//! every export request with the protocol's own generated types (opentelemetry-proto, tonic)
//! and keeping it for assertions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
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

/// An OTLP receiver: HTTP/protobuf (`POST /v1/metrics`, `POST /v1/traces`) and gRPC (the
/// metrics and trace services).
pub struct OtlpReceiver {
    addr: SocketAddr,
    grpc_addr: SocketAddr,
    received: Arc<Received>,
    server: JoinHandle<()>,
    grpc_server: JoinHandle<()>,
}

/// The gRPC side, storing into the same place.
struct Grpc(Arc<Received>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0
            .traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
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
        let grpc_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind the OTLP gRPC receiver: {e}"));
        let grpc_addr = grpc_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("no local address: {e}"));
        let grpc = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Grpc(Arc::clone(&received))))
            .add_service(MetricsServiceServer::new(Grpc(Arc::clone(&received))))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_listener));
        let grpc_server = tokio::spawn(async move {
            let _ = grpc.await;
        });
        Self {
            addr,
            grpc_addr,
            received,
            server,
            grpc_server,
        }
    }

    /// The gRPC endpoint (`http://127.0.0.1:port`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
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

    /// Every span received so far, across requests, resources and scopes.
    pub fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.traces()
            .into_iter()
            .flat_map(|request| request.resource_spans)
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans)
            .collect()
    }

    /// Every metric received so far, across requests, resources and scopes.
    pub fn metric_list(&self) -> Vec<opentelemetry_proto::tonic::metrics::v1::Metric> {
        self.metrics()
            .into_iter()
            .flat_map(|request| request.resource_metrics)
            .flat_map(|resource| resource.scope_metrics)
            .flat_map(|scope| scope.metrics)
            .collect()
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
        self.grpc_server.abort();
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

/// Bytes as lowercase hex: a trace or span id as `traceparent` writes it.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
