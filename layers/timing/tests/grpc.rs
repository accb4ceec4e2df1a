//! RequestTimingLayer around a real tonic gRPC service (tonic-health) over HTTP/2 on loopback.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use common::Reports;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vitals_core::outcome::{GrpcStatus, Outcome};
use vitals_core::route::{GrpcMethodRoute, RouteLabeler};
use vitals_timing::RequestTimingLayer;

const CHECK: &str = "/grpc.health.v1.Health/Check";
const WATCH: &str = "/grpc.health.v1.Health/Watch";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_timed_with_their_status_and_streams_to_the_end() {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("shop", tonic_health::ServingStatus::Serving)
        .await;
    let reports = Reports::default();
    let layer = reports.attach(RequestTimingLayer::new().with_route_labeler(
        RouteLabeler::from_extractor(GrpcMethodRoute::new([CHECK, WATCH])),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
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
    let mut client = HealthClient::new(channel);

    // Unary, OK: the status travels in the trailers.
    let serving = client
        .check(HealthCheckRequest {
            service: "shop".into(),
        })
        .await
        .unwrap();
    assert_eq!(serving.into_inner().status(), ServingStatus::Serving);
    let records = reports.wait_for(1).await;
    assert_eq!(records[0].route, CHECK);
    assert_eq!(records[0].status, Some(200));
    assert_eq!(records[0].grpc_status, Some(GrpcStatus::OK));
    assert_eq!(records[0].outcome, Outcome::Completed);

    // Unary, NOT_FOUND: a client error, not a server error.
    let missing = client
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let records = reports.wait_for(2).await;
    assert_eq!(
        records[1].grpc_status.map(GrpcStatus::name),
        Some("NOT_FOUND")
    );
    assert_eq!(records[1].outcome, Outcome::Completed);

    // Server streaming: the call lasts as long as the stream, not until the head.
    let mut stream = client
        .watch(HealthCheckRequest {
            service: "shop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    tokio::time::sleep(Duration::from_millis(50)).await;
    reporter
        .set_service_status("shop", tonic_health::ServingStatus::NotServing)
        .await;
    let second = stream.message().await.unwrap().unwrap();
    assert_eq!(second.status(), ServingStatus::NotServing);
    assert_eq!(
        reports.all().len(),
        2,
        "the stream is still open: not reported yet"
    );
    drop(stream);

    let records = reports.wait_for(3).await;
    let watch = &records[2];
    assert_eq!(watch.route, WATCH);
    assert_eq!(
        watch.outcome,
        Outcome::Cancelled,
        "the client ended the stream"
    );
    assert!(
        watch.total >= watch.head.unwrap() + Duration::from_millis(50),
        "{watch:?}"
    );
    server.abort();
}
