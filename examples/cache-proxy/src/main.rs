//! A reverse proxy built from the response cache and a hyper client, so the HTTP caching test
//! suite (`http-cache-tests`) can judge the cache as it judges Varnish or nginx:
//!
//! ```text
//! cargo run -p cache-proxy -- --listen 127.0.0.1:8080 --origin http://127.0.0.1:8000
//! ```
//!
//! With `--redis redis://…` (and `--redis-prefix`), the cache keeps its responses in Redis, its
//! memory in front for the shortest local TTL (100 ms): the suite then judges the fleet store.
//!
//! Every request goes through [`ResponseCacheLayer`] with its defaults (no heuristic
//! freshness, no jitter, which the suite would count as a shortened lifetime) and, on a miss,
//! to the origin with the request's method, path, headers and body. `scripts/cache-conformance`
//! starts the suite's origin, this proxy and the suite, and checks the counts.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use vitals_response_cache::{RedisStore, ResponseCacheLayer};

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1), and the
/// proxy-only ones.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

struct Args {
    listen: SocketAddr,
    origin: Uri,
    redis: Option<String>,
    redis_prefix: String,
}

fn args() -> Result<Args, String> {
    let mut listen = None;
    let mut origin = None;
    let mut redis = None;
    let mut redis_prefix = "cache-proxy".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                listen = Some(
                    value
                        .parse()
                        .map_err(|error| format!("--listen {value:?}: {error}"))?,
                );
            }
            "--origin" => {
                origin = Some(
                    value
                        .parse()
                        .map_err(|error| format!("--origin {value:?}: {error}"))?,
                );
            }
            "--redis" => redis = Some(value),
            "--redis-prefix" => redis_prefix = value,
            other => {
                return Err(format!(
                    "unknown flag {other:?} (--listen ADDR --origin URL [--redis URL] [--redis-prefix PREFIX])"
                ));
            }
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required")?,
        origin: origin.ok_or("--origin URL is required")?,
        redis,
        redis_prefix,
    })
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("cache-proxy: {message}");
            std::process::exit(2);
        }
    };
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let origin = args.origin;
    let proxy = tower::service_fn(move |request: Request| {
        let client = client.clone();
        let origin = origin.clone();
        async move { Ok::<_, std::convert::Infallible>(forward(&client, &origin, request).await) }
    });
    let mut cache = ResponseCacheLayer::new().with_jitter(0.0);
    if let Some(url) = &args.redis {
        match RedisStore::new(url) {
            Ok(store) => {
                cache = cache.with_redis(
                    store
                        .with_prefix(args.redis_prefix.clone())
                        .with_local_ttl(Duration::ZERO),
                );
            }
            Err(error) => {
                eprintln!("cache-proxy: {error}");
                std::process::exit(2);
            }
        }
    }
    let app = Router::new().fallback_service(proxy).layer(cache);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cache-proxy: cannot listen on {}: {error}", args.listen);
            std::process::exit(1);
        }
    };
    eprintln!("cache-proxy: listening on {}", args.listen);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        eprintln!("cache-proxy: {error}");
        std::process::exit(1);
    }
}

/// Removes the fields that belong to one connection: the hop-by-hop ones and those the
/// message's `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Sends `request` to the origin; a failure to reach it is a `502`.
async fn forward(client: &Client<HttpConnector, Body>, origin: &Uri, request: Request) -> Response {
    let (mut head, body) = request.into_parts();
    let path = head
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    // The origin's own path prefix, if any, then the request's path.
    let base = origin.to_string();
    let Ok(uri) = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
    .parse::<Uri>() else {
        return (StatusCode::BAD_REQUEST, "bad request target").into_response();
    };
    head.uri = uri;
    strip_hop_by_hop(&mut head.headers);
    // This proxy is a surrogate: `Surrogate-Control` directives aimed at it (`;vitals`) apply.
    head.headers.insert(
        HeaderName::from_static("surrogate-capability"),
        HeaderValue::from_static("vitals=\"Surrogate/1.0\""),
    );
    match client.request(Request::from_parts(head, body)).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            Response::from_parts(head, Body::new(body))
        }
        Err(error) => (StatusCode::BAD_GATEWAY, format!("origin: {error}")).into_response(),
    }
}
