//! The deadline part: the request's deadline when it arrives, and the answer when it passes
//! first — written once and driven two ways: by [`Timeout`](crate::Timeout), and by the fused
//! `vitals` stack, where the deadline races the handler (and the entity-tag buffering after it).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::time::Duration;
//! use vitals_concurrency::TimeoutLayer;
//!
//! let part = TimeoutLayer::new(Duration::from_millis(100)).part();
//! let mut deadline = part.start(None).expect("a deadline of 100 ms");
//! tokio::time::sleep(Duration::from_millis(150)).await;
//! std::future::poll_fn(|cx| deadline.poll_elapsed(cx)).await;
//! let answer: http::Response<http_body_util::Full<bytes::Bytes>> = deadline.into_response();
//! assert_eq!(answer.status(), 503);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::Response;
use http_body_util::Full;
use tokio::time::{Instant, Sleep};
use vitals_core::outcome::OutcomeHint;
use vitals_core::route::{RouteLabel, RouteLabeler};
use vitals_core::route_table::RouteTable;

use crate::body::LayerResponse;

/// What every request's deadline is read from.
#[derive(Debug)]
pub(crate) struct DeadlineConfig {
    /// The deadline of routes without one of their own; `None`: no deadline.
    pub(crate) timeout: Option<Duration>,
    /// Route templates with a deadline of their own (`None`: none for that route).
    pub(crate) routes: Arc<RouteTable<Option<Duration>>>,
    pub(crate) labeler: RouteLabeler,
    pub(crate) response: LayerResponse,
    pub(crate) body_deadline: bool,
}

/// The deadline part of a [`TimeoutLayer`](crate::TimeoutLayer) (see
/// [`TimeoutLayer::part`](crate::TimeoutLayer::part)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct DeadlinePart {
    pub(crate) config: Arc<DeadlineConfig>,
}

impl DeadlinePart {
    /// Whether [`start`](Self::start) wants the request's route: for per-route deadlines, or to
    /// label the timed-out counter. When not, pass `None` and skip labelling.
    pub fn wants_route(&self) -> bool {
        cfg!(feature = "metrics") || !self.config.routes.is_empty()
    }

    /// The route labeler the layer was given.
    pub fn route_labeler(&self) -> &RouteLabeler {
        &self.config.labeler
    }

    /// A request for `route` arrived: its deadline, counted from now, or `None` when it has
    /// none (or one too far away to put on the clock: no deadline, not a panic).
    pub fn start(&self, route: Option<&RouteLabel>) -> Option<Deadline> {
        let config = &self.config;
        let timeout = route
            .and_then(|route| config.routes.get(route).copied())
            .unwrap_or(config.timeout)?;
        let at = Instant::now().checked_add(timeout)?;
        Some(Deadline {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            at,
            config: Arc::clone(config),
            route: route.filter(|_| cfg!(feature = "metrics")).cloned(),
        })
    }
}

/// A request's deadline, racing its handler.
pub struct Deadline {
    sleep: Pin<Box<Sleep>>,
    at: Instant,
    config: Arc<DeadlineConfig>,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // Labels the timed-out counter.
    route: Option<RouteLabel>,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Deadline {
    /// Ready once the deadline passed; poll it after each pending poll of the handler.
    pub fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.sleep.as_mut().poll(cx)
    }

    /// The deadline passed first: counted, and answered (`503` by default), marked as a
    /// timeout for the outer parts. Drop the handler's future before sending it.
    pub fn into_response<D: From<Bytes> + Buf>(self) -> Response<Full<D>> {
        #[cfg(feature = "metrics")]
        crate::metrics::timed_out(self.route.as_ref());
        self.config.response.to_full(Some(OutcomeHint::Timeout))
    }

    /// The deadline as the request's, current while its handler is polled: what outgoing
    /// calls made from the handler read (`vitals_client`).
    pub fn request_deadline(&self) -> vitals_core::deadline::RequestDeadline {
        vitals_core::deadline::RequestDeadline::at(self.at.into_std())
    }

    /// When the response body must have ended, if the deadline covers it
    /// ([`TimeoutLayer::with_body_deadline`](crate::TimeoutLayer::with_body_deadline)).
    pub fn body_deadline(&self) -> Option<Instant> {
        self.config.body_deadline.then_some(self.at)
    }
}
