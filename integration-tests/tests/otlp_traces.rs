//! The shop's request spans leave through the OTLP exporter (HTTP/protobuf) and arrive,
//! decoded by the protocol's own types, at a real receiver: with the caller's trace id and
//! parent, the route-template name, SERVER kind and semconv attributes — and `/checkout`'s call
//! to the payment service as a CLIENT child span whose id reached the service.

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use vitals_integration_tests::TestShop;
use vitals_integration_tests::otlp::{OtlpReceiver, hex};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The server span's HTTP attributes as the OpenTelemetry conventions type and name them, and
/// none of the ones no backend reads.
fn server_attributes_follow_the_conventions(server: &Span, base_url: &str) {
    // Integers, as the conventions type them.
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(&AnyValue::IntValue(200))
    );
    // The recommended HTTP server attributes, from the connection's request.
    let base = reqwest::Url::parse(base_url).expect("the shop's URL");
    assert_eq!(
        attribute(server, "server.address"),
        Some(&AnyValue::StringValue(
            base.host_str().expect("a host").to_owned()
        ))
    );
    assert_eq!(
        attribute(server, "server.port"),
        Some(&AnyValue::IntValue(i64::from(base.port().expect("a port"))))
    );
    assert_eq!(
        attribute(server, "network.protocol.version"),
        Some(&AnyValue::StringValue("1.1".to_owned()))
    );
    assert_eq!(
        attribute(server, "user_agent.original"),
        Some(&AnyValue::StringValue("vitals-test/1.0".to_owned()))
    );
    // Not the attributes no backend reads: busy/idle time, source location, thread; nor the
    // span's own ids again.
    for key in [
        "trace_id",
        "span_id",
        "busy_ns",
        "idle_ns",
        "code.filepath",
        "code.file.path",
        "code.lineno",
        "code.line.number",
        "code.namespace",
        "thread.id",
        "thread.name",
    ] {
        assert!(attribute(server, key).is_none(), "{key} exported");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_an_otlp_receiver_with_the_callers_trace() {
    let receiver = OtlpReceiver::start().await;
    // The shop's own telemetry setup, sending to the receiver (no log output: the harness
    // owns stdout).
    let telemetry = vitals::telemetry::builder()
        .with_service_name("shop")
        .without_logs()
        .without_prometheus()
        .with_otlp_endpoint(receiver.endpoint())
        .install()
        .expect("telemetry");
    assert!(telemetry.exports_traces());

    let shop = TestShop::start_sqlite().await;
    let base_url = shop.url("");
    let parent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let product = shop
        .client()
        .get(shop.url("/products/7"))
        .header("traceparent", &parent)
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .header("user-agent", "vitals-test/1.0")
        .send()
        .await
        .expect("a response");
    assert_eq!(product.status(), 200);
    let timing = product.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let checkout = shop
        .client()
        .get(shop.url("/checkout?product_id=2"))
        .header("traceparent", &parent)
        .send()
        .await
        .expect("a response");
    assert_eq!(checkout.status(), 200);
    let sent = shop
        .shop()
        .payment_stub()
        .and_then(shop::payment::PaymentStub::last_traceparent)
        .expect("the payment service got a traceparent");
    shop.shutdown().await;
    // Dropping the guard exports what is left (off the runtime's threads).
    drop(telemetry);

    let spans: Vec<Span> = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let server = spans
        .iter()
        .find(|s| s.name == "GET /products/{id}")
        .unwrap_or_else(|| panic!("no product span in {names:?}"));
    assert_eq!(hex(&server.trace_id), TRACE);
    assert_eq!(hex(&server.parent_span_id), CALLER_SPAN);
    assert_eq!(server.kind, SpanKind::Server as i32);
    assert_eq!(server.trace_state, "rojo=00f067aa0ba902b7");
    assert_eq!(
        attribute(server, "http.route"),
        Some(&AnyValue::StringValue("/products/{id}".to_owned()))
    );
    assert_eq!(
        attribute(server, "http.request.method"),
        Some(&AnyValue::StringValue("GET".to_owned()))
    );
    server_attributes_follow_the_conventions(server, &base_url);
    // The id the client was told in Server-Timing is the exported span's.
    let told = format!("trace;desc=00-{TRACE}-{}-01", hex(&server.span_id));
    assert!(timing.starts_with(&told), "{timing} vs {told}");

    let checkout_span = spans
        .iter()
        .find(|s| s.name == "GET /checkout")
        .unwrap_or_else(|| panic!("no checkout span in {names:?}"));
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("no client span in {names:?}"));
    assert_eq!(hex(&client.trace_id), TRACE);
    assert_eq!(client.parent_span_id, checkout_span.span_id);
    // A log line of the handler, in no span of its own, is an event of the request's span.
    let approved = checkout_span
        .events
        .iter()
        .find(|e| e.name == "payment approved")
        .unwrap_or_else(|| panic!("no payment event in {:?}", checkout_span.events));
    assert!(
        approved.attributes.iter().any(|kv| kv.key == "product_id"
            && kv.value.as_ref().and_then(|v| v.value.as_ref()) == Some(&AnyValue::IntValue(2))),
        "{approved:?}"
    );
    assert_eq!(sent, format!("00-{TRACE}-{}-01", hex(&client.span_id)));
    // The downstream call's outcome is on its span.
    assert_eq!(
        attribute(client, "http.response.status_code"),
        Some(&AnyValue::IntValue(200))
    );
    assert!(attribute(client, "server.port").is_some());
}
