//! Trace context over gRPC with tonic on both sides (HTTP/2 on loopback): the client channel
//! carries the caller's trace through `PropagateTraceContextLayer`; the server continues it and
//! answers with the `trace` metric and a request id in the response metadata.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use http::HeaderMap;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use vitals_core::route::{GrpcMethodRoute, RouteLabeler};
use vitals_trace_context::{PropagateTraceContextLayer, TraceContext, TraceContextLayer};

const CHECK: &str = "/grpc.health.v1.Health/Check";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_carries_the_trace_from_client_to_server() {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop", tonic_health::ServingStatus::Serving)
        .await;
    let layer = TraceContextLayer::new()
        .with_route_labeler(RouteLabeler::from_extractor(GrpcMethodRoute::new([CHECK])));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let traced = tower::ServiceBuilder::new()
        .layer(PropagateTraceContextLayer::new())
        .service(channel);
    let mut client = HealthClient::new(traced);

    let mut incoming = HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let caller = TraceContext::from_headers(&incoming);
    let response = caller
        .clone()
        .scope(async {
            client
                .check(HealthCheckRequest {
                    service: "shop".into(),
                })
                .await
        })
        .await
        .unwrap();
    let metadata = response.metadata();
    let timing = metadata.get("server-timing").unwrap().to_str().unwrap();
    let prefix = "trace;desc=00-4bf92f3577b34da6a3ce929d0e0e4736-";
    assert!(timing.starts_with(prefix), "{timing}");
    let server_span = &timing[prefix.len()..prefix.len() + 16];
    assert_ne!(
        server_span,
        caller.span_id.to_string(),
        "the server's own span"
    );
    assert!(metadata.get("x-request-id").is_some());

    // Outside any request, calls go out unchanged: the server starts a trace of its own.
    let alone = client
        .check(HealthCheckRequest {
            service: "shop".into(),
        })
        .await
        .unwrap();
    let timing = alone
        .metadata()
        .get("server-timing")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        !timing.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{timing}"
    );
}
