//! The response future of [`VitalsService`](crate::VitalsService): one state for every part,
//! entered once per poll. The phases are the handler running, and the only waits a part adds:
//! the rate limit's store, the key's claim and the response cache's wait for another request's
//! fill before it starts, the limit's queue before it, the entity-tag buffering after it, the
//! deadline racing both.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;
use vitals_core::body::EitherBody;
use vitals_core::server_timing::ServerTiming;

#[cfg(feature = "concurrency")]
use crate::admission::Deadline;
use crate::admission::Waiting;
use crate::body::{Cached, Inner, VitalsBody, deadlined, uncached};
#[cfg(feature = "concurrency")]
use vitals_concurrency::part::Admission;

use crate::plan::{Admitting, Early, Inside, Plan};
use crate::response_cache_part::AwaitingFill;
use crate::state::{Finish, Parts, QueriesFinish, RequestState};

#[cfg(feature = "cache-headers")]
use vitals_cache_headers::part::{Buffering, CacheHead};

/// No buffering without the `cache-headers` feature.
#[cfg(not(feature = "cache-headers"))]
pub(crate) enum Buffering<B> {
    #[allow(dead_code)] // Never built: it only names `B`.
    Never(std::convert::Infallible, std::marker::PhantomData<B>),
}

/// What one poll came to.
#[allow(clippy::large_enum_variant)] // Returned once and consumed at once: boxing would only add an allocation.
enum Step<B: Body, E> {
    Pending,
    /// The handler's response, as the queries and cache-headers parts made it.
    Head(Response<Cached<EitherBody<B>>>, Option<QueriesFinish>),
    /// The handler failed.
    Failed(E),
    /// A part answered instead of the handler: the limit's refusal, or the deadline's.
    #[cfg_attr(not(feature = "concurrency"), allow(dead_code))]
    Answer(Response<Full<B::Data>>),
}

/// The response head is decided: each part outside the handler sees it, innermost first (the
/// limit learns whether it measured real work — from the response the handler or the deadline
/// made, before the cache may answer from its store instead; the cache stores it; latency and
/// timing classify what the client gets; the span records it), then the body takes the
/// request's state to its end.
fn finish_head<B>(
    mut state: Box<RequestState>,
    response: Response<Cached<EitherBody<B>>>,
    queries: Option<QueriesFinish>,
    #[allow(unused_variables)] now: Option<Instant>,
) -> Response<VitalsBody<B>>
where
    B: Body,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body,
{
    // Each part's state is taken from its place (the whole `Parts` taken out was copied);
    // what is left is dropped at the end, as the head is done with it.
    let parts = &mut state.parts;
    let mut permit = parts.permit.take();
    if let Some(permit) = permit.as_mut() {
        #[cfg(feature = "concurrency")]
        permit.on_response(&response);
        #[cfg(not(feature = "concurrency"))]
        match *permit {}
    }
    // The response cache next (innermost of the parts outside the limit): it stores the
    // response as cache headers made it, and may answer from its store instead.
    let (mut response, stored) = crate::response_cache_part::on_head(parts, response);
    // Inside the rate limit: the stored answer has no quota headers (they are the replay's).
    let recorder = parts.ticket.take().and_then(|ticket| {
        #[cfg(feature = "idempotency-stack")]
        return ticket
            .on_response(response.status(), response.headers())
            .map(Box::new);
        #[cfg(not(feature = "idempotency-stack"))]
        match *ticket {}
    });
    if let Some(grant) = parts.rate_limit.take() {
        #[cfg(feature = "rate-limit")]
        grant.on_response(&mut response);
        #[cfg(not(feature = "rate-limit"))]
        match grant {}
    }
    #[cfg(feature = "concurrency")]
    let body_deadline = parts.deadline.as_ref().and_then(Deadline::body_deadline);
    #[cfg(not(feature = "concurrency"))]
    let body_deadline = None;
    state.finish = Some(Finish {
        recorder,
        stored,
        permit,
        #[cfg(feature = "latency")]
        latency: parts
            .latency
            .take()
            .map(|latency| latency.on_response(&response)),
        #[cfg(feature = "timing")]
        timing: parts
            .timing
            .take()
            .map(|timing| timing.on_response(&response, now)),
        #[cfg(feature = "queries")]
        queries,
    });
    #[cfg(not(feature = "queries"))]
    let _ = queries;
    state.scope.on_response(&mut response);
    if let Some(timing) = state.parts.server_timing.take() {
        timing.append_to(response.headers_mut());
    }
    state.parts = Parts::default();
    response.map(|body| VitalsBody::new(deadlined(body, body_deadline), Some(state)))
}

pin_project! {
    /// The response future of [`VitalsService`](crate::VitalsService).
    pub struct ResponseFuture<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
        B: Body,
    {
        #[pin]
        phase: Phase<S, ReqBody, B>,
        // One allocation for every part's state (none when every part is off): the future
        // stays small as it is moved, and the body takes the same allocation on.
        state: Option<Box<RequestState>>,
        polling: bool,
    }

    impl<S, ReqBody, B> PinnedDrop for ResponseFuture<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut state) = this.state.take() {
                // Dropped before the handler ran (waiting for a permit or another request's
                // fill, or refused and not yet answered): its key, if it holds one, is free
                // for a retry.
                if matches!(
                    this.phase.as_ref().project_ref(),
                    PhaseProjRef::Queued { .. }
                        | PhaseProjRef::Awaiting { .. }
                        | PhaseProjRef::Answered { .. }
                ) {
                    state.parts.free_key();
                }
                state.on_drop(*this.polling);
            }
        }
    }
}

pin_project! {
    #[project = PhaseProj]
    #[project_ref = PhaseProjRef]
    pub(crate) enum Phase<S, ReqBody, B>
    where
        S: Service<Request<ReqBody>>,
        B: Body,
    {
        // The handler runs (the common case, and the only phase when the limit admits at once).
        Running {
            #[pin]
            future: S::Future,
        },
        // The body is read for its entity tag (boxed: the running future stays small).
        Buffering {
            buffering: Box<(Buffering<EitherBody<B>>, Option<QueriesFinish>)>,
        },
        // Waiting in the limit's queue.
        Queued {
            waiting: Box<Waiting<S, Request<ReqBody>>>,
        },
        // A request with an `Idempotency-Key`: its body read and its key claimed before the
        // parts inside start (boxed: the running future stays small).
        Keying {
            keying: Box<Keying<S>>,
            #[pin]
            body: ReqBody,
        },
        // Waiting for the rate limit's store (Redis) before any part starts.
        Checking {
            checking: Box<Checking<S, Request<ReqBody>>>,
        },
        // Waiting for another request's fill of the response cache's key (no permit held).
        Awaiting {
            awaiting: Box<AwaitingFill<S, ReqBody>>,
        },
        // Answered before the handler ran: a limit refused (the rate limit or the concurrency
        // limit), the idempotency part replayed, or the response cache answered from its
        // store. Answered on the first poll.
        Answered {
            answer: Option<Response<Full<B::Data>>>,
        },
        // Answered; what the handler held is dropped.
        Done,
    }
}

/// What a request with an `Idempotency-Key` keeps while its body is read and its key claimed.
#[cfg(feature = "idempotency-stack")]
pub(crate) struct Keying<S> {
    pub(crate) keyed: Option<vitals_idempotency::part::Keyed>,
    pub(crate) inside: Option<crate::plan::Inside>,
    pub(crate) head: Option<http::request::Parts>,
    pub(crate) read: bytes::BytesMut,
    pub(crate) body: Option<Bytes>,
    pub(crate) claiming: Option<vitals_idempotency::part::Claiming>,
    pub(crate) service: S,
    pub(crate) plan: Arc<Plan>,
}

/// No key to claim without the `idempotency` feature.
#[cfg(not(feature = "idempotency-stack"))]
pub(crate) enum Keying<S> {
    #[allow(dead_code)] // Never built: it only names `S`.
    Never(std::convert::Infallible, std::marker::PhantomData<S>),
}

#[cfg(feature = "idempotency-stack")]
impl<S> Keying<S> {
    /// Reads the body (at most what the part fingerprints), then claims the key.
    fn poll_claimed<ReqBody: Body>(
        &mut self,
        mut body: Pin<&mut ReqBody>,
        cx: &mut Context<'_>,
    ) -> Poll<vitals_idempotency::part::Claimed> {
        use vitals_idempotency::part::Claimed;
        loop {
            if let Some(claiming) = self.claiming.as_mut() {
                return Pin::new(claiming).poll(cx);
            }
            let limit = self
                .keyed
                .as_ref()
                .map_or(0, vitals_idempotency::part::Keyed::max_body);
            let read = std::task::ready!(vitals_idempotency::request_body::read_body(
                body.as_mut(),
                &mut self.read,
                limit,
                cx
            ));
            let (Some(keyed), Some(head)) = (self.keyed.take(), self.head.as_ref()) else {
                completed();
            };
            if let Err(problem) = read {
                return Poll::Ready(Claimed::Answer(keyed.refuse(problem)));
            }
            let bytes = std::mem::take(&mut self.read).freeze();
            self.claiming = Some(keyed.claim(head, &bytes));
            self.body = Some(bytes);
        }
    }
}

/// A request whose quotas are being checked in the rate limit's store, with everything it
/// needs to start once the answer is in.
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))] // Never made without the rate limit.
pub(crate) struct Checking<S, Req> {
    #[cfg(feature = "rate-limit")]
    pub(crate) quota_check: vitals_rate_limit::part::Checking,
    #[cfg(not(feature = "rate-limit"))]
    pub(crate) quota_check: std::convert::Infallible,
    /// The route and arrival time, and the decision once it came.
    pub(crate) early: Option<Early>,
    pub(crate) decided: bool,
    pub(crate) service: S,
    pub(crate) request: Option<Req>,
    pub(crate) plan: Arc<Plan>,
}

impl<S: Service<Request<ReqBody>>, ReqBody, B: Body> ResponseFuture<S, ReqBody, B> {
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn checking(checking: Checking<S, Request<ReqBody>>) -> Self {
        Self::new(
            Phase::Checking {
                checking: Box::new(checking),
            },
            None,
        )
    }

    /// The parts outside the response cache started: the ones inside it start now
    /// ([`inward`]).
    pub(crate) fn start(
        plan: &Arc<Plan>,
        mut state: Box<RequestState>,
        inside: Inside,
        request: Request<ReqBody>,
        service: &mut S,
    ) -> Self
    where
        S: crate::bounds::InnerService<Request<ReqBody>, Response = Response<B>>,
        ReqBody: crate::RequestBody,
        B: crate::bounds::ResponseBody,
        B::Data: From<Bytes> + Buf,
        Inner<B>: Body<Data = B::Data>,
    {
        let phase = inward(plan, &mut state, inside, request, service);
        Self::new(phase, Some(state))
    }

    /// A request with an `Idempotency-Key`: its body is read and its key claimed first.
    #[cfg(feature = "idempotency-stack")]
    pub(crate) fn keying(keying: Keying<S>, body: ReqBody, state: Box<RequestState>) -> Self {
        Self::new(
            Phase::Keying {
                keying: Box::new(keying),
                body,
            },
            Some(state),
        )
    }

    /// Every part is off: the handler's answer passes through, with nothing allocated.
    pub(crate) fn passthrough(future: S::Future) -> Self {
        Self::new(Phase::Running { future }, None)
    }

    #[cfg_attr(
        not(any(feature = "rate-limit", feature = "idempotency-stack")),
        allow(dead_code)
    )]
    pub(crate) fn refused(answer: Response<Full<B::Data>>, state: Box<RequestState>) -> Self {
        Self::new(
            Phase::Answered {
                answer: Some(answer),
            },
            Some(state),
        )
    }

    fn new(phase: Phase<S, ReqBody, B>, state: Option<Box<RequestState>>) -> Self {
        Self {
            phase,
            state,
            polling: false,
        }
    }
}

/// The parts from the response cache inward start on a request: the cache answers it, has it
/// wait for another request's fill, or lets it on to the limit, which decides
/// ([`after_admission`]).
// Always inlined (measured): each stage of a request's start takes the request by value, and
// a stage left out of line copies it (224 bytes) on the way in.
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn inward<S, ReqBody, B>(
    plan: &Arc<Plan>,
    state: &mut RequestState,
    inside: Inside,
    request: Request<ReqBody>,
    service: &mut S,
) -> Phase<S, ReqBody, B>
where
    S: crate::bounds::InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: crate::RequestBody,
    B: crate::bounds::ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    // No response cache for this request: straight on to the limit, the request not moved
    // through the cache's stage for nothing.
    if !crate::response_cache_part::applies(plan, request.method()) {
        return past_cache(plan, state, inside, request, service);
    }
    match crate::response_cache_part::arrive(plan, state, inside, request, service) {
        ControlFlow::Continue((request, inside)) => {
            past_cache(plan, state, inside, request, service)
        }
        ControlFlow::Break(phase) => phase,
    }
}

/// The parts inside the response cache start: the limit decides, and its decision is carried
/// out ([`after_admission`]).
// Always inlined (measured): each stage of a request's start takes the request by value, and
// a stage left out of line copies it (224 bytes) on the way in.
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn past_cache<S, ReqBody, B>(
    plan: &Plan,
    state: &mut RequestState,
    inside: Inside,
    mut request: Request<ReqBody>,
    service: &mut S,
) -> Phase<S, ReqBody, B>
where
    S: Service<Request<ReqBody>> + Clone,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    let admission = plan.start_inside(state, &mut request, inside);
    after_admission(state, admission, request, service)
}

/// What the limit decided, carried out: the handler called (`service` is ready), a wait in the
/// queue (with `service`, and a fresh clone left in its place), or the refusal.
// Always inlined (measured): each stage of a request's start takes the request by value, and
// a stage left out of line copies it (224 bytes) on the way in.
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn after_admission<S, ReqBody, B>(
    state: &mut RequestState,
    #[allow(unused_variables)] admission: Admitting,
    request: Request<ReqBody>,
    service: &mut S,
) -> Phase<S, ReqBody, B>
where
    S: Service<Request<ReqBody>> + Clone,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    #[cfg(feature = "concurrency")]
    match admission {
        None => {}
        Some((Admission::Admitted(permit), _)) => state.parts.permit = permit,
        Some((Admission::Refused(refusal), _)) => {
            state.parts.free_key();
            return Phase::Answered {
                answer: Some(refusal.into_response()),
            };
        }
        Some((Admission::Queued(queued), later_deadline)) => {
            let clone = service.clone();
            let service = std::mem::replace(service, clone);
            return Phase::Queued {
                waiting: Box::new(Waiting {
                    queued,
                    service,
                    request: Some(request),
                    deadline: later_deadline,
                }),
            };
        }
    }
    // The closure holds the request by reference: moved into it, the request was copied at
    // each of the scopes it passes through (the span's, the context's, the ledger's).
    let mut request = Some(request);
    let future = state
        .scope
        .in_scope(|| request.take().map(|request| service.call(request)));
    let Some(future) = future else {
        unreachable!("the scope runs its closure once");
    };
    Phase::Running { future }
}

#[cfg(feature = "idempotency-stack")]
impl<S, ReqBody, B> ResponseFuture<S, ReqBody, B>
where
    S: crate::bounds::InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: crate::RequestBody,
    B: crate::bounds::ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    /// A request with a key: once its key is claimed, it is answered (a replay, a `409`, a
    /// `422`…) or goes on to the parts inside, holding the key. Ready at once in any other
    /// phase.
    fn poll_keying(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        use vitals_idempotency::part::Claimed;
        let this = self.project();
        let mut phase = this.phase;
        let PhaseProj::Keying { keying, body } = phase.as_mut().project() else {
            return Poll::Ready(());
        };
        let claimed = std::task::ready!(keying.poll_claimed(body, cx));
        let Some(state) = this.state.as_mut() else {
            completed();
        };
        let next = match claimed {
            Claimed::Answer(answer) => Phase::Answered {
                answer: Some(own_answer(answer)),
            },
            Claimed::Run(ticket) => {
                let (Some(head), Some(bytes), Some(inside)) =
                    (keying.head.take(), keying.body.take(), keying.inside.take())
                else {
                    completed();
                };
                state.parts.ticket = Some(Box::new(ticket));
                let request = Request::from_parts(head, ReqBody::from(bytes));
                let plan = Arc::clone(&keying.plan);
                inward(&plan, state, inside, request, &mut keying.service)
            }
        };
        phase.set(next);
        Poll::Ready(())
    }
}

/// An answer a part made of bytes (an idempotency replay or problem, a stored response), as a
/// body of the stack's data.
#[cfg(any(feature = "idempotency-stack", feature = "response-cache-stack"))]
pub(crate) fn own_answer<D: From<Bytes> + Buf>(answer: Response<Bytes>) -> Response<Full<D>> {
    answer.map(|bytes| Full::new(D::from(bytes)))
}

fn completed() -> ! {
    panic!("vitals::ResponseFuture polled after completion")
}

impl<S, ReqBody, B> Future for ResponseFuture<S, ReqBody, B>
where
    S: crate::bounds::InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: crate::RequestBody,
    B: crate::bounds::ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    type Output = Result<Response<VitalsBody<B>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut waited = false;
        if let PhaseProj::Checking { checking } = self.as_mut().project().phase.project() {
            let started = std::task::ready!(poll_checking(checking, cx))?;
            self.set(started);
            waited = true;
        }
        // Every poll is timed, the ones that wait for a key's claim or another request's fill
        // included: the first counts from the request's start, and a wait is no poll.
        #[cfg_attr(not(feature = "timing"), allow(clippy::let_unit_value))]
        let clock = self.as_mut().poll_clock(waited);
        #[cfg(feature = "idempotency-stack")]
        if self.as_mut().poll_keying(cx).is_pending() {
            return self.pending(clock);
        }
        match self.as_mut().poll_awaiting(cx) {
            Poll::Pending => return self.pending(clock),
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => {
                // The service failed its readiness: nothing ran, nothing to answer with.
                let now = self.as_mut().poll_ended(clock, true);
                if let Some(state) = self.as_mut().project().state.take() {
                    state.on_error(now);
                }
                return Poll::Ready(Err(error));
            }
        }
        let this = self.project();
        let Some(state) = this.state.as_mut() else {
            return passthrough(this.phase, cx);
        };
        let RequestState { scope, parts, .. } = &mut **state;
        *this.polling = true;
        let phase = this.phase;
        let step = scope.in_scope(|| step(phase, parts, cx));
        *this.polling = false;
        #[cfg(feature = "timing")]
        let now = match (parts.timing.as_mut(), clock) {
            (Some(timing), Some(clock)) => timing.poll_ends(clock, !matches!(step, Step::Pending)),
            _ => None,
        };
        #[cfg(not(feature = "timing"))]
        let now = None;
        if let Step::Pending = step {
            return Poll::Pending;
        }
        let Some(mut state) = this.state.take() else {
            completed();
        };
        Poll::Ready(match step {
            Step::Pending => completed(),
            Step::Head(response, queries) => Ok(finish_head(state, response, queries, now)),
            Step::Failed(error) => {
                // A stale response that may answer for a failing handler does; the permit goes
                // back without a sample, as for any failure.
                if let Some(kept) = crate::response_cache_part::on_error(&mut state.parts) {
                    drop(state.parts.permit.take());
                    Ok(finish_head(state, kept, None, now))
                } else {
                    state.on_error(now);
                    Err(error)
                }
            }
            Step::Answer(answer) => {
                let response = answer.map(|body| uncached(EitherBody::own(body)));
                Ok(finish_head(state, response, None, now))
            }
        })
    }
}

impl<S, ReqBody, B> ResponseFuture<S, ReqBody, B>
where
    S: crate::bounds::InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: crate::RequestBody,
    B: crate::bounds::ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    /// A request waiting for another request's fill: once the fill landed (or the wait
    /// passed), it is answered from the store or goes on to the parts inside the cache. Ready
    /// at once in any other phase; the error is the service's readiness failing.
    fn poll_awaiting(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let this = self.project();
        let mut phase = this.phase;
        let PhaseProj::Awaiting { awaiting } = phase.as_mut().project() else {
            return Poll::Ready(Ok(()));
        };
        let Some(state) = this.state.as_mut() else {
            completed();
        };
        #[cfg(feature = "response-cache-stack")]
        {
            let next = std::task::ready!(awaiting.poll_next(state, cx))?;
            phase.set(next);
            Poll::Ready(Ok(()))
        }
        #[cfg(not(feature = "response-cache-stack"))]
        match &**awaiting {
            AwaitingFill::Never(never, _) => {
                let _ = (state, cx);
                match *never {}
            }
        }
    }
}

/// Where the timing part's poll began (nothing without it).
#[cfg(feature = "timing")]
type Clock = Option<vitals_timing::part::PollClock>;
#[cfg(not(feature = "timing"))]
type Clock = ();

impl<S: Service<Request<ReqBody>>, ReqBody, B: Body> ResponseFuture<S, ReqBody, B> {
    /// The timing part's clock for this poll (`waited`: the first after the quota's check).
    #[allow(unused_variables, clippy::unused_self)] // Without the timing part, no clock.
    fn poll_clock(self: Pin<&mut Self>, waited: bool) -> Clock {
        #[cfg(feature = "timing")]
        return self
            .project()
            .state
            .as_ref()
            .and_then(|state| state.parts.timing.as_ref())
            .map(|timing| {
                if waited {
                    timing.poll_begins_now()
                } else {
                    timing.poll_begins()
                }
            });
    }

    /// The poll ends before the handler's: timed as any other.
    fn pending<T>(self: Pin<&mut Self>, clock: Clock) -> Poll<T> {
        self.poll_ended(clock, false);
        Poll::Pending
    }

    /// Ends the timing part's poll (`ready`: the request is answered); when it ended.
    #[allow(unused_variables, clippy::unused_self)] // Without the timing part, no clock.
    fn poll_ended(self: Pin<&mut Self>, clock: Clock, ready: bool) -> Option<Instant> {
        #[cfg(feature = "timing")]
        if let (Some(timing), Some(clock)) = (
            self.project()
                .state
                .as_mut()
                .and_then(|state| state.parts.timing.as_mut()),
            clock,
        ) {
            return timing.poll_ends(clock, ready);
        }
        None
    }
}

/// A request that started after its quota check, or the error of the service's readiness.
type Begun<S, ReqBody, B> =
    Result<ResponseFuture<S, ReqBody, B>, <S as Service<Request<ReqBody>>>::Error>;

/// Waits for the rate limit's store, then the service's readiness; then the request starts as
/// [`begin`](crate::service::begin) starts any other.
#[cfg_attr(not(feature = "rate-limit"), allow(unused_variables))]
fn poll_checking<S, ReqBody, B>(
    checking: &mut Checking<S, Request<ReqBody>>,
    cx: &mut Context<'_>,
) -> Poll<Begun<S, ReqBody, B>>
where
    ReqBody: crate::RequestBody,
    S: crate::bounds::InnerService<Request<ReqBody>, Response = Response<B>>,
    B: crate::bounds::ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    #[cfg(feature = "rate-limit")]
    {
        if !checking.decided {
            let decision = std::task::ready!(Pin::new(&mut checking.quota_check).poll(cx));
            if let Some(early) = checking.early.as_mut() {
                early.decision = decision;
            }
            checking.decided = true;
        }
        // A refusal is answered at once: it does not wait for the service.
        let refused = checking.early.as_ref().is_some_and(|early| {
            matches!(
                early.decision,
                vitals_rate_limit::part::Decision::Refused(_)
            )
        });
        if !refused {
            std::task::ready!(checking.service.poll_ready(cx))?;
        }
        let Some(request) = checking.request.take() else {
            completed();
        };
        let clone = checking.service.clone();
        let mut service = std::mem::replace(&mut checking.service, clone);
        Poll::Ready(Ok(crate::service::begin(
            &checking.plan,
            request,
            checking.early.take(),
            &mut service,
        )))
    }
    #[cfg(not(feature = "rate-limit"))]
    match checking.quota_check {}
}

/// Every part is off: the handler's future polled as it is, its body passed through.
fn passthrough<S, ReqBody, B>(
    mut phase: Pin<&mut Phase<S, ReqBody, B>>,
    cx: &mut Context<'_>,
) -> Poll<Result<Response<VitalsBody<B>>, S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body,
{
    let PhaseProj::Running { future } = phase.as_mut().project() else {
        completed();
    };
    let result = std::task::ready!(future.poll(cx));
    phase.set(Phase::Done);
    Poll::Ready(result.map(|response| {
        response
            .map(|body| VitalsBody::new(deadlined(uncached(EitherBody::inner(body)), None), None))
    }))
}

/// Moves the request on as far as it goes in this poll (inside the request's scope).
fn step<S, ReqBody, B>(
    mut phase: Pin<&mut Phase<S, ReqBody, B>>,
    parts: &mut Parts,
    cx: &mut Context<'_>,
) -> Step<B, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    loop {
        match phase.as_mut().project() {
            PhaseProj::Running { future } => {
                // The handler's outgoing calls see the request's deadline and its
                // `Server-Timing` collector while it is polled.
                #[cfg(feature = "concurrency")]
                let deadline = parts
                    .deadline
                    .as_ref()
                    .map(vitals_concurrency::deadline::Deadline::request_deadline);
                #[cfg(not(feature = "concurrency"))]
                let deadline = None;
                let polled = ServerTiming::in_scope(&mut parts.server_timing, || {
                    vitals_core::deadline::RequestDeadline::in_scope(deadline, || future.poll(cx))
                });
                let response = match polled {
                    Poll::Pending => return deadline_passed(phase, parts, cx),
                    Poll::Ready(Err(error)) => {
                        phase.set(Phase::Done);
                        return Step::Failed(error);
                    }
                    Poll::Ready(Ok(response)) => response,
                };
                phase.set(Phase::Done);
                if let Some(step) = on_head(phase.as_mut(), parts, response) {
                    return step;
                }
            }
            PhaseProj::Buffering { buffering } => {
                #[cfg(feature = "cache-headers")]
                {
                    let Poll::Ready(response) = buffering.0.poll_buffer(cx) else {
                        return deadline_passed(phase, parts, cx);
                    };
                    let queries = buffering.1.take();
                    phase.set(Phase::Done);
                    return Step::Head(response, queries);
                }
                #[cfg(not(feature = "cache-headers"))]
                match &buffering.0 {
                    Buffering::Never(never, _) => match *never {},
                }
            }
            PhaseProj::Queued { waiting } => {
                #[cfg(feature = "concurrency")]
                {
                    if parts.permit.is_none() {
                        let Poll::Ready(admitted) = waiting.queued.poll_admit(cx) else {
                            return Step::Pending;
                        };
                        match admitted {
                            Ok(permit) => {
                                parts.permit = Some(permit);
                                // The deadline counts from admission, as the handler's time.
                                parts.deadline = waiting
                                    .deadline
                                    .take()
                                    .and_then(|(part, route)| part.start(Some(&route)));
                            }
                            Err(refusal) => {
                                parts.free_key();
                                phase.set(Phase::Done);
                                return Step::Answer(refusal.into_response());
                            }
                        }
                    }
                    match waiting.service.poll_ready(cx) {
                        Poll::Pending => return Step::Pending,
                        Poll::Ready(Err(error)) => {
                            phase.set(Phase::Done);
                            return Step::Failed(error);
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let Some(request) = waiting.request.take() else {
                        completed();
                    };
                    let future = waiting.service.call(request);
                    phase.set(Phase::Running { future });
                }
                #[cfg(not(feature = "concurrency"))]
                match waiting.queued {}
            }
            PhaseProj::Answered { answer } => {
                let Some(answer) = answer.take() else {
                    completed();
                };
                phase.set(Phase::Done);
                return Step::Answer(answer);
            }
            // Handled before the parts started (`poll_checking`).
            PhaseProj::Checking { .. }
            | PhaseProj::Keying { .. }
            | PhaseProj::Awaiting { .. }
            | PhaseProj::Done => completed(),
        }
    }
}

/// The handler answered: the parts inside the limit see the head, innermost first — the
/// queries part may answer with its N+1 report, which the cache-headers part then sees like any
/// response. `None`: the body is to be buffered first (the phase is set for it).
fn on_head<S, ReqBody, B>(
    phase: Pin<&mut Phase<S, ReqBody, B>>,
    parts: &mut Parts,
    response: Response<B>,
) -> Option<Step<B, S::Error>>
where
    S: Service<Request<ReqBody>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    #[cfg(feature = "queries")]
    let (response, queries) = match parts.queries.take() {
        Some(queries) => {
            let (response, finish) = queries.on_response(response);
            (response, Some(finish))
        }
        None => (response.map(EitherBody::inner), None),
    };
    #[cfg(not(feature = "queries"))]
    let (response, queries) = (response.map(EitherBody::inner), None);
    match parts.cache.take() {
        None => Some(Step::Head(response.map(uncached), queries)),
        #[cfg(feature = "cache-headers")]
        Some(cache) => match cache.on_response(response) {
            CacheHead::Ready(response) => Some(Step::Head(response, queries)),
            CacheHead::Buffer(buffering) => {
                let mut phase = phase;
                phase.set(Phase::Buffering {
                    buffering: Box::new((buffering, queries)),
                });
                None
            }
        },
        #[cfg(not(feature = "cache-headers"))]
        Some(never) => {
            let _ = phase;
            match never {}
        }
    }
}

/// The handler (or the body being buffered) is pending: if the deadline passed, what it held
/// is dropped now and the deadline answers.
#[allow(unused_variables, unused_mut)] // Without the `concurrency` feature there is no deadline.
fn deadline_passed<S, ReqBody, B>(
    mut phase: Pin<&mut Phase<S, ReqBody, B>>,
    parts: &mut Parts,
    cx: &mut Context<'_>,
) -> Step<B, S::Error>
where
    S: Service<Request<ReqBody>>,
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    #[cfg(feature = "concurrency")]
    if let Some(deadline) = parts.deadline.as_mut()
        && deadline.poll_elapsed(cx).is_ready()
    {
        phase.set(Phase::Done);
        // The handler ran (and may have done its work): its key is spent, not freed.
        parts.spend_key();
        if let Some(deadline) = parts.deadline.take() {
            return Step::Answer(deadline.into_response());
        }
    }
    Step::Pending
}
