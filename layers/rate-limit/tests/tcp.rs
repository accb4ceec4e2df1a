//! The layer on a real axum server over TCP: the peer address from the connection, a spoofed
//! `X-Forwarded-For`, IPv6 clients rotating inside one /64, per-route quotas and the headers
//! a real client receives.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};
use http::{HeaderName, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use vitals_rate_limit::{ClientIp, Key, Quota, RateLimitLayer, RateLimitSettings};

/// Serves `layer` around a small app on a loopback port, with connect info.
async fn serve(layer: RateLimitLayer) -> SocketAddr {
    let app = Router::new()
        .route("/checkout", post(|| async { "paid" }))
        .route("/products", get(|| async { "[]" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

/// One request on a fresh connection.
async fn send(address: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "shop.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn a_burst_then_429_with_the_headers() {
    let address = serve(RateLimitLayer::new(Quota::per_minute(3))).await;
    for left in ["2", "1", "0"] {
        let answer = send(address, "GET", "/products", &[]).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(
            answer.headers["ratelimit-policy"],
            r#""per-minute";q=3;w=60"#
        );
        let remaining = answer.headers["ratelimit"].to_str().unwrap();
        assert!(
            remaining.starts_with(&format!(r#""per-minute";r={left};t="#)),
            "{remaining}"
        );
    }
    let refused = send(address, "GET", "/products", &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers["retry-after"], "20");
    assert_eq!(refused.headers["cache-control"], "no-store");
    assert_eq!(refused.headers["ratelimit"], r#""per-minute";r=0;t=20"#);
    assert_eq!(
        refused.body,
        r#"{"error":"too many requests","violated-policies":["per-minute"]}"#
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_for_does_not_change_the_key() {
    // No proxy trusted (the default): the header is the client's own, and ignored.
    let address = serve(RateLimitLayer::new(Quota::per_minute(2))).await;
    for spoof in ["1.2.3.4", "5.6.7.8"] {
        let answer = send(address, "GET", "/products", &[("x-forwarded-for", spoof)]).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let answer = send(
        address,
        "GET",
        "/products",
        &[("x-forwarded-for", "9.9.9.9")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);

    // Loopback trusted as our proxy: the rightmost untrusted address is the client, whatever
    // it wrote to the left of it.
    let behind_proxy = RateLimitLayer::from_settings(
        RateLimitSettings::new(Quota::per_minute(2)).with_keys([Key::client_ip(
            ClientIp::new()
                .with_trusted_proxies(["127.0.0.0/8"])
                .unwrap(),
        )]),
    );
    let address = serve(behind_proxy).await;
    for spoof in ["1.2.3.4, 203.0.113.7", "5.6.7.8, 203.0.113.7"] {
        let answer = send(address, "GET", "/products", &[("x-forwarded-for", spoof)]).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let third = send(
        address,
        "GET",
        "/products",
        &[("x-forwarded-for", "7.7.7.7, 203.0.113.7")],
    )
    .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client behind the same proxy has its own quota.
    let other = send(
        address,
        "GET",
        "/products",
        &[("x-forwarded-for", "203.0.113.8")],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[tokio::test]
async fn ipv6_clients_rotating_inside_a_64_share_a_quota() {
    let layer =
        RateLimitLayer::from_settings(RateLimitSettings::new(Quota::per_minute(3)).with_keys([
            Key::client_ip(ClientIp::new().with_trusted_proxies(["127.0.0.1"]).unwrap()),
        ]));
    let address = serve(layer).await;
    let inside_one_64 = [
        "2001:db8:5:6::1",
        "2001:db8:5:6::2",
        "2001:db8:5:6:ab:cd::",
        "2001:db8:5:6:ffff:ffff:ffff:ffff",
    ];
    for (i, client) in inside_one_64.into_iter().enumerate() {
        let answer = send(address, "GET", "/products", &[("x-forwarded-for", client)]).await;
        let expected = if i < 3 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(answer.status, expected, "{client}");
    }
    // The next /64 is another client.
    let answer = send(
        address,
        "GET",
        "/products",
        &[("x-forwarded-for", "2001:db8:5:7::1")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_route_of_its_own_by_api_key_then_by_address() {
    let checkout = RateLimitSettings::new(Quota::per_second(1).with_burst(2)).with_keys([
        Key::header(HeaderName::from_static("x-api-key")),
        Key::client_ip(ClientIp::new()),
    ]);
    let layer = RateLimitLayer::per_route().with_route("/checkout", checkout);
    let address = serve(layer.clone()).await;
    // No limit elsewhere: no headers either.
    let free = send(address, "GET", "/products", &[]).await;
    assert_eq!(free.status, StatusCode::OK);
    assert!(free.headers.get("ratelimit").is_none());
    for _ in 0..2 {
        let answer = send(address, "POST", "/checkout", &[("x-api-key", "alice")]).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let over = send(address, "POST", "/checkout", &[("x-api-key", "alice")]).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(over.headers["retry-after"], "1");
    // Bob's key is his own; a request without a key is counted by its address.
    let bob = send(address, "POST", "/checkout", &[("x-api-key", "bob")]).await;
    assert_eq!(bob.status, StatusCode::OK);
    let anonymous = send(address, "POST", "/checkout", &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    let snapshot = layer.handle().route_snapshot("/checkout").unwrap();
    assert_eq!((snapshot.allowed, snapshot.refused), (4, 1));
    assert_eq!(snapshot.keys, 3);
    assert!(layer.handle().snapshot().is_none());
}
