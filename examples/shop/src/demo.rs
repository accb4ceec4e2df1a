//! `--demo-traffic`: the shop calls its own routes in the background, so the dashboard shows
//! every problem within seconds — the N+1 route, the blocking report, slow calls, cacheable
//! reads, and now and then a burst past `/slow`'s limit. The catalogue is read as a browser or
//! a CDN reads it: each `/products` and `/products/{id}` call sends back the `ETag` of the
//! previous answer in `If-None-Match`, so most of them are revalidated with a `304`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ETAG, HeaderValue, IF_NONE_MATCH};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use tokio::task::JoinHandle;

use crate::payment::StubControl;

/// How often one round of traffic starts.
const TICK: Duration = Duration::from_millis(250);

/// The API key the demo traffic's checkouts carry.
const DEMO_API_KEY: &str = "demo";

/// One minute of rounds; the payment service's outage covers rounds 80 to 159 of it (from
/// 20 s to 40 s).
const ROUNDS_PER_CYCLE: u64 = 240;
const OUTAGE: std::ops::Range<u64> = 80..160;

/// Whether the built-in payment service is down in round `round`: for 20 s of every minute, so
/// the dashboard shows its circuit breaker open (about ten seconds in: twenty failed checkouts
/// at two a second) and close again (the first probe after the outage).
fn payment_down(round: u64) -> bool {
    OUTAGE.contains(&(round % ROUNDS_PER_CYCLE))
}

/// Starts the traffic against `base_url` (`http://127.0.0.1:3000`); it runs until the process
/// ends. Failed calls are ignored: the point is load, and the dashboard shows the failures.
/// With `payment` (the built-in stub), the payment service also has an outage every minute.
pub fn spawn(base_url: String, payment: Option<StubControl>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(client) = Client::builder().timeout(Duration::from_secs(10)).build() else {
            tracing::warn!("demo traffic: cannot build an HTTP client");
            return;
        };
        let tags = EntityTags::default();
        let mut ticks = tokio::time::interval(TICK);
        let usual_rate = payment.as_ref().map_or(0.0, StubControl::failure_rate);
        for round in 0u64.. {
            ticks.tick().await;
            if let Some(payment) = &payment {
                payment.set_failure_rate(if payment_down(round) { 1.0 } else { usual_rate });
            }
            for path in paths(round) {
                let request = tags.request(&client, &base_url, &path);
                let tags = tags.clone();
                tokio::spawn(async move {
                    let _ = call(request, &path, &tags).await;
                });
            }
            for path in posts(round) {
                let request = client.post(format!("{base_url}{path}"));
                tokio::spawn(async move {
                    let _ = request.send().await;
                });
            }
        }
    })
}

/// Sends `request` (for `path`), remembers the answer's entity tag, reads the body to its end
/// and returns the status.
async fn call(
    request: RequestBuilder,
    path: &str,
    tags: &EntityTags,
) -> Result<StatusCode, reqwest::Error> {
    let response = request.send().await?;
    tags.remember(path, &response);
    let status = response.status();
    response.bytes().await?;
    Ok(status)
}

/// Whether the calls to `path` revalidate: the catalogue, which the shop serves with an `ETag`.
fn revalidates(path: &str) -> bool {
    path == "/products" || path.starts_with("/products/")
}

/// The entity tag of the last answer of each catalogue path. Clones share one table.
#[derive(Clone, Debug, Default)]
struct EntityTags(Arc<Mutex<HashMap<String, HeaderValue>>>);

impl EntityTags {
    /// The `GET` of `path`: with the demo user's token for `/me`, and with `If-None-Match` for a
    /// catalogue path whose entity tag is known.
    fn request(&self, client: &Client, base_url: &str, path: &str) -> RequestBuilder {
        let mut request = client.get(format!("{base_url}{path}"));
        if path == "/me" {
            request = request.bearer_auth(crate::routes::DEMO_TOKEN);
        }
        if path == "/checkout" {
            // The demo is one API client: its checkouts share the key's quota.
            request = request.header(crate::API_KEY_HEADER, DEMO_API_KEY);
        }
        if let Some(tag) = self.get(path) {
            request = request.header(IF_NONE_MATCH, tag);
        }
        request
    }

    fn get(&self, path: &str) -> Option<HeaderValue> {
        if !revalidates(path) {
            return None;
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
    }

    /// Keeps the entity tag a `200` or `304` to `path` carries. Any other answer, or one without
    /// an `ETag`, forgets the path's tag, so the next call fetches the resource whole.
    fn remember(&self, path: &str, response: &Response) {
        if !revalidates(path) {
            return;
        }
        let tag = match response.status() {
            StatusCode::OK | StatusCode::NOT_MODIFIED => response.headers().get(ETAG).cloned(),
            _ => None,
        };
        let mut tags = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match tag {
            Some(tag) => {
                tags.insert(path.to_owned(), tag);
            }
            None => {
                tags.remove(path);
            }
        }
    }
}

/// The calls of round `round` (four rounds a second).
/// The `POST`s of round `round`: a report as a job every 2 s, and every 15 s one that fails
/// each run, retried and dead-lettered (the Jobs panel shows both).
fn posts(round: u64) -> Vec<&'static str> {
    let mut posts = Vec::new();
    if round % 8 == 4 {
        posts.push("/reports");
    }
    if round % 60 == 6 {
        posts.push("/reports?fail=true");
    }
    posts
}

fn paths(round: u64) -> Vec<String> {
    let mut paths = vec![
        format!("/products/{}", round % 24 + 1),
        "/products".to_owned(),
        "/orders".to_owned(),
    ];
    if round.is_multiple_of(2) {
        paths.push("/me".to_owned());
        paths.push("/checkout".to_owned());
    }
    if round.is_multiple_of(8) {
        paths.push("/orders/n-plus-one".to_owned());
        paths.push("/report".to_owned());
    }
    if round % 20 == 5 {
        paths.push("/report/blocking".to_owned());
    }
    if round % 16 == 3 {
        paths.push("/slow?ms=1200".to_owned());
    }
    if round % 60 == 12 {
        // 20 checkouts at once from one API key, whose quota allows 10 at once: the rest are
        // refused with 429 before any payment call.
        paths.extend(std::iter::repeat_n("/checkout".to_owned(), 20));
    }
    if round % 60 == 30 {
        // 40 at once against a limit of 8 with 16 waiting at most 100 ms: some are refused.
        paths.extend(std::iter::repeat_n("/slow?ms=400".to_owned(), 40));
    }
    if round % 4 == 1 {
        // A lookup through a column without an index, and its indexed twin.
        let customer = 61 + round % 11_900;
        paths.push(format!(
            "/orders/by-email?email=customer{customer}@example.com"
        ));
        paths.push(format!(
            "/orders/by-email-indexed?email=customer{customer}@example.com"
        ));
    }
    if round % 60 == 40 {
        // 30 at once, each holding a pooled connection through a 400 ms call: the pool of 8
        // runs dry and the rest wait (the pool-exhaustion finding).
        paths.extend(std::iter::repeat_n("/orders/hold?ms=400".to_owned(), 30));
    }
    if round % 60 == 50 {
        // The fix under the same load: nobody waits for the pool.
        paths.extend(std::iter::repeat_n("/orders/release?ms=400".to_owned(), 30));
    }
    if round % 60 == 20 {
        // 50 at once for reviews no cache holds (another product each minute): without the
        // response cache, a stampede of 50 × 200 ms of work; with it, one fill, 49 waiting.
        let product = (round / 60) % 24 + 1;
        paths.extend(std::iter::repeat_n(
            format!("/products/{product}/reviews"),
            50,
        ));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payment_outage_is_long_enough_to_open_the_breaker_and_ends() {
        let down = (0..ROUNDS_PER_CYCLE).filter(|&r| payment_down(r)).count();
        // Checkouts go every other round: the breaker's twenty calls fit in the outage twice.
        let checkouts = (0..ROUNDS_PER_CYCLE)
            .filter(|&r| payment_down(r) && paths(r).iter().any(|p| p == "/checkout"))
            .count();
        assert!(checkouts >= 40, "{checkouts}");
        assert!(down < usize::try_from(ROUNDS_PER_CYCLE).unwrap() / 2);
        assert!(!payment_down(0) && !payment_down(ROUNDS_PER_CYCLE - 1));
    }

    #[test]
    fn a_minute_of_rounds_covers_every_problem() {
        let all: Vec<String> = (0..240).flat_map(paths).collect();
        for needle in [
            "/orders/n-plus-one",
            "/report/blocking",
            "/slow?ms=1200",
            "/products/24",
            "/me",
            "/orders/hold?ms=400",
            "/orders/release?ms=400",
            "/products/1/reviews",
        ] {
            assert!(all.iter().any(|p| p == needle), "{needle}");
        }
        assert!(all.iter().filter(|p| *p == "/slow?ms=400").count() >= 40);
        let posts: Vec<&str> = (0..240).flat_map(posts).collect();
        assert!(posts.contains(&"/reports") && posts.contains(&"/reports?fail=true"));
        assert!(all.iter().any(|p| p.starts_with("/orders/by-email?email=")));
        assert!(
            all.iter()
                .any(|p| p.starts_with("/orders/by-email-indexed?email="))
        );
        // A burst past the checkout quota's 10 at once.
        assert!((0..240).any(|r| paths(r).iter().filter(|p| *p == "/checkout").count() > 10));
    }

    fn if_none_match(tags: &EntityTags, path: &str) -> Option<HeaderValue> {
        let request = tags
            .request(&Client::new(), "http://127.0.0.1:3000", path)
            .build()
            .unwrap();
        request.headers().get(IF_NONE_MATCH).cloned()
    }

    #[test]
    fn catalogue_calls_send_back_the_entity_tag_they_were_given() {
        let tags = EntityTags::default();
        assert_eq!(if_none_match(&tags, "/products/3"), None);
        let tag = HeaderValue::from_static("\"3f2a\"");
        tags.0
            .lock()
            .unwrap()
            .insert("/products/3".to_owned(), tag.clone());
        assert_eq!(if_none_match(&tags, "/products/3"), Some(tag));
        // Each path has its own tag; paths outside the catalogue never revalidate.
        assert_eq!(if_none_match(&tags, "/products/4"), None);
        tags.0
            .lock()
            .unwrap()
            .insert("/orders".to_owned(), HeaderValue::from_static("\"1\""));
        assert_eq!(if_none_match(&tags, "/orders"), None);
    }

    /// Against the running shop: the second call of a catalogue path is answered `304`.
    #[tokio::test]
    async fn the_demo_traffic_revalidates_the_catalogue() {
        let shop = crate::Shop::start(crate::Config::with_defaults())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let app = shop
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let client = Client::new();
        let tags = EntityTags::default();
        for path in ["/products", "/products/7"] {
            let first = call(tags.request(&client, &base_url, path), path, &tags).await;
            assert_eq!(first.unwrap(), StatusCode::OK, "{path}");
            assert!(tags.get(path).is_some(), "{path}: no ETag remembered");
            let second = call(tags.request(&client, &base_url, path), path, &tags).await;
            assert_eq!(second.unwrap(), StatusCode::NOT_MODIFIED, "{path}");
        }
        // Outside the catalogue nothing is remembered.
        let orders = call(
            tags.request(&client, &base_url, "/orders"),
            "/orders",
            &tags,
        )
        .await;
        assert_eq!(orders.unwrap(), StatusCode::OK);
        assert!(tags.get("/orders").is_none());
        server.abort();
    }
}
