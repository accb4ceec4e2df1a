//! What steers the adaptive limit, end to end through the layer: only complete, representative
//! answers are latency samples, and refusals and sheds are no congestion.
//!
//! Deterministic: tokio's clock is paused, so every latency is exactly what the simulation
//! says, and a round of the simulation is the one in `adaptive::tests`.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use vitals_concurrency::{AdaptiveLimit, ConcurrencyLimit, ConcurrencyLimitLayer, LimitBody};
use vitals_core::route::RequestHead;

/// How many requests the simulated server does at once in [`BASE`]; more wait their turn
/// inside it, so latency grows with the excess.
const CAPACITY: f64 = 40.0;

/// The latency of a request that does not wait inside the server.
const BASE: Duration = Duration::from_millis(10);

/// A handler that answers at once: the simulation decides how long a request takes by when
/// its body is read. `/missing` is a cheap 404, `/cached` a cheap 304, anything else a page.
#[derive(Clone, Copy, Debug)]
struct Server;

impl Service<Request<()>> for Server {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let (status, body) = match request.uri().path() {
            "/missing" => (StatusCode::NOT_FOUND, &b"no such page"[..]),
            "/cached" => (StatusCode::NOT_MODIFIED, &b""[..]),
            _ => (StatusCode::OK, &b"page"[..]),
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body)));
        *response.status_mut() = status;
        std::future::ready(Ok(response))
    }
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap()
}

async fn send(
    service: &mut ConcurrencyLimit<Server>,
    request: Request<()>,
) -> Response<LimitBody<Full<Bytes>>> {
    service.ready().await.unwrap().call(request).await.unwrap()
}

async fn read(response: Response<LimitBody<Full<Bytes>>>) {
    response.into_body().collect().await.unwrap();
}

/// What else reaches the layer in a round, beside the steady load.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Noise {
    /// Clients that open a request and go away at once: every other one before the response
    /// head (the request cancelled), the others right after it (the body dropped unread).
    HangUps,
    /// Cheap answers read to their end: 404s and 304s, alternately.
    CheapAnswers,
    /// Requests that find the limit full and are refused (no queue).
    Refusals,
}

/// An adaptive limit between 1 and 1,000 without a queue, in front of [`Server`].
struct Simulation {
    layer: ConcurrencyLimitLayer,
    service: ConcurrencyLimit<Server>,
}

impl Simulation {
    fn new() -> Self {
        let layer =
            ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 1_000)).with_max_queued(0);
        let service = layer.layer(Server);
        Self { layer, service }
    }

    /// One round: the steady load opens as many requests as the limit admits (clients always
    /// want more: a closed loop under overload), `noise` sends `count` requests beside it, the
    /// clock moves on by the steady requests' latency — `base`, or more when they exceed the
    /// server's capacity — and the steady requests end. Returns the limit after the round.
    async fn round(&mut self, base: Duration, noise: Option<Noise>, count: usize) -> usize {
        // Hang-ups and cheap answers come while permits are free, so they are admitted.
        for i in 0..count {
            match noise {
                Some(Noise::HangUps) if i % 2 == 0 => {
                    let request = self.service.ready().await.unwrap().call(get("/"));
                    drop(request);
                }
                Some(Noise::HangUps) => drop(send(&mut self.service, get("/")).await),
                Some(Noise::CheapAnswers) => {
                    let path = if i % 2 == 0 { "/missing" } else { "/cached" };
                    read(send(&mut self.service, get(path)).await).await;
                }
                Some(Noise::Refusals) | None => {}
            }
        }
        let wanted = self.layer.handle().snapshot().limit;
        let mut held = Vec::with_capacity(wanted);
        for _ in 0..wanted {
            let response = send(&mut self.service, get("/")).await;
            if response.status() == StatusCode::OK {
                held.push(response);
            }
        }
        if noise == Some(Noise::Refusals) {
            for _ in 0..count {
                let refused = send(&mut self.service, get("/")).await;
                assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let excess = held.len() as f64 / CAPACITY;
        tokio::time::advance(base.mul_f64(excess.max(1.0))).await;
        for response in held {
            read(response).await;
        }
        self.layer.handle().snapshot().limit
    }

    /// `rounds` rounds; `total` noise requests spread over them, `per_round` at a time.
    async fn run(
        &mut self,
        base: Duration,
        rounds: usize,
        noise: Option<Noise>,
        (mut total, per_round): (usize, usize),
    ) -> Vec<usize> {
        let mut limits = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let count = total.min(per_round);
            total -= count;
            limits.push(self.round(base, noise, count).await);
        }
        limits
    }
}

fn mean(limits: &[usize]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let mean = limits.iter().sum::<usize>() as f64 / limits.len() as f64;
    mean
}

/// Where the steady load alone settles the limit (the mean over its last 200 of 600 rounds),
/// and where it settles with `total` requests of `noise` spread over the 600 rounds.
async fn settled_alone_and_beside(noise: Noise, total: usize) -> (f64, f64) {
    let alone = Simulation::new().run(BASE, 600, None, (0, 0)).await;
    let beside = Simulation::new()
        .run(BASE, 600, Some(noise), (total, total.div_ceil(600)))
        .await;
    let (alone, beside) = (mean(&alone[400..]), mean(&beside[400..]));
    assert!(
        (40.0..=60.0).contains(&alone),
        "the steady load settles just above the capacity of 40: {alone}"
    );
    (alone, beside)
}

#[tokio::test(start_paused = true)]
async fn clients_that_hang_up_do_not_drag_the_adaptive_limit_down() {
    // 10,000 requests opened and abandoned within the same instant: as latency samples they
    // would make the baseline zero, and every real request would look congested.
    let (alone, beside) = settled_alone_and_beside(Noise::HangUps, 10_000).await;
    assert!(
        (beside - alone).abs() <= 0.1 * alone,
        "the limit settled at {beside} beside 10,000 hang-ups, at {alone} without"
    );
}

#[tokio::test(start_paused = true)]
async fn cheap_404s_and_304s_do_not_drag_the_adaptive_limit_down() {
    let (alone, beside) = settled_alone_and_beside(Noise::CheapAnswers, 10_000).await;
    assert!(
        (beside - alone).abs() <= 0.1 * alone,
        "the limit settled at {beside} beside 10,000 cheap answers, at {alone} without"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_refusals_does_not_stop_a_probe_from_relearning_the_baseline() {
    let mut simulation = Simulation::new();
    simulation.run(BASE, 300, None, (0, 0)).await;
    // The server becomes three times slower for good, and 20 refused requests come with every
    // round — also while the limit sits at its minimum to probe for a new baseline. Only
    // requests admitted during the probe may measure it; refusals, counted there, would use
    // up its samples and leave the old baseline, so every request would look congested.
    let limits = simulation
        .run(BASE * 3, 1_000, Some(Noise::Refusals), (usize::MAX, 20))
        .await;
    let settled = mean(&limits[700..]);
    assert!(
        (30.0..=62.0).contains(&settled),
        "settled at {settled} beside a flood of refusals, capacity 40"
    );
}

#[tokio::test(start_paused = true)]
async fn shedding_low_priority_requests_never_lowers_the_adaptive_limit() {
    let layer = ConcurrencyLimitLayer::adaptive(AdaptiveLimit::new(1, 64).with_initial(16))
        .with_low_priority(
            |head: RequestHead<'_>| head.headers.contains_key("x-prefetch"),
            0.5,
        );
    let mut service = layer.layer(Server);
    // Half the limit in use: from here on every low-priority request is shed.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(send(&mut service, get("/")).await);
    }
    for shed in 1..=1_000 {
        let prefetch = Request::get("/")
            .header("x-prefetch", "1")
            .body(())
            .unwrap();
        let response = send(&mut service, prefetch).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            layer.handle().snapshot().limit,
            16,
            "after {shed} low-priority sheds"
        );
    }
    tokio::time::advance(BASE).await;
    for response in held {
        read(response).await;
    }
    let books = layer.handle().snapshot();
    assert!(books.limit >= 16, "{books:?}");
    assert_eq!((books.in_flight, books.available), (0, books.limit));
}
