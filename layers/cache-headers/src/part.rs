//! The cache-headers part: the request's facts when it arrives; at the response head, the
//! policy applied and the preconditions answered — or, when an entity tag is worth computing,
//! the body buffered first. Written once and driven two ways: by
//! [`CacheHeaders`](crate::CacheHeaders), and by the fused `vitals` stack.
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use vitals_cache_headers::CacheHeadersLayer;
//! use vitals_cache_headers::part::CacheHead;
//!
//! let part = CacheHeadersLayer::new().part();
//! let request = Request::get("/items").body(()).unwrap();
//! let in_flight = part.start(&request, None);
//! // A 200 to a GET with a small body of known length: worth an entity tag, so buffered first.
//! let response = Response::new(Full::new(Bytes::from_static(b"[1, 2, 3]")));
//! let CacheHead::Buffer(mut buffering) = in_flight.on_response(response) else {
//!     unreachable!("a small 200 gets an ETag");
//! };
//! let waker = std::task::Waker::noop();
//! let mut cx = std::task::Context::from_waker(&waker);
//! let std::task::Poll::Ready(tagged) = buffering.poll_buffer(&mut cx) else {
//!     unreachable!("a full body is ready at once");
//! };
//! assert!(tagged.headers().contains_key("etag"));
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::CACHE_CONTROL;
use http::response::Parts;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use vitals_core::route::{RouteLabel, RouteLabeler};

use crate::body::CacheBody;
use crate::privacy::{OneUser, keep_from_shared_caches};
use crate::rules::{
    Buffer, Carried, PolicyApplied, RequestFacts, apply_policy, collect, finish, tagged,
    wants_computed_etag,
};
use crate::settings::CacheSettings;
use vitals_core::route_table::RouteTable;

/// The cache-headers part of a [`CacheHeadersLayer`](crate::CacheHeadersLayer) (see
/// [`CacheHeadersLayer::part`](crate::CacheHeadersLayer::part)). Cheap to clone.
#[derive(Clone)]
pub struct CachePart {
    pub(crate) settings: Arc<CacheSettings>,
    pub(crate) routes: Arc<RouteTable<Arc<CacheSettings>>>,
    pub(crate) labeler: RouteLabeler,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Arc<crate::metrics::Handles>,
}

impl std::fmt::Debug for CachePart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachePart")
            .field(
                "routes",
                &self.routes.iter().map(|(r, _)| r).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl CachePart {
    /// Whether [`start`](Self::start) wants the request's route: to find a route's own
    /// settings, or to label the metrics. When not, pass `None` and skip labelling.
    pub fn wants_route(&self) -> bool {
        cfg!(feature = "metrics") || !self.routes.is_empty()
    }

    /// The route labeler the layer was given.
    pub fn route_labeler(&self) -> &RouteLabeler {
        &self.labeler
    }

    /// A request for `route` arrived: what the response head will need to know about it (its
    /// method, its preconditions, whether it carries credentials, the route's settings).
    pub fn start<B>(&self, request: &Request<B>, route: Option<&RouteLabel>) -> CacheInFlight {
        let settings = route
            .and_then(|route| self.routes.get(route))
            .unwrap_or(&self.settings);
        CacheInFlight {
            facts: RequestFacts::of(
                settings,
                request,
                route.cloned(),
                #[cfg(feature = "metrics")]
                &self.metrics,
            ),
            settings: Arc::clone(settings),
        }
    }
}

/// A request the cache-headers part follows until its response head.
pub struct CacheInFlight {
    settings: Arc<CacheSettings>,
    facts: RequestFacts,
}

impl std::fmt::Debug for CacheInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheInFlight")
            .field("method", &self.facts.method)
            .finish_non_exhaustive()
    }
}

/// What the part made of a response head.
#[allow(clippy::large_enum_variant)] // Consumed at once; boxing would cost the ETag path an allocation.
pub enum CacheHead<B: Body> {
    /// The response to send: policy applied, preconditions answered (`304`, `412`).
    Ready(Response<CacheBody<B>>),
    /// The body is to be read first, for its entity tag: poll [`Buffering::poll_buffer`].
    Buffer(Buffering<B>),
}

impl<B: Body> std::fmt::Debug for CacheHead<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(response) => f.debug_tuple("Ready").field(&response.status()).finish(),
            Self::Buffer(_) => f.write_str("Buffer"),
        }
    }
}

impl CacheInFlight {
    /// The handler answered: `Cache-Control` and `Vary` by the policy, then either the response
    /// (preconditions evaluated) or the body to buffer for an entity tag — only a `200` to a
    /// `GET`/`HEAD` without a validator of the handler's, whose exact length is within the
    /// limit, is buffered.
    pub fn on_response<B: Body>(self, mut response: Response<B>) -> CacheHead<B> {
        let Self { settings, facts } = self;
        let status = response.status();
        // A cache-headers layer inside already applied its policy (and its opt-ins): outer ones
        // leave `Cache-Control` and `Vary` alone.
        let carried = Carried::of(response.headers());
        let validatable = if response.extensions().get::<PolicyApplied>().is_some() {
            // Its opt-in stands for credentials; a cookie set on the way out (by a layer in
            // between) is still kept from shared caches.
            let for_one = OneUser {
                credentials: false,
                sets_cookie: carried.set_cookie,
            };
            if let Some(confined) = keep_from_shared_caches(response.headers(), for_one) {
                response.headers_mut().insert(CACHE_CONTROL, confined.value);
            }
            crate::directives::parse(response.headers())
                .is_ok_and(|d| d.is_none_or(|d| !d.no_store))
                && !status.is_client_error()
                && !status.is_server_error()
        } else {
            let validatable =
                apply_policy(status, response.headers_mut(), &settings, &facts, carried);
            // Only an opt-in could be undone by an outer layer's rules (the others give the
            // same answer twice): mark only then, and spare the response an extension map
            // otherwise.
            if settings.public_even_if_authorized {
                response.extensions_mut().insert(PolicyApplied);
            }
            validatable
        };
        let wants_etag = validatable && wants_computed_etag(&response, &settings, &facts, carried);
        if !wants_etag {
            if facts.preconditions.is_none() {
                // The common case: no conditional request, nothing to buffer.
                return CacheHead::Ready(response.map(CacheBody::passthrough));
            }
            let (parts, body) = response.into_parts();
            return CacheHead::Ready(finish(parts, CacheBody::passthrough(body), &facts));
        }
        let (parts, body) = response.into_parts();
        CacheHead::Buffer(Buffering {
            body: Some(Box::pin(body)),
            parts: Some(parts),
            data: Buffer::Empty,
            trailers: None,
            settings,
            facts,
        })
    }
}

/// A response whose body is being read for its entity tag.
pub struct Buffering<B> {
    // Boxed so it can be handed on mid-way (a body longer than its length hint).
    body: Option<Pin<Box<B>>>,
    parts: Option<Parts>,
    data: Buffer,
    trailers: Option<HeaderMap>,
    settings: Arc<CacheSettings>,
    facts: RequestFacts,
}

impl<B> std::fmt::Debug for Buffering<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffering")
            .field("buffered", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl<B: Body> Buffering<B> {
    /// Reads the body to its end and answers with the tagged response (preconditions
    /// evaluated); a body longer than its length hint is sent as it streams, untagged; a body
    /// that fails is answered with its error at the first read.
    ///
    /// # Panics
    ///
    /// When polled again after it answered.
    pub fn poll_buffer(&mut self, cx: &mut Context<'_>) -> Poll<Response<CacheBody<B>>> {
        loop {
            let (Some(inner), Some(head)) = (self.body.as_mut(), self.parts.take()) else {
                panic!("vitals_cache_headers::part::Buffering polled after it answered");
            };
            let frame = match inner.as_mut().poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    self.parts = Some(head);
                    return Poll::Pending;
                }
            };
            return Poll::Ready(match frame {
                Some(Ok(frame)) => {
                    collect(frame, &mut self.data, &mut self.trailers);
                    if self.data.len() <= self.settings.etag_limit {
                        self.parts = Some(head);
                        continue;
                    }
                    // The length hint was wrong: stop buffering, send what came and the rest
                    // as it streams, without an entity tag.
                    let Some(rest) = self.body.take() else {
                        continue;
                    };
                    let seen = self.data.take();
                    finish(head, CacheBody::prefixed(seen, rest), &self.facts)
                }
                Some(Err(error)) => Response::from_parts(head, CacheBody::failed(error)),
                None => tagged(head, &mut self.data, &mut self.trailers, &self.facts),
            });
        }
    }
}
