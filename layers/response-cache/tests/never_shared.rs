//! Property: whatever a handler answers and whoever asks, a stored response is never served to
//! another client when it carried a cookie, belonged to one user, or was stale without a rule
//! that allows it.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use vitals_response_cache::ResponseCacheLayer;

#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // One flag per thing a case varies.
struct Case {
    first_authorized: bool,
    first_cookie: bool,
    second_authorized: bool,
    status: u16,
    directives: Vec<&'static str>,
    vary: Option<&'static str>,
    set_cookie: bool,
}

fn case() -> impl Strategy<Value = Case> {
    let directive = prop::sample::select(vec![
        "public",
        "private",
        "no-store",
        "no-cache",
        "max-age=0",
        "max-age=60",
        "s-maxage=60",
        "must-revalidate",
        "stale-while-revalidate=30",
        "private=\"x-user\"",
        "max-age=bogus",
    ]);
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec![200u16, 203, 204, 301, 404, 410, 500, 206, 302]),
        prop::collection::vec(directive, 0..4),
        prop::option::of(prop::sample::select(vec![
            "*",
            "authorization",
            "accept",
            "cookie",
        ])),
        any::<bool>(),
    )
        .prop_map(
            |(
                first_authorized,
                first_cookie,
                second_authorized,
                status,
                directives,
                vary,
                set_cookie,
            )| Case {
                first_authorized,
                first_cookie,
                second_authorized,
                status,
                directives,
                vary,
                set_cookie,
            },
        )
}

fn request(authorized: Option<&str>, cookie: bool) -> Request<Empty<Bytes>> {
    let mut request = Request::builder().uri("/account/summary");
    if let Some(token) = authorized {
        request = request.header("authorization", token);
    }
    if cookie {
        request = request.header("cookie", "session=first");
    }
    request.body(Empty::new()).unwrap()
}

fn stored_answer(case: &Case) -> (StatusCode, http::HeaderMap, Bytes) {
    let handler_case = case.clone();
    let handler = tower::service_fn(move |request: Request<Empty<Bytes>>| {
        let case = handler_case.clone();
        async move {
            let who = request
                .headers()
                .get("authorization")
                .map_or("anonymous".to_owned(), |v| v.to_str().unwrap().to_owned());
            let mut response = Response::new(Full::new(Bytes::from(format!("for {who}"))));
            *response.status_mut() = StatusCode::from_u16(case.status).unwrap();
            if !case.directives.is_empty() {
                response
                    .headers_mut()
                    .insert("cache-control", case.directives.join(", ").parse().unwrap());
            }
            if let Some(vary) = case.vary {
                response.headers_mut().insert("vary", vary.parse().unwrap());
            }
            if case.set_cookie {
                response
                    .headers_mut()
                    .insert("set-cookie", "session=first-users".parse().unwrap());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut cache = ResponseCacheLayer::new().layer_on(handler);
        let first = request(
            case.first_authorized.then_some("Bearer first"),
            case.first_cookie,
        );
        let answer = cache.ready().await.unwrap().call(first).await.unwrap();
        answer.into_body().collect().await.unwrap();
        let second = request(case.second_authorized.then_some("Bearer second"), false);
        let answer = cache.ready().await.unwrap().call(second).await.unwrap();
        let (head, body) = answer.into_parts();
        (
            head.status,
            head.headers,
            body.collect().await.unwrap().to_bytes(),
        )
    })
}

trait LayerOn {
    fn layer_on<S>(self, inner: S) -> vitals_response_cache::ResponseCache<S>;
}

impl LayerOn for ResponseCacheLayer {
    fn layer_on<S>(self, inner: S) -> vitals_response_cache::ResponseCache<S> {
        tower::Layer::layer(&self, inner)
    }
}

#[test]
fn a_shared_response_is_served_from_the_store() {
    // The property below only means something if stored answers happen: this case is one.
    let case = Case {
        first_authorized: true,
        first_cookie: false,
        second_authorized: false,
        status: 200,
        directives: vec!["public", "max-age=60"],
        vary: None,
        set_cookie: false,
    };
    let (status, headers, body) = stored_answer(&case);
    assert_eq!(status, StatusCode::OK);
    assert!(headers["cache-status"].to_str().unwrap().contains("hit"));
    assert_eq!(body, Bytes::from("for Bearer first"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn nothing_private_or_stale_is_served_to_another_client(case in case()) {
        let (_, headers, body) = stored_answer(&case);
        let cache_status = headers.get("cache-status").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let served_from_store = cache_status.contains("hit");
        if served_from_store {
            let has = |directive: &str| case.directives.iter().any(|d| d.starts_with(directive));
            prop_assert!(!headers.contains_key("set-cookie"), "a stored Set-Cookie was served");
            prop_assert!(!case.first_cookie, "a response to a request with a cookie was shared");
            prop_assert!(!has("private") && !has("no-store") && !has("no-cache"), "{:?}", case);
            prop_assert!(case.vary != Some("*"));
            prop_assert!(!case.set_cookie, "a response that set a cookie was stored");
            if case.first_authorized {
                prop_assert!(has("public") || has("s-maxage") || has("must-revalidate"), "{:?}", case);
            }
            if case.vary == Some("authorization") {
                prop_assert!(!case.first_authorized && !case.second_authorized, "{:?}", case);
            }
            // Fresh (a lifetime above zero: max-age=0 and bogus values are stale), or stale
            // under a rule that allows it.
            let fresh = has("max-age=60") || has("s-maxage=60");
            let stale_allowed = has("stale-while-revalidate") && !has("must-revalidate") && !has("s-maxage");
            prop_assert!(fresh || stale_allowed, "served without freshness: {:?}", case);
            prop_assert_ne!(case.status, 206);
            if !case.first_authorized {
                prop_assert_eq!(body, Bytes::from("for anonymous"), "{:?}", case);
            }
        }
    }
}
