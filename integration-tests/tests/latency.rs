//! The shop's latency: one series per route template in `/_vitals/latency` and in `/metrics`,
//! where the duration histogram renders with the semconv buckets and labels.

use serde_json::Value;
use vitals_integration_tests::TestShop;

#[tokio::test]
async fn the_shop_exports_one_series_per_route_template() {
    let shop = TestShop::start_sqlite().await;
    for path in [
        "/products/1",
        "/products/2",
        "/products/2",
        "/products/99999999",
    ] {
        shop.get(path).await.bytes().await.expect("a body");
    }

    // The JSON snapshot: the body's end is recorded just after the client has the last byte,
    // so poll briefly for the third request.
    let mut products = Value::Null;
    for _ in 0..100 {
        let snapshot = shop.get_json("/_vitals/latency", 200).await;
        assert_eq!(snapshot["window"], "1m");
        let series = snapshot["series"].as_array().cloned().unwrap_or_default();
        assert!(
            series.iter().all(|s| {
                let route = s["route"].as_str().unwrap_or_default();
                route != "/products/1" && route != "/products/2"
            }),
            "a series per id: {series:?}"
        );
        if let Some(found) = series
            .iter()
            .find(|s| s["route"] == "/products/{id}" && s["status"] == 200 && s["count"] == 3)
        {
            products = found.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(products["method"], "GET", "{products}");
    assert!(products["p99_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let not_found = shop.get_json("/_vitals/latency?group=route", 200).await["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|s| s["route"] == "/products/{id}")
        .expect("the route, statuses merged");
    assert_eq!(not_found["count"], 4);
    assert_eq!(not_found["error_rate"], 0.0, "a 404 is not a server error");

    // The Prometheus text: one recorder, the semconv histogram in seconds with buckets.
    let text = shop
        .get("/metrics")
        .await
        .text()
        .await
        .expect("a metrics body");
    let labels =
        r#"http_request_method="GET",http_route="/products/{id}",http_response_status_code="200""#;
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    for bound in ["0.005", "0.1", "10", "+Inf"] {
        let line =
            format!(r#"http_server_request_duration_seconds_bucket{{{labels},le="{bound}"}}"#);
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    assert!(text.contains(&format!(
        "http_server_request_duration_seconds_count{{{labels}}}"
    )));
    assert!(!text.contains(r#"http_route="/products/1""#), "{text}");
    shop.shutdown().await;
}
