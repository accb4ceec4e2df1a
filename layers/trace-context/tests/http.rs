//! TraceContextLayer over real TCP: continuing and starting traces, hostile headers, the
//! response headers, propagation from inside a handler, and the request span's fields.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;

use common::{PARENT, app};

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

async fn send(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let mut map = http::HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Reply {
        status,
        headers: map,
        body: body.to_owned(),
    }
}

async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

#[tokio::test]
async fn an_incoming_trace_is_continued_and_propagated() {
    let addr = serve().await;
    let reply = send(
        addr,
        "/items/7",
        &[
            ("traceparent", PARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("x-request-id", "req-42"),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let fields: Vec<&str> = reply.body.split(' ').collect();
    let (trace, span, downstream) = (fields[0], fields[1], fields[2]);
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(downstream.starts_with(&format!("00-{trace}-")));
    assert!(
        !downstream.contains(span),
        "downstream gets a new client span id"
    );
    assert_eq!(
        reply.headers["server-timing"],
        format!("trace;desc=00-{trace}-{span}-01").as_str()
    );
    assert_eq!(reply.headers["x-request-id"], "req-42");
}

#[tokio::test]
async fn an_oversized_tracestate_is_trimmed_before_it_travels_downstream() {
    let addr = serve().await;
    // The first vendors' short entries, then 30 members of 250-character values: ~8 KB a
    // client could otherwise make every downstream call carry.
    let mut members = vec![
        "congo=t61rcWkgMzE".to_owned(),
        "rojo=00f067aa0ba902b7".to_owned(),
    ];
    members.extend((0..30).map(|i| format!("v{i}={}", "x".repeat(250))));
    let sent = members.join(",");
    let reply = send(
        addr,
        "/downstream-state",
        &[("traceparent", PARENT), ("tracestate", &sent)],
    )
    .await;
    assert_eq!(reply.status, 200);
    let forwarded = reply.body;
    assert!(
        forwarded.len() <= vitals_trace_context::DEFAULT_TRACESTATE_LIMIT,
        "{} characters forwarded",
        forwarded.len()
    );
    // Long members went from the end until the rest fit: the short first vendors' entries and
    // one long member remain, in order.
    let keys: Vec<&str> = forwarded
        .split(',')
        .map(|member| member.split_once('=').unwrap().0)
        .collect();
    assert_eq!(keys, ["congo", "rojo", "v0"], "{forwarded}");
    let value = http::HeaderValue::from_str(&forwarded).unwrap();
    assert!(vitals_trace_context::TraceState::parse([&value]).is_some());
}

#[tokio::test]
async fn bad_input_starts_a_new_trace_and_replaces_bad_request_ids() {
    let addr = serve().await;
    let long_parent = format!("00-{}", "a".repeat(10 * 1024));
    let many_members: String = (0..1_000)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    let long_id = "x".repeat(10 * 1024);
    for headers in [
        vec![(
            "traceparent",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        )],
        vec![("traceparent", long_parent.as_str())],
        vec![("traceparent", &long_parent[..5 * 1024])],
        vec![("traceparent", PARENT), ("traceparent", PARENT)],
        vec![
            ("traceparent", PARENT),
            ("tracestate", many_members.as_str()),
        ],
        vec![("x-request-id", long_id.as_str())],
        vec![("x-request-id", "has space")],
        // A control character (CR/LF cannot even reach a handler: the HTTP parser refuses them).
        vec![("x-request-id", "tab\there")],
        vec![("traceparent", "00-\u{e9}\u{e9}-01")],
    ] {
        let reply = send(addr, "/items/1", &headers).await;
        assert_eq!(reply.status, 200, "{headers:?}");
        let trace = reply.body.split(' ').next().unwrap();
        let continued = trace == "4bf92f3577b34da6a3ce929d0e0e4736";
        let only_state_bad = headers.iter().any(|(n, _)| *n == "tracestate");
        assert_eq!(continued, only_state_bad, "{headers:?}");
        let id = reply.headers["x-request-id"].to_str().unwrap();
        assert!(
            id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()),
            "{id}"
        );
        assert_ne!(id, long_id);
    }
}
