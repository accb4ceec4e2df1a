//! Every rule of the cache-headers layer over real HTTP/1.1 on loopback.
#![allow(clippy::unwrap_used, clippy::too_many_lines)] // Test code: a failed unwrap is a failed
// test; the test app lists one route per rule.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vitals_cache_headers::{
    CacheHeadersLayer, CachePolicy, CacheSettings, EntityTag, PreconditionLayer, Validators,
};

const MINUTE: Duration = Duration::from_mins(1);

/// A body of unknown length (a stream).
struct Stream(u8);

impl http_body::Body for Stream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        self.0 -= 1;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"chunk;",
        )))))
    }
}

type Versions = Arc<Mutex<HashMap<String, u32>>>;

fn app() -> Router {
    let catalogue = CacheHeadersLayer::new()
        .with_policy(CachePolicy::public(MINUTE).stale_while_revalidate(Duration::from_mins(5)))
        .with_status_policy(
            StatusCode::NOT_FOUND,
            CachePolicy::public(Duration::from_secs(10)),
        );
    let versions: Versions = Arc::new(Mutex::new(HashMap::from([("1".to_owned(), 1)])));
    let lookup = Arc::clone(&versions);
    let guarded = PreconditionLayer::new(move |request: &http::request::Parts| {
        let id = request
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let version = lookup.lock().unwrap().get(&id).copied();
        async move {
            version.map(|v| Validators {
                etag: EntityTag::strong(&format!("v{v}")),
                last_modified: None,
            })
        }
    })
    .with_required_precondition();

    Router::new()
        .route(
            "/products/{id}",
            get(|Path(id): Path<u32>| async move {
                if id < 100 {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        format!(r#"{{"id":{id}}}"#),
                    )
                        .into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            })
            .route_layer(catalogue.clone()),
        )
        .route(
            "/public-for-all",
            get(|| async { "the same for everyone" }).route_layer(
                CacheHeadersLayer::new()
                    .with_policy(CachePolicy::public(MINUTE))
                    .with_public_even_if_authorized(),
            ),
        )
        .route(
            "/sets-cookie",
            get(|| async { ([(header::SET_COOKIE, "session=abc")], "hello") })
                .route_layer(catalogue.clone()),
        )
        .route(
            "/varies",
            get(|| async { ([(header::VARY, "Origin")], "per origin") })
                .route_layer(catalogue.clone()),
        )
        .route(
            "/handler-policy",
            get(|| async { ([(header::CACHE_CONTROL, "max-age=5")], "mine") })
                .route_layer(catalogue.clone()),
        )
        .route(
            "/handler-public",
            get(|| async {
                (
                    [(header::CACHE_CONTROL, "public, max-age=30, s-maxage=600")],
                    "x",
                )
            }),
        )
        .route(
            "/handler-public-cookie",
            get(|| async {
                (
                    [
                        (header::CACHE_CONTROL, "public, max-age=30"),
                        (header::SET_COOKIE, "session=abc"),
                    ],
                    "x",
                )
            }),
        )
        .route(
            "/handler-s-maxage",
            get(|| async { ([(header::CACHE_CONTROL, "s-maxage=60")], "x") }),
        )
        .route(
            "/handler-must-revalidate",
            get(|| async {
                (
                    [(header::CACHE_CONTROL, "must-revalidate, max-age=60")],
                    "x",
                )
            }),
        )
        .route(
            "/handler-no-store-max-age",
            get(|| async { ([(header::CACHE_CONTROL, "no-store, max-age=60")], "x") }),
        )
        .route(
            "/handler-max-age-cookie",
            get(|| async {
                (
                    [
                        (header::CACHE_CONTROL, "max-age=60, s-maxage=600"),
                        (header::SET_COOKIE, "session=abc"),
                    ],
                    "x",
                )
            }),
        )
        .route(
            "/bare-cookie",
            get(|| async { ([(header::SET_COOKIE, "session=abc")], "x") }),
        )
        .route(
            "/sets-cookie-no-cache",
            get(|| async { ([(header::SET_COOKIE, "session=abc")], "hello") })
                .route_layer(CacheHeadersLayer::new().with_policy(CachePolicy::no_cache())),
        )
        .route(
            "/handler-junk",
            get(|| async { ([(header::CACHE_CONTROL, "max-age=5 junk")], "mine") })
                .route_layer(catalogue.clone()),
        )
        .route(
            "/overridden",
            get(|| async { ([(header::CACHE_CONTROL, "max-age=5")], "theirs") })
                .route_layer(catalogue.clone().with_handler_override()),
        )
        .route(
            "/stream",
            get(|| async { Body::new(Stream(3)) }).route_layer(catalogue.clone()),
        )
        .route(
            "/big",
            get(|| async { vec![b'x'; 2 << 20] }).route_layer(catalogue.clone()),
        )
        .route(
            "/tagged",
            get(|| async {
                (
                    [
                        (header::ETAG, "\"v1\""),
                        (header::LAST_MODIFIED, "Sun, 22 Nov 2026 10:00:00 GMT"),
                    ],
                    "tagged",
                )
            })
            .route_layer(catalogue.clone()),
        )
        .route(
            "/dated",
            get(|| async {
                (
                    [(header::LAST_MODIFIED, "Sun, 22 Nov 2026 10:00:00 GMT")],
                    "dated",
                )
            })
            .route_layer(catalogue.clone().with_etag_limit(0)),
        )
        .route(
            "/dated-only",
            get(|| async {
                (
                    [(header::LAST_MODIFIED, "Sun, 22 Nov 2026 10:00:00 GMT")],
                    "dated",
                )
            }),
        )
        .route(
            "/gzip",
            get(|| async { ([(header::CONTENT_ENCODING, "gzip")], "pretend-gzip") })
                .route_layer(catalogue),
        )
        .route(
            "/fails",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/items/{id}",
            put(
                |State(versions): State<Versions>, Path(id): Path<String>| async move {
                    let mut versions = versions.lock().unwrap();
                    let version = versions.entry(id).or_insert(0);
                    *version += 1;
                    ([(header::ETAG, format!("\"v{version}\""))], "saved")
                },
            )
            .route_layer(guarded),
        )
        .with_state(versions)
        // Everywhere: errors get no-store, bodies get ETags, conditional GETs get 304s.
        .layer(CacheHeadersLayer::new())
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn serve() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await });
    addr
}

async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if method == "PUT" {
        request.push_str("content-length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let mut map = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(": ").unwrap();
        map.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    Reply {
        status,
        headers: map,
        body: raw[split + 4..].to_vec(),
    }
}

async fn fetch(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, "GET", path, headers).await
}

#[tokio::test]
async fn a_route_policy_and_a_computed_etag_then_a_304_with_no_body() {
    let addr = serve().await;
    let first = fetch(addr, "/products/1", &[]).await;
    assert_eq!(first.status, 200);
    // A public route's responses say they depend on credentials, so a shared cache keeps the
    // anonymous copy apart from any authenticated request.
    assert_eq!(first.header("vary"), Some("Authorization"));
    assert_eq!(
        first.header("cache-control"),
        Some("public, max-age=60, stale-while-revalidate=300")
    );
    let etag = first.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");

    let again = fetch(addr, "/products/1", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.header("cache-control"), first.header("cache-control"));
    assert!(again.header("content-type").is_none());
    assert!(again.header("date").is_some());
    assert!(
        again.header("content-length").is_none(),
        "a 304 carries no length"
    );

    // Weak comparison, lists and `*` match too; another tag does not.
    let weak = format!("W/{etag}");
    for condition in [weak.as_str(), &format!(r#""nope", {etag}"#), "*"] {
        let reply = fetch(addr, "/products/1", &[("if-none-match", condition)]).await;
        assert_eq!(reply.status, 304, "{condition}");
    }
    let other = fetch(addr, "/products/1", &[("if-none-match", r#""nope""#)]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body, first.body);
}

#[tokio::test]
async fn head_gets_the_same_headers_as_get() {
    let addr = serve().await;
    let get_reply = fetch(addr, "/products/2", &[]).await;
    let head = send(addr, "HEAD", "/products/2", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for name in ["etag", "cache-control", "content-length", "content-type"] {
        assert_eq!(head.header(name), get_reply.header(name), "{name}");
    }
    let etag = get_reply.header("etag").unwrap();
    let revalidated = send(addr, "HEAD", "/products/2", &[("if-none-match", etag)]).await;
    assert_eq!(revalidated.status, 304);
    assert!(
        revalidated.header("content-length").is_none(),
        "a 304 carries no length"
    );
}

#[tokio::test]
async fn authorized_requests_never_get_a_public_policy_unless_the_route_says_so() {
    let addr = serve().await;
    let me = fetch(addr, "/products/1", &[("authorization", "Bearer demo")]).await;
    assert_eq!(
        me.header("cache-control"),
        Some("private, max-age=60, stale-while-revalidate=300")
    );
    assert_eq!(me.header("vary"), Some("Authorization"));
    let shared = fetch(addr, "/public-for-all", &[("authorization", "Bearer demo")]).await;
    assert_eq!(shared.header("cache-control"), Some("public, max-age=60"));
    assert!(shared.header("vary").is_none());
    // A handler's own `public` on an authenticated request is made private too.
    let handler = fetch(addr, "/handler-public", &[("authorization", "Bearer demo")]).await;
    assert_eq!(handler.header("cache-control"), Some("private, max-age=30"));
    assert_eq!(handler.header("vary"), Some("Authorization"));
    // Vary is merged, never duplicated.
    let varies = fetch(addr, "/varies", &[("authorization", "Bearer demo")]).await;
    assert_eq!(varies.header("vary"), Some("Origin, Authorization"));
    assert_eq!(varies.headers.get_all("vary").iter().count(), 1);
}

#[tokio::test]
async fn a_response_that_sets_a_cookie_is_never_public() {
    let addr = serve().await;
    let reply = fetch(addr, "/sets-cookie", &[]).await;
    assert_eq!(
        reply.header("cache-control"),
        Some("private, max-age=60, stale-while-revalidate=300")
    );
    // no-cache lets shared caches store too: with a cookie it becomes private as well.
    let revalidated = fetch(addr, "/sets-cookie-no-cache", &[]).await;
    assert_eq!(
        revalidated.header("cache-control"),
        Some("private, no-cache")
    );
    // A handler's own `public` is made private for a response that sets a cookie.
    let handler = fetch(addr, "/handler-public-cookie", &[]).await;
    assert_eq!(handler.header("cache-control"), Some("private, max-age=30"));
}

/// Issue 14: whatever the handler wrote and whichever mode the layer is in, a response to an
/// authenticated request or one that sets a cookie leaves the layer out of shared caches' reach.
#[tokio::test]
async fn no_mode_lets_shared_caches_store_a_response_for_one_user() {
    let addr = serve().await;
    let bearer: &'static [(&str, &str)] = &[("authorization", "Bearer demo")];
    let cache_control = |path: &'static str, headers: &'static [(&'static str, &'static str)]| async move {
        fetch(addr, path, headers)
            .await
            .header("cache-control")
            .map(str::to_owned)
    };
    // RFC 9111 §3.5: `s-maxage` and `must-revalidate` let shared caches store an authorized
    // response, as `public` does.
    assert_eq!(
        cache_control("/handler-s-maxage", bearer).await.as_deref(),
        Some("private")
    );
    assert_eq!(
        cache_control("/handler-s-maxage", &[]).await.as_deref(),
        Some("s-maxage=60"),
        "a response for everyone keeps the handler's value"
    );
    let revalidate = fetch(addr, "/handler-must-revalidate", bearer).await;
    assert_eq!(
        revalidate.header("cache-control"),
        Some("private, must-revalidate, max-age=60")
    );
    assert_eq!(revalidate.header("vary"), Some("Authorization"));
    // A value nobody can read cannot be kept safely.
    assert_eq!(
        cache_control("/handler-junk", bearer).await.as_deref(),
        Some("no-store")
    );
    // `no-store` never comes with `max-age` on a response for one user.
    assert_eq!(
        cache_control("/handler-no-store-max-age", bearer)
            .await
            .as_deref(),
        Some("no-store")
    );
    // With `Set-Cookie`, `max-age` alone would let shared caches store it.
    assert_eq!(
        cache_control("/handler-max-age-cookie", &[])
            .await
            .as_deref(),
        Some("private, max-age=60")
    );
    assert_eq!(
        cache_control("/bare-cookie", &[]).await.as_deref(),
        Some("private")
    );
    // `with_handler_override()` on a status without a policy (a login redirect) kept the handler's
    // `public` — here with no outer layer to catch it.
    let login = Router::new()
        .route(
            "/login",
            get(|| async {
                (
                    StatusCode::SEE_OTHER,
                    [
                        (header::LOCATION, "/me"),
                        (header::CACHE_CONTROL, "public, max-age=60"),
                        (header::SET_COOKIE, "session=abc"),
                    ],
                )
            }),
        )
        .layer(
            CacheHeadersLayer::new()
                .with_policy(CachePolicy::public(MINUTE))
                .with_handler_override(),
        );
    let request = axum::http::Request::get("/login")
        .body(Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(login, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::CACHE_CONTROL],
        "private, max-age=60"
    );
}

#[tokio::test]
async fn errors_get_no_store_unless_a_policy_names_their_status() {
    let addr = serve().await;
    let missing = fetch(addr, "/products/500", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("cache-control"), Some("public, max-age=10"));
    assert!(missing.header("etag").is_none());
    let unrouted = fetch(addr, "/nowhere", &[]).await;
    assert_eq!(unrouted.header("cache-control"), Some("no-store"));
    let failed = fetch(addr, "/fails", &[]).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.header("cache-control"), Some("no-store"));
    assert!(failed.header("etag").is_none());
}

#[tokio::test]
async fn the_handler_wins_unless_configured_otherwise_and_junk_is_left_alone() {
    let addr = serve().await;
    assert_eq!(
        fetch(addr, "/handler-policy", &[])
            .await
            .header("cache-control"),
        Some("max-age=5")
    );
    assert_eq!(
        fetch(addr, "/handler-junk", &[])
            .await
            .header("cache-control"),
        Some("max-age=5 junk")
    );
    assert_eq!(
        fetch(addr, "/overridden", &[])
            .await
            .header("cache-control"),
        Some("public, max-age=60, stale-while-revalidate=300")
    );
}

#[tokio::test]
async fn streaming_and_large_bodies_pass_through_without_an_etag() {
    let addr = serve().await;
    let stream = fetch(addr, "/stream", &[]).await;
    assert_eq!(stream.status, 200);
    assert!(stream.header("etag").is_none());
    assert_eq!(
        String::from_utf8_lossy(&stream.body)
            .matches("chunk;")
            .count(),
        3
    );
    let big = fetch(addr, "/big", &[]).await;
    assert!(big.header("etag").is_none());
    assert_eq!(big.body.len(), 2 << 20);
}

#[tokio::test]
async fn handler_validators_are_used_as_they_are() {
    let addr = serve().await;
    let tagged = fetch(addr, "/tagged", &[]).await;
    assert_eq!(tagged.header("etag"), Some("\"v1\""));
    // A handler's Last-Modified is its validator: no ETag is computed over it.
    let dated = fetch(addr, "/dated-only", &[]).await;
    assert!(dated.header("etag").is_none());
    assert!(dated.header("last-modified").is_some());
    let not_modified = fetch(addr, "/tagged", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(not_modified.status, 304);
    assert!(
        not_modified.header("last-modified").is_none(),
        "a 304 with an ETag leaves Last-Modified out"
    );

    let later = "Sun, 22 Nov 2026 11:00:00 GMT";
    let dated = fetch(addr, "/dated", &[("if-modified-since", later)]).await;
    assert_eq!(dated.status, 304);
    assert_eq!(
        dated.header("last-modified"),
        Some("Sun, 22 Nov 2026 10:00:00 GMT")
    );
    let earlier = "Sun, 22 Nov 2026 09:00:00 GMT";
    assert_eq!(
        fetch(addr, "/dated", &[("if-modified-since", earlier)])
            .await
            .status,
        200
    );
    // If-Modified-Since counts only without If-None-Match.
    let both = fetch(
        addr,
        "/tagged",
        &[("if-modified-since", later), ("if-none-match", "\"v0\"")],
    )
    .await;
    assert_eq!(both.status, 200);
    // If-Match on a GET that does not match: 412.
    let mismatch = fetch(addr, "/tagged", &[("if-match", "\"v0\"")]).await;
    assert_eq!(mismatch.status, 412);
    assert!(mismatch.body.is_empty());
}

#[tokio::test]
async fn an_encoded_body_gets_an_encoding_specific_tag_and_vary() {
    let addr = serve().await;
    let reply = fetch(addr, "/gzip", &[]).await;
    let etag = reply.header("etag").unwrap();
    assert!(etag.ends_with("-gzip\""), "{etag}");
    assert_eq!(reply.header("vary"), Some("Accept-Encoding, Authorization"));
}

#[tokio::test]
async fn malformed_conditionals_are_ignored() {
    let addr = serve().await;
    let etag = fetch(addr, "/products/3", &[])
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    let unquoted = etag.trim_matches('"').to_owned();
    let long_list = vec![r#""x""#; 2_100].join(", ");
    assert!(long_list.len() > 10_000);
    for (name, value) in [
        ("if-none-match", unquoted.as_str()),
        ("if-modified-since", "not a date"),
        ("if-none-match", long_list.as_str()),
        ("if-match", "W/"),
        ("if-unmodified-since", "Sun, 99 Nov 2026 99:99:99 GMT"),
    ] {
        let reply = fetch(addr, "/products/3", &[(name, value)]).await;
        assert_eq!(reply.status, 200, "{name}: {value}");
    }
}

#[tokio::test]
async fn writes_are_checked_against_the_current_version_before_the_handler() {
    let addr = serve().await;
    let missing = send(addr, "PUT", "/items/1", &[]).await;
    assert_eq!(missing.status, 428);
    // A condition that does not guard a write does not count.
    let unguarded = send(
        addr,
        "PUT",
        "/items/1",
        &[("if-modified-since", "Sun, 22 Nov 2026 10:00:00 GMT")],
    )
    .await;
    assert_eq!(unguarded.status, 428);
    // An If-Match nobody can read fails closed.
    let unreadable = send(addr, "PUT", "/items/1", &[("if-match", "v1")]).await;
    assert_eq!(unreadable.status, 412);
    let stale = send(addr, "PUT", "/items/1", &[("if-match", "\"v0\"")]).await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.header("cache-control"), Some("no-store"));
    let fresh = send(addr, "PUT", "/items/1", &[("if-match", "\"v1\"")]).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("etag"), Some("\"v2\""));
    // The same precondition again: the version moved on, so it is a lost update now.
    let lost = send(addr, "PUT", "/items/1", &[("if-match", "\"v1\"")]).await;
    assert_eq!(lost.status, 412);
    // Create-only: If-None-Match: * fails on an existing item, passes on a new one.
    let exists = send(addr, "PUT", "/items/1", &[("if-none-match", "*")]).await;
    assert_eq!(exists.status, 412);
    let created = send(addr, "PUT", "/items/9", &[("if-none-match", "*")]).await;
    assert_eq!(created.status, 200);
}

#[tokio::test]
async fn routes_follow_their_own_settings_from_one_table() {
    let cache = CacheHeadersLayer::new()
        .with_policy(CachePolicy::no_cache())
        .with_route(
            "/products/{id}",
            CacheSettings::new()
                .with_policy(CachePolicy::public(MINUTE))
                .with_status_policy(
                    StatusCode::NOT_FOUND,
                    CachePolicy::public(Duration::from_secs(10)),
                ),
        )
        .with_route(
            "/me",
            CacheSettings::new().with_policy(CachePolicy::no_store()),
        );
    let app = Router::new()
        .route(
            "/products/{id}",
            get(|Path(id): Path<u32>| async move {
                if id == 0 {
                    (StatusCode::NOT_FOUND, "no such product")
                } else {
                    (StatusCode::OK, "a product")
                }
            }),
        )
        .route("/me", get(|| async { "me" }))
        .route("/other", get(|| async { "other" }))
        .layer(cache);
    let cache_control = |path: &'static str| {
        let app = app.clone();
        async move {
            let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
            let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
            response.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(cache_control("/products/1").await, "public, max-age=60");
    assert_eq!(cache_control("/products/0").await, "public, max-age=10");
    assert_eq!(cache_control("/me").await, "no-store");
    assert_eq!(cache_control("/other").await, "no-cache");
}
