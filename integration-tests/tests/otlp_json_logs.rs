//! With JSON logs and OTLP export together — `vitals::telemetry`'s production setup — the
//! request spans are exported whatever the log filter says, and a handler's log event directly
//! inside a request is an event of the request's exported span (`JsonLogLayer` passes it on).

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use vitals_integration_tests::TestShop;
use vitals_integration_tests::otlp::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warn_log_filter_keeps_the_exported_spans_and_their_events() {
    let receiver = OtlpReceiver::start().await;
    // JSON logs at `warn`: the INFO lines are not written (the harness owns stdout), the INFO
    // request spans and events still reach the receiver.
    let telemetry = vitals::telemetry::builder()
        .with_service_name("shop")
        .with_log_format(vitals::telemetry::LogFormat::Json)
        .with_default_filter("warn")
        .without_prometheus()
        .without_otlp_from_env()
        .with_otlp_endpoint(receiver.endpoint())
        .install()
        .expect("telemetry");

    let shop = TestShop::start_sqlite().await;
    let checkout = shop
        .client()
        .get(shop.url("/checkout?product_id=2"))
        .send()
        .await
        .expect("a response");
    assert_eq!(checkout.status(), 200);
    shop.shutdown().await;
    drop(telemetry);

    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let server = spans
        .iter()
        .find(|s| s.name == "GET /checkout")
        .unwrap_or_else(|| panic!("no checkout span in {names:?}"));
    let approved = server
        .events
        .iter()
        .find(|e| e.name == "payment approved")
        .unwrap_or_else(|| panic!("no payment event in {:?}", server.events));
    let value = |key: &str| {
        approved
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.clone())
    };
    assert_eq!(value("product_id"), Some(AnyValue::IntValue(2)));
    assert_eq!(
        value("level"),
        Some(AnyValue::StringValue("INFO".to_owned()))
    );
    // Exported once: by the trace part, not a second time through tracing-opentelemetry.
    assert_eq!(
        names
            .iter()
            .filter(|name| **name == "GET /checkout")
            .count(),
        1,
        "{names:?}"
    );
}
