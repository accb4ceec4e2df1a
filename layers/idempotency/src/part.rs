//! The idempotency part: what happens to a request that brings an `Idempotency-Key`, written
//! once, driven by the standalone layer (and by a composed stack).
//!
//! 1. [`arrival`](IdempotencyPart::arrival), from the head: pass (a method or route the layer
//!    leaves alone, or no key where none is required), answer at once (a missing or bad key),
//!    or read the body ([`Keyed`]);
//! 2. [`Keyed::claim`], with the body read: the key's record decides — run the request
//!    ([`Ticket`]), or answer at once (a replay, 409, 422);
//! 3. [`Ticket::on_response`] at the response head: a 5xx (unless stored) frees the key;
//!    otherwise a [`Recorder`] keeps the response's head and body, and stores them when the
//!    body ends. A ticket dropped before (the client left, the handler panicked) frees the key.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, request};
use vitals_core::body::BodyEnd;
use vitals_core::route::{RequestHead, RouteLabel};

use crate::fingerprint::{fingerprint, scope};
use crate::key::key_of;
use crate::layer::Config;
use crate::outcome::Outcome;
use crate::problem::Problem;
use crate::store::{Claim, StoredResponse};

/// The header on a replayed response.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The part of an [`IdempotencyLayer`](crate::IdempotencyLayer). Cheap to clone.
#[derive(Clone, Debug)]
pub struct IdempotencyPart {
    pub(crate) config: Arc<Config>,
}

/// What the part makes of a request's head.
#[derive(Debug)]
pub enum Arrival {
    /// The layer leaves this request alone.
    Pass,
    /// The answer, at once (a missing or malformed key).
    Answer(Response<Bytes>),
    /// The request brings a key: read its body (at most [`Keyed::max_body`] bytes), then
    /// [`claim`](Keyed::claim).
    Collect(Keyed),
}

/// A request with a key whose body is being read.
#[derive(Debug)]
pub struct Keyed {
    config: Arc<Config>,
    scope: u128,
    route: RouteLabel,
}

/// What the key's record makes of the request.
#[derive(Debug)]
pub enum Claimed {
    /// The answer, at once: a replay, or a problem (409, 422, 503).
    Answer(Response<Bytes>),
    /// The request runs, holding the key.
    Run(Ticket),
}

impl IdempotencyPart {
    /// Whether the part may have anything to do with a request of this method and headers:
    /// `false` lets a driver pass it on without labelling its route or taking it apart (the
    /// method is not protected, or it has no key and no route requires one).
    pub fn may_apply(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.config.methods.contains(method)
            && (self.config.any_required || headers.contains_key(&crate::key::IDEMPOTENCY_KEY_NAME))
    }

    /// A request for `route` arrived.
    pub fn arrival(&self, head: RequestHead<'_>, route: &RouteLabel) -> Arrival {
        let config = &self.config;
        let settings = config.routes.get(route);
        if settings.and_then(|s| s.off).unwrap_or(false) || !config.methods.contains(head.method) {
            return Arrival::Pass;
        }
        let required = settings.and_then(|s| s.required).unwrap_or(config.required);
        let key = match key_of(head.headers, config.max_key_len) {
            Ok(Some(key)) => key,
            Ok(None) if !required => return Arrival::Pass,
            Ok(None) => return Arrival::Answer(self.refuse(route, Problem::MissingKey)),
            Err(reason) => {
                return Arrival::Answer(self.refuse(route, Problem::BadKey(reason.to_string())));
            }
        };
        let principal = match &config.principal {
            Some(principal) => principal(head),
            None => credentials(head.headers),
        };
        Arrival::Collect(Keyed {
            config: Arc::clone(config),
            scope: scope(principal.as_deref(), &key),
            route: route.clone(),
        })
    }
}

impl IdempotencyPart {
    #[cold]
    fn refuse(&self, route: &RouteLabel, problem: Problem) -> Response<Bytes> {
        self.config.count(route, Outcome::Refused);
        problem.into_response()
    }
}

impl Keyed {
    /// The request's body broke off or was too large: the layer answers.
    pub fn refuse(&self, problem: Problem) -> Response<Bytes> {
        self.config.count(&self.route, Outcome::Refused);
        problem.into_response()
    }

    /// The most bytes of body the part reads to fingerprint the request.
    pub fn max_body(&self) -> usize {
        self.config.max_request_body
    }

    /// The body was read: the key's record decides — at once with the memory store, after a
    /// round trip with Redis.
    pub fn claim(self, head: &request::Parts, body: &[u8]) -> Claiming {
        let print = fingerprint(
            &head.method,
            self.route.as_str(),
            &head.uri,
            &head.headers,
            &self.config.fingerprint_headers,
            body,
        );
        #[cfg(feature = "redis")]
        if let Some(redis) = self.config.redis.clone() {
            return Claiming(ClaimingKind::Remote(Box::pin(async move {
                let marker = crate::redis_store::marker(print);
                let Ok(claim) = redis.claim(self.scope, print, &marker).await else {
                    // The claim may have reached Redis before the answer was lost: its marker
                    // goes (only if it is there and its own).
                    let scope = self.scope;
                    let stray = redis.clone();
                    spawn(async move { stray.release(scope, &marker).await });
                    self.config.count(&self.route, Outcome::StoreError);
                    return if redis.fails_open() {
                        self.decided(Claim::Run, print, Hold::Unprotected)
                    } else {
                        Claimed::Answer(Problem::StoreUnavailable.into_response())
                    };
                };
                // Held while the request runs, however long: renewed until it ends.
                let renewal = matches!(claim, Claim::Run)
                    .then(|| redis.keep_held(self.scope, &marker))
                    .flatten();
                self.decided(claim, print, Hold::Remote(redis, marker, renewal))
            })));
        }
        let claim = self.config.store.claim(self.scope, print, Instant::now());
        Claiming(ClaimingKind::Ready(Some(self.decided(
            claim,
            print,
            Hold::Memory,
        ))))
    }

    fn decided(self, claim: Claim, print: u128, hold: Hold) -> Claimed {
        let config = &self.config;
        let (problem, outcome) = match claim {
            Claim::Run => {
                config.count(&self.route, Outcome::FirstRun);
                return Claimed::Run(Ticket {
                    config: Arc::clone(config),
                    scope: self.scope,
                    fingerprint: print,
                    hold: Some(hold),
                });
            }
            Claim::Replay(stored) => {
                config.count(&self.route, Outcome::Replay);
                return Claimed::Answer(replay(&stored));
            }
            Claim::InProgress => (Problem::InProgress, Outcome::Conflict),
            Claim::Mismatch => (Problem::Mismatch, Outcome::Mismatch),
            Claim::NotReplayable => (Problem::NotReplayable, Outcome::Conflict),
            Claim::Full => (Problem::StoreFull, Outcome::Refused),
        };
        config.count(&self.route, outcome);
        tracing::debug!(
            target: "vitals_idempotency",
            status = problem.status().as_u16(),
            http.route = %self.route,
            "idempotency key refused the request"
        );
        Claimed::Answer(problem.into_response())
    }
}

/// A claim, as a future of its decision: ready at once with the memory store, after a round
/// trip with Redis.
pub struct Claiming(ClaimingKind);

enum ClaimingKind {
    /// Decided (taken by the first poll).
    Ready(Option<Claimed>),
    /// The round trip to Redis, then the decision.
    #[cfg(feature = "redis")]
    Remote(std::pin::Pin<Box<dyn std::future::Future<Output = Claimed> + Send>>),
}

impl std::future::Future for Claiming {
    type Output = Claimed;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        #[allow(unused_variables)] cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Claimed> {
        match &mut self.0 {
            // Polled again after its decision: refused rather than run twice.
            ClaimingKind::Ready(claimed) => std::task::Poll::Ready(
                claimed
                    .take()
                    .unwrap_or_else(|| Claimed::Answer(Problem::StoreFull.into_response())),
            ),
            #[cfg(feature = "redis")]
            ClaimingKind::Remote(remote) => remote.as_mut().poll(cx),
        }
    }
}

impl std::fmt::Debug for Claiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            ClaimingKind::Ready(claimed) => f.debug_tuple("Ready").field(claimed).finish(),
            #[cfg(feature = "redis")]
            ClaimingKind::Remote(_) => f.write_str("Remote"),
        }
    }
}

/// Where a running request's key is held.
#[derive(Debug)]
enum Hold {
    /// In the layer's memory store.
    Memory,
    /// In Redis, under this marker, its lease renewed while the request runs.
    #[cfg(feature = "redis")]
    Remote(
        crate::RedisStore,
        crate::redis_store::Marker,
        Option<crate::redis_store::Renewal>,
    ),
    /// Nowhere: Redis failed and the store fails open.
    #[cfg(feature = "redis")]
    Unprotected,
}

impl Hold {
    /// The request ended with `response` (`None`: not replayable) to record.
    fn complete(
        self,
        config: &Config,
        scope: u128,
        fingerprint: u128,
        response: Option<StoredResponse>,
    ) {
        match self {
            Self::Memory => config
                .store
                .complete(scope, fingerprint, response, Instant::now()),
            #[cfg(feature = "redis")]
            Self::Remote(redis, marker, renewal) => {
                // Renewed no more: the marker is replaced by the record.
                drop(renewal);
                let retention = config.retention;
                spawn(async move {
                    // Lost, the completion would let a retry run again once the lease ends:
                    // tried three times (each failure is counted and logged by the store).
                    let mut pause = std::time::Duration::from_millis(50);
                    for _ in 0..3 {
                        let written = redis
                            .complete(scope, fingerprint, &marker, response.as_ref(), retention)
                            .await;
                        if written.is_ok() {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                });
            }
            #[cfg(feature = "redis")]
            Self::Unprotected => {}
        }
    }

    /// The request ended without anything to record: the key is free again.
    fn release(self, config: &Config, scope: u128, fingerprint: u128) {
        match self {
            Self::Memory => config.store.release(scope, fingerprint),
            #[cfg(feature = "redis")]
            Self::Remote(redis, marker, renewal) => {
                drop(renewal);
                spawn(async move { redis.release(scope, &marker).await });
            }
            #[cfg(feature = "redis")]
            Self::Unprotected => {}
        }
    }
}

/// Runs a Redis write in the background (a body's end or a ticket's drop cannot wait for it);
/// outside a runtime the lease frees the key instead.
#[cfg(feature = "redis")]
fn spawn(write: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(write);
    }
}

/// Without a principal rule, the request's credentials (`Authorization`, `Cookie`) scope its
/// key, hashed: a client with other credentials never gets this one's stored answer.
fn credentials(headers: &HeaderMap) -> Option<String> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut any = false;
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            any = true;
            hasher.update(name.as_str().as_bytes());
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        }
    }
    any.then(|| format!("credentials:{:032x}", hasher.digest128()))
}

/// The stored response, again, marked as a replay.
fn replay(stored: &StoredResponse) -> Response<Bytes> {
    let mut response = Response::new(stored.body.clone());
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers.clone();
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// A request running with its key held. Dropped before its response, it frees the key.
#[derive(Debug)]
pub struct Ticket {
    config: Arc<Config>,
    scope: u128,
    fingerprint: u128,
    /// `None` once handed to a recorder.
    hold: Option<Hold>,
}

impl Ticket {
    /// The response's head passed: `None` when the key is freed at once (a server error the
    /// route does not store, or a status that says "try again": 408, 425, 429), else the
    /// recorder that stores the response when its body ends.
    pub fn on_response(mut self, status: StatusCode, headers: &HeaderMap) -> Option<Recorder> {
        let try_again = matches!(status.as_u16(), 408 | 425 | 429);
        if try_again || (status.is_server_error() && !self.config.keep.server_errors) {
            self.release();
            return None;
        }
        let hold = self.hold.take()?;
        let content_length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        Some(Recorder {
            content_length,
            config: Arc::clone(&self.config),
            hold: Some(hold),
            scope: self.scope,
            fingerprint: self.fingerprint,
            status,
            headers: kept_headers(headers, self.config.keep.set_cookie),
            body: BytesMut::new(),
            too_large: false,
        })
    }
}

impl Ticket {
    /// The request failed without an answer worth keeping (the inner service's error, a 5xx):
    /// the key is free again, so the client can retry the operation.
    pub fn release(mut self) {
        if let Some(hold) = self.hold.take() {
            hold.release(&self.config, self.scope, self.fingerprint);
        }
    }
}

impl Drop for Ticket {
    /// Dropped before its response: the handler was running — the client left, a timeout cut
    /// it, it panicked — and may have done its work. The key is recorded as done and not
    /// replayable (a retry gets `409`), never freed for a second run.
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            hold.complete(&self.config, self.scope, self.fingerprint, None);
        }
    }
}

impl Drop for Recorder {
    /// Dropped without its body's end (a panic between the head and the body): the handler
    /// ran; the key is recorded as done and not replayable, never left in flight.
    fn drop(&mut self) {
        if let Some(hold) = self.hold.take() {
            hold.complete(&self.config, self.scope, self.fingerprint, None);
        }
    }
}

/// Keeps a running request's response and stores it when the body ends.
#[derive(Debug)]
pub struct Recorder {
    config: Arc<Config>,
    /// Until the body ends (`None` after).
    hold: Option<Hold>,
    /// The response's `Content-Length`, when it gave one: a body dropped once that many bytes
    /// went by was delivered whole.
    content_length: Option<usize>,
    scope: u128,
    fingerprint: u128,
    status: StatusCode,
    headers: HeaderMap,
    body: BytesMut,
    too_large: bool,
}

impl Recorder {
    /// A frame of the body went by.
    pub fn on_data(&mut self, data: &Bytes) {
        if self.too_large {
            return;
        }
        if self.body.len() + data.len() > self.config.max_stored_body {
            self.too_large = true;
            self.body = BytesMut::new();
        } else {
            self.body.extend_from_slice(data);
        }
    }

    /// A frame of the body went by, as any [`Buf`]: its chunks are kept; one in more pieces
    /// than are gathered at once is not replayable (recorded as done, never run twice).
    pub fn on_buf(&mut self, data: &impl Buf) {
        if self.too_large {
            return;
        }
        if !vitals_core::body::keep_within(&mut self.body, data, self.config.max_stored_body) {
            self.too_large = true;
            self.body = BytesMut::new();
        }
    }

    /// The body ended: a complete body is stored to be replayed; one too large, broken or cut
    /// short is recorded as done but not replayable (the handler ran: a retry must not run it
    /// again).
    pub fn on_end(mut self, end: BodyEnd) {
        let Some(hold) = self.hold.take() else {
            return;
        };
        // Dropped after the last byte its length announced: delivered whole.
        let whole = end == BodyEnd::Completed
            || (end == BodyEnd::Dropped
                && !self.too_large
                && self.content_length == Some(self.body.len()));
        let response = (whole && !self.too_large).then(|| StoredResponse {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body: std::mem::take(&mut self.body).freeze(),
        });
        hold.complete(&self.config, self.scope, self.fingerprint, response);
    }
}

/// The headers a replay carries: the response's, less hop-by-hop ones (RFC 9110 §7.6.1), the
/// body's framing, and `Set-Cookie` unless kept (a cookie is one client's, once).
pub fn kept_headers(headers: &HeaderMap, keep_set_cookie: bool) -> HeaderMap {
    const HOP_BY_HOP: [HeaderName; 7] = [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHENTICATE,
        header::CONTENT_LENGTH,
    ];
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let dropped = HOP_BY_HOP.contains(name)
            || name == "keep-alive"
            || name == "proxy-connection"
            || (name == header::SET_COOKIE && !keep_set_cookie);
        if !dropped {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Methods the layer applies to by default: the unsafe ones a client retries blindly.
pub fn default_methods() -> Vec<Method> {
    vec![Method::POST, Method::PATCH]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_keep_the_answer_and_drop_what_was_the_connections_or_one_clients() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::LOCATION, HeaderValue::from_static("/orders/7"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        headers.insert(header::SET_COOKIE, HeaderValue::from_static("session=abc"));
        let kept = kept_headers(&headers, false);
        let names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type", "location"]);
        assert!(kept_headers(&headers, true).contains_key(header::SET_COOKIE));
    }
}
