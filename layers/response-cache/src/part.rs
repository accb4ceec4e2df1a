//! The response-cache part: what the cache does with a request and its response, written once,
//! driven by the standalone layer (and by a composed stack).
//!
//! 1. [`arrival`](ResponseCachePart::arrival), from the head: pass (a method or route the cache
//!    leaves alone), answer at once from the store (a hit, a `304` for the client's copy, a
//!    stale answer while one request refreshes it), forward to the handler ([`Fill`]: the one
//!    request filling its key, a bypass, an unsafe method that invalidates), or wait for
//!    another request's fill ([`Waiter`], then [`follow_up`](ResponseCachePart::follow_up));
//! 2. [`Fill::on_response`] at the response head: mark it (`Cache-Status`), answer from the
//!    stored response instead (a revalidation's `304`, `stale-if-error`), or hand back a
//!    [`Recorder`] that stores the body as it passes;
//! 3. the [`Recorder`], when the body ends (`BodyRecorder::on_end`): store the response, and let the waiters look
//!    again.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, request, response};
use tokio::sync::watch;
use vitals_core::body::BodyEnd;
use vitals_core::route::{RequestHead, RouteLabel};
use vitals_core::server_timing::{Metric, ServerTiming};

use crate::entry::{Entry, initial_age, jittered, kept_headers, tags};
use crate::flight::{FlightGuard, Hold, Join, Landing};
use crate::key::{primary_key, target, vary_values};
use crate::layer::{Config, Resolved, WaitTimeout};
use crate::rules::{Bypass, RequestRules, Usable, request_rules, storable, usable};
use crate::status::{CACHE_STATUS, CacheStatus, Forward};

/// Rounds of waiting one request goes through (a fill for another variant, a leader that gave
/// up) before it goes to the handler without waiting again.
const MAX_ROUNDS: u8 = 3;

/// The part of a [`ResponseCacheLayer`](crate::ResponseCacheLayer). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ResponseCachePart {
    pub(crate) config: Arc<Config>,
}

/// What the part makes of a request's head.
#[derive(Debug)]
pub enum Arrival {
    /// The cache leaves this request alone (a method it does not handle, a route it is off
    /// for).
    Pass,
    /// The answer, at once, from the store; with a refresh to run in the background when the
    /// answer was stale (`stale-while-revalidate`).
    Answer(Box<Response<Bytes>>, Option<Box<Refresh>>),
    /// Send the request to the handler; show the response to the fill at its head.
    Forward(Box<Fill>),
    /// Another request is filling this key: wait for it, then [`follow_up`].
    ///
    /// [`follow_up`]: ResponseCachePart::follow_up
    Wait(Waiter),
}

/// A stale answer's refresh: the request to send to the handler in the background (its body
/// empty) and the fill that stores its response.
#[derive(Debug)]
pub struct Refresh {
    /// The request's head, for the handler.
    pub request: http::Request<()>,
    /// What stores the response.
    pub fill: Box<Fill>,
    /// How long the refresh may take, body included (the route's
    /// [refresh timeout](crate::CacheSettings::with_refresh_timeout)): a refresh that hangs is
    /// given up, and the next stale answer starts another.
    pub limit: Duration,
}

impl ResponseCachePart {
    /// Whether the part may have anything to do with a request of this method: `false` lets a
    /// driver pass it on without labelling its route.
    pub fn may_apply(&self, method: &Method) -> bool {
        !self.config.off_everywhere
            && method != Method::OPTIONS
            && method != Method::TRACE
            && method != Method::CONNECT
    }

    /// A request for `route` arrived. `head` may be changed: a revalidation adds the stored
    /// validators as conditions.
    pub fn arrival(&self, head: &mut request::Parts, route: &RouteLabel) -> Arrival {
        let settings = self.config.settings(route);
        if settings.off {
            return Arrival::Pass;
        }
        self.decide(head, route, settings, 0, None, &mut None)
    }

    /// A wait ended: answer from what was stored, go to the handler, or wait again.
    #[cfg_attr(not(feature = "redis"), allow(clippy::needless_pass_by_value))]
    pub fn follow_up(
        &self,
        head: &mut request::Parts,
        route: &RouteLabel,
        waited: Waited,
    ) -> Arrival {
        let settings = self.config.settings(route);
        let round = waited.round + 1;
        #[cfg(feature = "redis")]
        if let Some(found) = waited.fleet {
            return self.after_fleet(head, route, settings, round, waited.deadline, *found);
        }
        self.config.count(route, Event::Waited(waited.duration));
        let now = Instant::now();
        let stored = || {
            self.key(head, route, settings)
                .and_then(|key| self.lookup(key, head))
        };
        match waited.landing {
            None => self.wait_passed(head, route, settings),
            Some(Landing::NotStored) => {
                Arrival::Forward(self.forward_unled(head, route, settings, Forward::Miss))
            }
            // The handler failed for the leader: a stale response that may answer for a
            // failing handler answers at once, without trying it again.
            Some(Landing::Failed) => match stored().filter(|entry| entry.serves_on_error(now)) {
                Some(entry) => {
                    self.config.count(route, Event::StaleOnError);
                    let status = CacheStatus::Hit {
                        ttl: entry.ttl(now),
                    };
                    Arrival::Answer(Box::new(self.hit(&entry, head, now, status)), None)
                }
                None => Arrival::Forward(self.forward_unled(head, route, settings, Forward::Miss)),
            },
            Some(landing) => {
                if let Ok(rules) = request_rules(&head.method, &head.headers, &settings.policy)
                    && let Some(entry) = stored()
                    && matches!(
                        usable(entry.facts(now), &rules),
                        Usable::Fresh | Usable::StaleAccepted | Usable::StaleWhileRevalidate
                    )
                {
                    self.config.count(route, Event::Collapsed);
                    let answer = self.hit(&entry, head, now, CacheStatus::Collapsed);
                    return Arrival::Answer(Box::new(answer), None);
                }
                // Stored, but not for this request (another variant, stale on arrival, or the
                // request asks for a fresher one): to the handler now, not another round of
                // waiting. Only a leader that gave up makes another round, within the same
                // wait.
                if landing != Landing::Abandoned
                    || round >= MAX_ROUNDS
                    || Instant::now() >= waited.deadline
                {
                    return Arrival::Forward(self.forward_unled(
                        head,
                        route,
                        settings,
                        Forward::Miss,
                    ));
                }
                self.decide(
                    head,
                    route,
                    settings,
                    round,
                    Some(waited.deadline),
                    &mut None,
                )
            }
        }
    }

    /// A wait passed its limit: `503`, or to the handler, as the route says.
    fn wait_passed(
        &self,
        head: &mut request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
    ) -> Arrival {
        if settings.on_wait_timeout == WaitTimeout::ServiceUnavailable {
            self.config.count(route, Event::WaitRefused);
            let mut refused = wait_refused();
            mark(
                refused.headers_mut(),
                &self.config.name,
                CacheStatus::Forwarded {
                    fwd: Forward::Miss,
                    status: None,
                    stored: false,
                },
            );
            return Arrival::Answer(Box::new(refused), None);
        }
        Arrival::Forward(self.forward_unled(head, route, settings, Forward::Miss))
    }

    /// The leader's look at the fleet's store ended: what it found is kept in memory, then the
    /// request is decided again as the instance's leader (answered from what was found, or
    /// sent to the handler holding the fleet's lock, or without it when Redis failed).
    #[cfg(feature = "redis")]
    fn after_fleet(
        &self,
        head: &mut request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
        round: u8,
        deadline: Instant,
        found: crate::fleet::Found,
    ) -> Arrival {
        use crate::fleet::Outcome;
        let config = &self.config;
        config.count(route, Event::Backend(found.took));
        // Purged here while the look ran: what it read may be what the purge was for.
        if !config.store.invalidated_since(found.key, found.epoch) {
            for entry in found.entries {
                config
                    .store
                    .put(found.key, Arc::new(entry), config.local_keep);
            }
        }
        let token = match found.outcome {
            Outcome::Usable => None,
            Outcome::Lead(token) => Some(token),
            Outcome::Failed => {
                config.count(route, Event::BackendError);
                None
            }
            Outcome::Busy => {
                // Another instance fills for longer than this request waits. The instance's
                // flight is let go: its other requests look again (within their own waits).
                drop(found.guard);
                return self.wait_passed(head, route, settings);
            }
        };
        let mut lead = Some(Lead {
            guard: found.guard,
            token,
        });
        let arrival = self.decide(head, route, settings, round, Some(deadline), &mut lead);
        // Answered from what was found (the lead was not needed): the instance's other
        // requests find it in memory.
        if let Some(lead) = lead {
            config.release(found.key, lead.token);
            if matches!(arrival, Arrival::Answer(..)) {
                lead.guard.land(Landing::Stored);
            }
        }
        arrival
    }

    fn decide(
        &self,
        head: &mut request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
        round: u8,
        deadline: Option<Instant>,
        lead: &mut Option<Lead>,
    ) -> Arrival {
        let config = &self.config;
        if head.method != Method::GET && head.method != Method::HEAD {
            return self.unsafe_method(head, route, settings);
        }
        let rules = match request_rules(&head.method, &head.headers, &settings.policy) {
            Ok(rules) => rules,
            Err(Bypass::Method) => return Arrival::Pass,
            Err(_) => return Arrival::Forward(self.bypass(head, route, settings)),
        };
        let Some(key) = self.key(head, route, settings) else {
            return Arrival::Forward(self.bypass(head, route, settings));
        };
        let now = Instant::now();
        let host = crate::key::host(&head.uri, &head.headers);
        let variants = config.store.get(key);
        let entry = variants.as_ref().and_then(|variants| {
            variants
                .entries
                .iter()
                .find(|entry| entry.matches(host, &head.headers))
                .cloned()
        });
        let mut fwd = if variants.is_none() {
            Forward::UriMiss
        } else {
            Forward::VaryMiss
        };
        let mut stale = None;
        if let Some(entry) = entry {
            match usable(entry.facts(now), &rules) {
                Usable::Fresh | Usable::StaleAccepted => {
                    let ttl = entry.ttl(now);
                    config.count(route, if ttl < 0 { Event::Stale } else { Event::Hit });
                    let answer = self.hit(&entry, head, now, CacheStatus::Hit { ttl });
                    return Arrival::Answer(Box::new(answer), None);
                }
                Usable::StaleWhileRevalidate => {
                    config.count(route, Event::Stale);
                    let status = CacheStatus::Hit {
                        ttl: entry.ttl(now),
                    };
                    let answer = self.hit(&entry, head, now, status);
                    let refresh = self.refresh(head, route, settings, key, entry);
                    return Arrival::Answer(Box::new(answer), refresh);
                }
                Usable::Revalidate => {
                    fwd = revalidation_reason(&rules);
                    stale = Some(entry);
                }
            }
        }
        if rules.directives.only_if_cached {
            return Arrival::Answer(Box::new(only_if_cached_miss(&config.name)), None);
        }
        // A request whose answer is its own (credentials, a range, a precondition of the
        // client's) says nothing about what others may get: it does not lead a flight, and a
        // response it cannot store does not mark the key.
        let own_answer = own_answer(&rules, &head.headers);
        if head.method == Method::HEAD || own_answer || config.store.passes(key) {
            // A `HEAD` stores nothing (and leaves what is stored alone); a key whose last
            // response could not be stored has nothing to wait for.
            config.count(route, Event::Miss);
            let mut fill = self.fill(head, route, settings, key, fwd, Role::Unled);
            if head.method == Method::GET {
                fill.rules = rules;
                fill.own_answer = own_answer;
                fill.stale = stale;
                fill.revalidate(&mut head.headers);
            } else {
                fill.stored = false;
            }
            return Arrival::Forward(fill);
        }
        // The instance's flight: this request's own look at the fleet's store made it the
        // leader already, or it joins (and, leading, looks at the fleet's store first).
        let (join, token, looked) = match lead.take() {
            Some(Lead { guard, token }) => (Join::Lead(guard), token, true),
            None => (config.flights.join(key), None, false),
        };
        match join {
            Join::Lead(guard) => {
                #[cfg(feature = "redis")]
                if !looked && let Some(redis) = config.redis.clone() {
                    let deadline = deadline.unwrap_or_else(|| Instant::now() + settings.wait);
                    return self.look_in_fleet(redis, head, key, guard, rules, (deadline, round));
                }
                #[cfg(not(feature = "redis"))]
                let _ = looked;
                config.count(route, Event::Miss);
                let mut fill = self.fill(head, route, settings, key, fwd, Role::Lead(guard));
                fill.token = token;
                fill.rules = rules;
                fill.stale = stale;
                fill.revalidate(&mut head.headers);
                Arrival::Forward(fill)
            }
            Join::Follow(landing) => Arrival::Wait(Waiter {
                kind: WaitKind::Flight(landing),
                deadline: deadline.unwrap_or_else(|| Instant::now() + settings.wait),
                round,
            }),
        }
    }

    /// An unsafe method: through to the handler, and what was stored for its target is dropped
    /// once it succeeds (RFC 9111 §4.4).
    fn unsafe_method(
        &self,
        head: &request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
    ) -> Arrival {
        let Some(key) = self.key(head, route, settings) else {
            return Arrival::Pass;
        };
        let role = Role::Invalidate;
        Arrival::Forward(self.fill(head, route, settings, key, Forward::Method, role))
    }

    /// The instance's leader for `key` looks in the fleet's store before the handler: the
    /// look is a wait (until `deadline`, in this `round`), then [`follow_up`](Self::follow_up).
    #[cfg(feature = "redis")]
    fn look_in_fleet(
        &self,
        redis: crate::RedisStore,
        head: &request::Parts,
        key: u128,
        guard: FlightGuard,
        rules: RequestRules,
        (deadline, round): (Instant, u8),
    ) -> Arrival {
        let host = crate::key::host(&head.uri, &head.headers);
        Arrival::Wait(Waiter {
            kind: WaitKind::Fleet(Box::new(crate::fleet::Lookup {
                redis,
                namespace: self.config.namespace.clone(),
                key,
                guard,
                wanted: crate::fleet::Wanted {
                    host: host.map(Box::from),
                    headers: head.headers.clone(),
                    rules,
                },
                epoch: self.config.store.epoch(),
            })),
            deadline,
            round,
        })
    }

    /// The background refresh of a stale answer: one at a time (a refresh in flight is left
    /// to land).
    fn refresh(
        &self,
        head: &request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
        key: u128,
        stale: Arc<Entry>,
    ) -> Option<Box<Refresh>> {
        // Refreshes have flights of their own: one at a time per key, and nobody waits on
        // one (a request that finds no usable response meanwhile leads a fill of its own,
        // rather than waiting for a refresh that may take long).
        let Join::Lead(guard) = self.config.refreshes.join(key) else {
            return None;
        };
        let mut copy = head.clone();
        // A refresh asks for the whole response, whatever the request that triggered it
        // asked: a `GET`, without its range or its own conditions.
        copy.method = Method::GET;
        ServerTiming::detach(&mut copy.extensions);
        for name in [
            header::RANGE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
        ] {
            copy.headers.remove(name);
        }
        let role = Role::Lead(guard);
        let mut fill = self.fill(&copy, route, settings, key, Forward::Stale, role);
        if let Ok(rules) = request_rules(&copy.method, &copy.headers, &settings.policy) {
            fill.rules = rules;
        }
        fill.stale = Some(stale);
        fill.timing = None;
        fill.revalidate(&mut copy.headers);
        Some(Box::new(Refresh {
            request: http::Request::from_parts(copy, ()),
            fill,
            limit: settings.refresh_timeout,
        }))
    }

    /// The request goes to the handler with no flight to lead (it waited, and the fill did
    /// not serve it): its response may still be stored, and a stale one may still answer for
    /// a failing handler.
    fn forward_unled(
        &self,
        head: &mut request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
        fwd: Forward,
    ) -> Box<Fill> {
        let Some(key) = self.key(head, route, settings) else {
            return self.bypass(head, route, settings);
        };
        self.config.count(route, Event::Miss);
        let mut fill = self.fill(head, route, settings, key, fwd, Role::Unled);
        if let Ok(rules) = request_rules(&head.method, &head.headers, &settings.policy) {
            fill.own_answer = own_answer(&rules, &head.headers);
            fill.rules = rules;
        }
        if head.method == Method::GET {
            fill.stale = self.lookup(key, head);
            fill.revalidate(&mut head.headers);
        } else {
            fill.stored = false;
        }
        fill
    }

    fn bypass(&self, head: &request::Parts, route: &RouteLabel, settings: &Resolved) -> Box<Fill> {
        self.config.count(route, Event::Bypass);
        self.fill(head, route, settings, 0, Forward::Bypass, Role::Bypass)
    }

    fn fill(
        &self,
        head: &request::Parts,
        route: &RouteLabel,
        settings: &Resolved,
        key: u128,
        fwd: Forward,
        role: Role,
    ) -> Box<Fill> {
        let stored = matches!(role, Role::Lead(_) | Role::Unled);
        // A fill reads the request's `Vary` values and conditions; an invalidation its host.
        let keeps_headers = stored || matches!(role, Role::Invalidate);
        Box::new(Fill {
            config: Arc::clone(&self.config),
            settings: settings.clone(),
            route: route.clone(),
            key,
            fwd,
            role,
            stored,
            stale: None,
            revalidating: false,
            own_answer: false,
            rules: RequestRules::default(),
            request_headers: if keeps_headers {
                head.headers.clone()
            } else {
                HeaderMap::new()
            },
            host: crate::key::host(&head.uri, &head.headers)
                .map(|host| host.to_ascii_lowercase().into_boxed_str()),
            head_only: head.method == Method::HEAD,
            requested_at: SystemTime::now(),
            epoch: self.config.store.epoch(),
            token: None,
            timing: ServerTiming::get(&head.extensions),
        })
    }

    /// The request's primary key (`None`: its route's key function sends it past). A route's
    /// own key is scoped by the route; the default, the target, stands alone, so an unsafe
    /// method's `Location` can be invalidated without knowing its route.
    fn key(&self, head: &request::Parts, route: &RouteLabel, settings: &Resolved) -> Option<u128> {
        Some(match &settings.key {
            Some(key) => primary_key(
                &self.config.namespace,
                route.as_str(),
                &key(RequestHead::of_parts(head))?,
            ),
            None => primary_key(&self.config.namespace, "", &target(&head.uri)),
        })
    }

    /// The variant stored under `key` for a request with these headers.
    fn lookup(&self, key: u128, head: &request::Parts) -> Option<Arc<Entry>> {
        let host = crate::key::host(&head.uri, &head.headers);
        self.config
            .store
            .get(key)?
            .entries
            .iter()
            .find(|entry| entry.matches(host, &head.headers))
            .cloned()
    }

    /// An answer from a stored response: `304` when the client's copy matches.
    fn hit(
        &self,
        entry: &Entry,
        head: &request::Parts,
        now: Instant,
        status: CacheStatus,
    ) -> Response<Bytes> {
        let mut response = if entry.satisfies_precondition(&head.headers) {
            entry.not_modified(now)
        } else {
            entry.response(now, head.method == Method::HEAD)
        };
        mark(response.headers_mut(), &self.config.name, status);
        if let Some(timing) = ServerTiming::get(&head.extensions) {
            timing.add(Metric::new("cache").with_description(status.word()));
        }
        response
    }
}

/// The lead of the instance's flight for a key, taken before the request was decided (its
/// look at the fleet's store), with the fleet's lock when it holds it.
#[derive(Debug)]
struct Lead {
    guard: FlightGuard,
    token: Option<Hold>,
}

/// What a forwarded request is to its key.
#[derive(Debug)]
enum Role {
    /// It fills the key; the others wait for it.
    Lead(FlightGuard),
    /// It may store its response, with nobody waiting on it.
    Unled,
    /// Its response is not stored.
    Bypass,
    /// An unsafe method: a success drops what is stored for its target.
    Invalidate,
}

/// A request sent to the handler, and what becomes of its response.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // Four independent facts about one forwarded request.
pub struct Fill {
    config: Arc<Config>,
    settings: Resolved,
    route: RouteLabel,
    key: u128,
    fwd: Forward,
    role: Role,
    /// Whether the response may be stored (a `GET` leading or unled).
    stored: bool,
    /// The stale response it revalidates or replaces (served instead on a handler's error
    /// within `stale-if-error`).
    stale: Option<Arc<Entry>>,
    /// The request carries the stale response's validators (added by the cache).
    revalidating: bool,
    /// The request's answer is its own (see [`own_answer`]): a response it cannot store
    /// leaves the key as it was.
    own_answer: bool,
    rules: RequestRules,
    /// The request's headers as the client sent them (`Vary` values, the client's own
    /// conditions).
    request_headers: HeaderMap,
    /// The request's host, which a stored response answers only.
    host: Option<Box<str>>,
    head_only: bool,
    requested_at: SystemTime,
    /// The store's invalidation epoch when the request went to the handler.
    epoch: u64,
    /// The fencing token of the fleet's lock on the key, when this fill holds it.
    token: Option<Hold>,
    timing: Option<ServerTiming>,
}

/// What follows the response head of a forwarded request.
#[derive(Debug)]
pub enum Next {
    /// The response goes on; `Some` records its body for the store.
    Stream(Option<Box<Recorder>>),
    /// The response is dropped; this answers instead (from the stored response: a
    /// revalidation's `304`, `stale-if-error`).
    Replace(Response<Bytes>),
}

impl Fill {
    /// Replaces the client's conditions with the stale response's validators, so a `304` from
    /// the handler refreshes it.
    fn revalidate(&mut self, headers: &mut HeaderMap) {
        let Some(stale) = &self.stale else { return };
        let etag = stale.headers.get(header::ETAG).cloned();
        let last_modified = stale.headers.get(header::LAST_MODIFIED).cloned();
        if etag.is_none() && last_modified.is_none() {
            return;
        }
        headers.remove(header::IF_NONE_MATCH);
        headers.remove(header::IF_MODIFIED_SINCE);
        if let Some(etag) = etag {
            headers.insert(header::IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = last_modified {
            headers.insert(header::IF_MODIFIED_SINCE, last_modified);
        }
        self.revalidating = true;
    }

    /// The response's head passed; `body_length` is its body's exact length when the body
    /// knows it (`size_hint().exact()`), for a response without `Content-Length`.
    pub fn on_response(
        mut self: Box<Self>,
        head: &mut response::Parts,
        body_length: Option<u64>,
    ) -> Next {
        let status = head.status;
        let config = Arc::clone(&self.config);
        let now = Instant::now();
        if !matches!(self.role, Role::Lead(_) | Role::Unled) {
            return self.passed_on(head);
        }
        if self.revalidating
            && status == StatusCode::NOT_MODIFIED
            && let Some(stale) = self.stale.take()
        {
            return Next::Replace(self.revalidated(&stale, &head.headers, now));
        }
        if status.is_server_error()
            && let Some(stale) = self.stale.take_if(|stale| stale.serves_on_error(now))
        {
            return Next::Replace(self.stale_on_error(&stale, now));
        }
        let tags = tags(&head.headers, &config.tag_header);
        head.headers.remove(&config.tag_header);
        let freshness = if self.stored && !self.head_only {
            storable(
                &self.rules,
                status,
                &head.headers,
                &self.settings.policy,
                &config.name,
            )
        } else {
            Err(crate::rules::NotStored::Head)
        };
        let length = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
            .or_else(|| body_length.and_then(|length| usize::try_from(length).ok()));
        let fits = length.is_none_or(|length| length <= config.max_body);
        let Ok(freshness) = freshness.map_err(|reason| {
            tracing::trace!(target: "vitals_response_cache", reason = reason.as_str(), "response not stored");
        }) else {
            self.mark_forwarded(&mut head.headers, Some(status), false);
            let landing = if status == StatusCode::NOT_MODIFIED || self.own_answer {
                // The client's own condition was met, or the answer was this request's own:
                // it says nothing about the response others would get.
                Landing::Abandoned
            } else if status.is_server_error() {
                // A failure is not the route's nature: nothing is forgotten or marked.
                Landing::Failed
            } else {
                // A newer response that may not be stored: the older one must not serve
                // again, and for a while nobody waits on this key.
                if self.stored {
                    if self.stale.is_some() {
                        config.remove(self.key);
                    }
                    config.store.mark_pass(self.key);
                }
                Landing::NotStored
            };
            self.land(landing);
            return Next::Stream(None);
        };
        if !fits {
            self.mark_forwarded(&mut head.headers, Some(status), false);
            config.store.mark_pass(self.key);
            self.land(Landing::NotStored);
            return Next::Stream(None);
        }
        let stored_headers = kept_headers(&head.headers, &config.tag_header);
        self.mark_forwarded(&mut head.headers, Some(status), true);
        let lifetime = jittered(freshness.lifetime, config.jitter);
        let vary = vary_values(&freshness.vary, &self.request_headers);
        let role = std::mem::replace(&mut self.role, Role::Bypass);
        Next::Stream(Some(Box::new(Recorder {
            config: Arc::clone(&config),
            key: self.key,
            epoch: self.epoch,
            token: self.token.take(),
            guard: match role {
                Role::Lead(guard) => Some(guard),
                _ => None,
            },
            length,
            too_large: false,
            // Its announced length at once: no growth by doubling past what is stored.
            body: BytesMut::with_capacity(length.unwrap_or(0).min(config.max_body)),
            entry: Some(Entry {
                status,
                headers: stored_headers,
                body: Bytes::new(),
                route: self.route.clone(),
                tags,
                vary_values: vary,
                stored_at: now,
                host: self.host.clone(),
                initial_age: initial_age(&head.headers, self.requested_at, SystemTime::now()),
                lifetime,
                freshness,
            }),
        })))
    }

    /// A response to a request the cache only passes on (a bypass, an unsafe method, which
    /// invalidates on success), marked.
    fn passed_on(self: Box<Self>, head: &mut response::Parts) -> Next {
        let status = head.status;
        if matches!(self.role, Role::Invalidate) && (status.is_success() || status.is_redirection())
        {
            let config = &self.config;
            config.remove(self.key);
            for location in invalidated_locations(&head.headers, &self.request_headers) {
                config.remove(primary_key(&config.namespace, "", &location));
            }
        }
        self.mark_forwarded(&mut head.headers, Some(status), false);
        Next::Stream(None)
    }

    /// The handler failed without a response: the stale response answers when
    /// `stale-if-error` allows (else the error goes on).
    pub fn on_error(mut self: Box<Self>) -> Option<Response<Bytes>> {
        let now = Instant::now();
        if let Some(stale) = self.stale.take_if(|stale| stale.serves_on_error(now)) {
            return Some(self.stale_on_error(&stale, now));
        }
        self.land(Landing::Failed);
        None
    }

    fn stale_on_error(self: Box<Self>, stale: &Entry, now: Instant) -> Response<Bytes> {
        self.config.count(&self.route, Event::StaleOnError);
        let status = CacheStatus::Hit {
            ttl: stale.ttl(now),
        };
        let response = self.answer_from(stale, status, now);
        // The followers answer stale as this one did, without trying the handler again.
        self.land(Landing::Failed);
        response
    }

    /// The handler said the stale response is still good (`304`): it is stored again with the
    /// `304`'s fields, and answers.
    fn revalidated(
        mut self: Box<Self>,
        stale: &Entry,
        fields: &HeaderMap,
        now: Instant,
    ) -> Response<Bytes> {
        // Fields that describe the stored body stay the stored body's (RFC 9111 §3.2).
        const OF_THE_BODY: [header::HeaderName; 4] = [
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::CONTENT_RANGE,
            header::ETAG,
        ];
        let config = Arc::clone(&self.config);
        let mut headers = stale.headers.clone();
        for name in fields.keys() {
            if OF_THE_BODY.contains(name) || name == "content-md5" || *name == config.tag_header {
                continue;
            }
            headers.remove(name);
            for value in fields.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let headers = kept_headers(&headers, &config.tag_header);
        let freshness = storable(
            &self.rules,
            stale.status,
            &headers,
            &self.settings.policy,
            &config.name,
        );
        let overtaken = config.store.invalidated_since(self.key, self.epoch);
        let stored = freshness.is_ok() && !overtaken;
        let entry = if let Ok(freshness) = freshness
            && !overtaken
        {
            let entry = Arc::new(Entry {
                status: stale.status,
                headers,
                body: stale.body.clone(),
                route: self.route.clone(),
                tags: stale.tags.clone(),
                vary_values: vary_values(&freshness.vary, &self.request_headers),
                stored_at: now,
                host: stale.host.clone(),
                initial_age: initial_age(fields, self.requested_at, SystemTime::now()),
                lifetime: jittered(freshness.lifetime, config.jitter),
                freshness,
            });
            config.put(self.key, Arc::clone(&entry), self.token.take());
            config.count(&self.route, Event::Stored);
            entry
        } else {
            config.remove(self.key);
            // Answers this once, as the handler's fields say, and is not kept.
            Arc::new(Entry {
                status: stale.status,
                headers,
                body: stale.body.clone(),
                route: self.route.clone(),
                tags: Vec::new(),
                vary_values: stale.vary_values.clone(),
                stored_at: now,
                host: stale.host.clone(),
                initial_age: Duration::ZERO,
                lifetime: Duration::ZERO,
                freshness: stale.freshness.clone(),
            })
        };
        let status = CacheStatus::Forwarded {
            fwd: self.fwd,
            status: Some(StatusCode::NOT_MODIFIED),
            stored,
        };
        let mut response = self.answer_from(&entry, status, now);
        // A cookie the handler set with its `304` is this client's: passed on, never stored.
        for cookie in fields.get_all(header::SET_COOKIE) {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        self.land(if stored {
            Landing::Stored
        } else {
            Landing::NotStored
        });
        response
    }

    fn answer_from(&self, entry: &Entry, status: CacheStatus, now: Instant) -> Response<Bytes> {
        let mut response = if entry.satisfies_precondition(&self.request_headers) {
            entry.not_modified(now)
        } else {
            entry.response(now, self.head_only)
        };
        mark(response.headers_mut(), &self.config.name, status);
        if let Some(timing) = &self.timing {
            timing.add(Metric::new("cache").with_description(status.word()));
        }
        response
    }

    fn mark_forwarded(&self, headers: &mut HeaderMap, status: Option<StatusCode>, stored: bool) {
        headers.remove(&self.config.tag_header);
        headers.remove(crate::directives::SURROGATE_CONTROL);
        let cache_status = CacheStatus::Forwarded {
            fwd: self.fwd,
            status,
            stored,
        };
        mark(headers, &self.config.name, cache_status);
        if let Some(timing) = &self.timing {
            timing.add(Metric::new("cache").with_description(cache_status.word()));
        }
    }

    fn land(mut self: Box<Self>, landing: Landing) {
        // Nothing stored under the fleet's lock: the key is free for another instance now.
        self.config.release(self.key, self.token.take());
        if let Role::Lead(guard) = std::mem::replace(&mut self.role, Role::Bypass) {
            guard.land(landing);
        }
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        // Dropped before its response (the client left): the fleet's other instances need not
        // wait for the lease to fill the key.
        self.config.release(self.key, self.token.take());
    }
}

/// Keeps a response's body as it passes, and stores the response when the body ends whole.
#[derive(Debug)]
pub struct Recorder {
    config: Arc<Config>,
    key: u128,
    /// The store's invalidation epoch when the request went to the handler.
    epoch: u64,
    /// The fencing token of the fleet's lock on the key, when this fill holds it.
    token: Option<Hold>,
    guard: Option<FlightGuard>,
    length: Option<usize>,
    too_large: bool,
    body: BytesMut,
    /// The response's stored form, its body filled in at the end.
    entry: Option<Entry>,
}

impl Recorder {
    /// A frame of the body went by (as a driver whose body data is not `Bytes` sees it; the
    /// standalone layer's body calls it through `BodyRecorder::on_data`).
    pub fn on_buf(&mut self, data: &impl bytes::Buf) {
        if self.too_large {
            return;
        }
        if !vitals_core::body::keep_within(&mut self.body, data, self.config.max_body) {
            // Passed on unstored, never buffered past the limit.
            self.too_large = true;
            self.body = BytesMut::new();
        }
    }

    /// The body ended: stored when whole (its announced length reached, if it gave one).
    pub(crate) fn end(mut self, end: BodyEnd) {
        let whole = !self.too_large
            && (end == BodyEnd::Completed
                || (end == BodyEnd::Dropped && self.length == Some(self.body.len())))
            && self.length.is_none_or(|length| length == self.body.len());
        // Invalidated while the handler ran: what it read may be what was changed.
        let overtaken = self.config.store.invalidated_since(self.key, self.epoch);
        let landing = match self.entry.take() {
            Some(_) if whole && overtaken => Landing::Abandoned,
            Some(mut entry) if whole => {
                let body = std::mem::take(&mut self.body);
                // A body that grew by doubling would keep its spare half: stored at its size.
                entry.body = if body.capacity() > body.len() + body.len() / 8 + 64 {
                    Bytes::copy_from_slice(&body)
                } else {
                    body.freeze()
                };
                let route = entry.route.clone();
                self.config
                    .put(self.key, Arc::new(entry), self.token.take());
                self.config.count(&route, Event::Stored);
                Landing::Stored
            }
            _ if end == BodyEnd::Dropped => Landing::Abandoned,
            _ => {
                if self.too_large {
                    self.config.store.mark_pass(self.key);
                }
                Landing::NotStored
            }
        };
        self.config.release(self.key, self.token.take());
        if let Some(guard) = self.guard.take() {
            guard.land(landing);
        }
    }
}

/// A request waiting for another request's fill of its key (or, leading it on this instance,
/// looking at the fleet's store first).
#[derive(Debug)]
pub struct Waiter {
    kind: WaitKind,
    /// When the request stops waiting, however many rounds it takes.
    deadline: Instant,
    round: u8,
}

/// What a request waits on.
#[derive(Debug)]
enum WaitKind {
    /// Another request's fill on this instance.
    Flight(watch::Receiver<Landing>),
    /// The fleet's store: what another instance stored, or its lock.
    #[cfg(feature = "redis")]
    Fleet(Box<crate::fleet::Lookup>),
}

/// How a wait ended.
#[derive(Debug)]
pub struct Waited {
    /// How the fill landed; `None`: the wait's limit passed first.
    landing: Option<Landing>,
    duration: Duration,
    deadline: Instant,
    round: u8,
    /// What the look at the fleet's store found.
    #[cfg(feature = "redis")]
    fleet: Option<Box<crate::fleet::Found>>,
}

impl Waiter {
    /// Waits until the fill lands, or the route's wait limit passes.
    #[cfg_attr(not(feature = "redis"), allow(clippy::infallible_destructuring_match))]
    pub async fn wait(self) -> Waited {
        let started = Instant::now();
        let mut landing = match self.kind {
            WaitKind::Flight(landing) => landing,
            #[cfg(feature = "redis")]
            WaitKind::Fleet(lookup) => {
                let found = lookup.run(self.deadline).await;
                return Waited {
                    landing: None,
                    duration: started.elapsed(),
                    deadline: self.deadline,
                    round: self.round,
                    fleet: Some(Box::new(found)),
                };
            }
        };
        let landed = tokio::time::timeout_at(
            self.deadline.into(),
            landing.wait_for(|landing| *landing != Landing::Filling),
        )
        .await;
        let landing = match landed {
            Ok(Ok(landing)) => Some(*landing),
            // The leader's guard went without a word: given up.
            Ok(Err(_)) => Some(Landing::Abandoned),
            Err(_) => None,
        };
        Waited {
            landing,
            duration: started.elapsed(),
            deadline: self.deadline,
            round: self.round,
            #[cfg(feature = "redis")]
            fleet: None,
        }
    }
}

/// The targets an unsafe method's success also invalidates (RFC 9111 §4.4): its `Location`
/// and `Content-Location`, when they are on the request's own host.
fn invalidated_locations(response: &HeaderMap, request: &HeaderMap) -> Vec<String> {
    let host = request
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    [header::LOCATION, header::CONTENT_LOCATION]
        .iter()
        .filter_map(|name| response.get(name)?.to_str().ok()?.parse::<http::Uri>().ok())
        .filter(|uri| match uri.authority() {
            Some(authority) => {
                host.is_some_and(|host| authority.as_str().eq_ignore_ascii_case(host))
            }
            None => uri.path().starts_with('/'),
        })
        .map(|uri| target(&uri).into_owned())
        .collect()
}

/// Why a stored response goes to the handler first: the request asked for a fresher one, or it
/// is stale.
fn revalidation_reason(rules: &RequestRules) -> Forward {
    let asked = rules.no_cache
        || rules.directives.max_age.is_some()
        || rules.directives.min_fresh.is_some();
    if asked {
        Forward::Request
    } else {
        Forward::Stale
    }
}

/// Whether a request's answer is its own (credentials, a range, a precondition of the
/// client's): what it gets says nothing about what other requests may.
fn own_answer(rules: &RequestRules, headers: &HeaderMap) -> bool {
    rules.authorized
        || headers.contains_key(header::RANGE)
        || headers.contains_key(header::IF_MATCH)
        || headers.contains_key(header::IF_UNMODIFIED_SINCE)
}

/// Puts this cache's `Cache-Status` member first in the response's field.
fn mark(headers: &mut HeaderMap, name: &str, status: CacheStatus) {
    let ours = status.render(name);
    match headers.get(&CACHE_STATUS).cloned() {
        // An inner cache's member stays after ours (RFC 9211: the cache nearest the client
        // comes last; ours is added by the outer cache, so it goes after).
        Some(inner) => {
            let mut joined = inner.as_bytes().to_vec();
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(ours.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                headers.insert(CACHE_STATUS, value);
            }
        }
        None => {
            headers.insert(CACHE_STATUS, ours);
        }
    }
}

/// `only-if-cached` and nothing stored: `504` (RFC 9111 §5.2.1.7).
fn only_if_cached_miss(name: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    response.headers_mut().insert(
        CACHE_STATUS,
        CacheStatus::Forwarded {
            fwd: Forward::Miss,
            status: None,
            stored: false,
        }
        .render(name),
    );
    response
}

/// A waiter whose limit passed, on a route that refuses rather than goes to the handler.
fn wait_refused() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(
        b"{\"type\":\"about:blank\",\"title\":\"The response is being prepared; retry shortly\",\"status\":503}",
    ));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// What the cache counts (through `metrics`, with the feature).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))] // Read only by the counters.
pub(crate) enum Event {
    Hit,
    Stale,
    StaleOnError,
    Miss,
    Collapsed,
    Waited(Duration),
    WaitRefused,
    Bypass,
    Stored,
    /// The time a leader spent on the fleet's store.
    #[cfg(feature = "redis")]
    Backend(Duration),
    /// The fleet's store failed or did not answer in time.
    #[cfg(feature = "redis")]
    BackendError,
}
