//! A job continues the trace of the request that enqueued it: at a real OTLP receiver, the
//! `POST /reports` server span and the report's `job` span (CONSUMER) share the caller's trace
//! id, and the job's parent is the request's span.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use vitals_integration_tests::TestShop;
use vitals_integration_tests::otlp::{OtlpReceiver, hex};

const TRACE: &str = "5af92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_span_continues_the_trace_of_the_request_that_enqueued_it() {
    let receiver = OtlpReceiver::start().await;
    let telemetry = vitals::telemetry::builder()
        .with_service_name("shop")
        .without_logs()
        .without_prometheus()
        .with_otlp_endpoint(receiver.endpoint())
        .install()
        .expect("telemetry");
    assert!(telemetry.exports_traces());

    let shop = TestShop::start_sqlite().await;
    let accepted = shop
        .client()
        .post(shop.url("/reports"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"].to_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = shop.get(&location).await.json().await.unwrap();
        if status["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the report never ran: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shop.shutdown().await;
    // Dropping the guard exports what is left (off the runtime's threads).
    drop(telemetry);

    let spans: Vec<Span> = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let request = spans
        .iter()
        .find(|s| s.name == "POST /reports")
        .unwrap_or_else(|| panic!("no request span in {names:?}"));
    let job = spans
        .iter()
        .find(|s| s.name == "shop.report process")
        .unwrap_or_else(|| panic!("no job span in {names:?}"));
    assert_eq!(hex(&request.trace_id), TRACE);
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(
        hex(&job.trace_id),
        TRACE,
        "the job is in the request's trace"
    );
    assert_eq!(
        hex(&job.parent_span_id),
        hex(&request.span_id),
        "the job's parent is the request's span"
    );
    assert_eq!(job.kind, SpanKind::Consumer as i32);
}
