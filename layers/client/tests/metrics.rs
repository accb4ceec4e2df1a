//! `http.client.request.duration` for calls over TCP: one sample per attempt, labelled as the
//! OpenTelemetry conventions say.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tower::{ServiceBuilder, ServiceExt};
use vitals_client::{ClientMetricsLayer, DeadlineLayer, RetryLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_attempt_is_a_sample_with_the_semconv_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/busy", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new().with_backoff(Duration::ZERO, Duration::ZERO))
        .layer(ClientMetricsLayer::new())
        .layer(DeadlineLayer::new().with_timeout(Duration::from_millis(100)))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let call = |path: &str| {
        let request = http::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .body(Full::default())
            .unwrap();
        client.clone().oneshot(request)
    };
    assert_eq!(call("/ok").await.unwrap().status(), 200);
    // Three attempts, each a sample.
    assert_eq!(call("/busy").await.unwrap().status(), 503);
    // Cut by the call's timeout: no status, `error.type` timeout; retried too.
    assert!(call("/slow").await.is_err());

    let mut samples: Vec<(Vec<(String, String)>, usize)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "http.client.request.duration")
        .map(|(key, _, _, value)| {
            let DebugValue::Histogram(values) = value else {
                panic!("not a histogram: {value:?}");
            };
            assert!(
                values
                    .iter()
                    .all(|v| v.into_inner() >= 0.0 && v.into_inner() < 5.0)
            );
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            (labels, values.len())
        })
        .collect();
    samples.sort();
    let port = port.to_string();
    let common = |extra: &[(&str, &str)]| {
        let mut labels = vec![
            ("http.request.method".to_owned(), "GET".to_owned()),
            ("server.address".to_owned(), "127.0.0.1".to_owned()),
            ("server.port".to_owned(), port.clone()),
        ];
        labels.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        labels.sort();
        labels
    };
    let mut expected = vec![
        (common(&[("http.response.status_code", "200")]), 1),
        (
            common(&[("error.type", "503"), ("http.response.status_code", "503")]),
            3,
        ),
        (common(&[("error.type", "timeout")]), 3),
    ];
    expected.sort();
    assert_eq!(samples, expected);
}
