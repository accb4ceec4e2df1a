//! The shop's trace context: an incoming trace continued, answered in Server-Timing and
//! x-request-id, and carried to the payment service as a new client span.

use vitals_integration_tests::TestShop;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn checkout_carries_the_callers_trace_to_the_payment_service() {
    let shop = TestShop::start_sqlite().await;
    let response = shop
        .client()
        .get(shop.url("/checkout?product_id=3"))
        .header("traceparent", PARENT)
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .header("x-request-id", "order-77")
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "order-77");
    let timing = response.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let server_span = timing
        .strip_prefix("trace;desc=00-4bf92f3577b34da6a3ce929d0e0e4736-")
        .and_then(|rest| rest.get(..16))
        .unwrap_or_else(|| panic!("no trace metric in {timing}"))
        .to_owned();

    let sent = shop
        .shop()
        .payment_stub()
        .and_then(shop::payment::PaymentStub::last_traceparent)
        .expect("the payment service got a traceparent");
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    let client_span = &sent[36..52];
    assert_ne!(client_span, server_span, "a new client span id");
    assert_ne!(client_span, "00f067aa0ba902b7");

    // Without a traceparent, a new trace; a hostile request id is replaced.
    let fresh = shop
        .client()
        .get(shop.url("/products/1"))
        .header("x-request-id", "x".repeat(200))
        .send()
        .await
        .expect("a response");
    let id = fresh.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 32);
    let timing = fresh.headers()["server-timing"].to_str().expect("ascii");
    assert!(timing.starts_with("trace;desc=00-"), "{timing}");
    assert!(!timing.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    shop.shutdown().await;
}

/// The W3C test-suite contract: each listed call is POSTed, in order, with the propagated
/// trace; non-loopback URLs are refused.
#[tokio::test]
async fn the_w3c_test_endpoint_calls_back_with_the_propagated_trace() {
    use std::sync::{Arc, Mutex};

    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let record = Arc::clone(&seen);
    let harness = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((header("traceparent"), header("tracestate"), body));
            async {}
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let callback = format!(
        "http://{}/callback",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move { axum::serve(listener, harness).await });

    // Off unless asked for: the endpoint makes the shop call URLs it is given.
    let default_shop = TestShop::start_sqlite().await;
    let absent = default_shop
        .client()
        .post(default_shop.url("/trace-context/test"))
        .json(&serde_json::json!([]))
        .send()
        .await
        .expect("a response");
    assert_eq!(absent.status(), 404);
    default_shop.shutdown().await;

    let mut config = vitals_integration_tests::test_config();
    config.w3c_test_endpoint = true;
    let shop = TestShop::start(config).await;
    let calls = serde_json::json!([
        {"url": callback, "arguments": [{"url": "x", "arguments": []}]},
        {"url": callback, "arguments": []},
    ]);
    let response = shop
        .client()
        .post(shop.url("/trace-context/test"))
        .header("traceparent", PARENT)
        .header("tracestate", "foo=1,bar=2")
        .json(&calls)
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 200);
    let seen = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(seen.len(), 2);
    for (traceparent, tracestate, _) in &seen {
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{traceparent}"
        );
        assert!(!traceparent.contains("00f067aa0ba902b7"));
        assert_eq!(tracestate, "foo=1,bar=2");
    }
    assert_eq!(seen[0].2, r#"[{"arguments":[],"url":"x"}]"#);

    let refused = shop
        .client()
        .post(shop.url("/trace-context/test"))
        .json(&serde_json::json!([{"url": "http://example.com/", "arguments": []}]))
        .send()
        .await
        .expect("a response");
    assert_eq!(refused.status(), 400);
    shop.shutdown().await;
}
