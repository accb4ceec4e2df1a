//! The response-cache part in the fused stack (feature `response-cache-stack`): what the cache
//! makes of a request before the limit sees it (an answer from the store, a wait for another
//! request's fill, or the way in), what it makes of the response head, and a stale answer's
//! refresh — run in the background through the parts inside the cache, as a fill is.
//!
//! It sits after the rate limit and idempotency and before the concurrency limit: a hit or a
//! wait takes no permit, and what it stores is the head as cache headers made it, without the
//! headers the outer parts add for one client (`RateLimit-*`, `Server-Timing`, `traceparent`).

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use vitals_core::body::EitherBody;

use crate::body::{Cached, Inner};
use crate::bounds::{InnerService, RequestBody, ResponseBody};
use crate::future::Phase;
use crate::plan::{Inside, Plan};
use crate::state::{Parts, RequestState};

#[cfg(feature = "response-cache-stack")]
pub(crate) use vitals_response_cache::part::{Fill, Recorder as StoreRecorder};

/// No fill without the `response-cache-stack` feature.
#[cfg(not(feature = "response-cache-stack"))]
pub(crate) enum Fill {}

/// Nothing stored without the `response-cache-stack` feature.
#[cfg(not(feature = "response-cache-stack"))]
pub(crate) enum StoreRecorder {}

/// A request waiting for another request's fill of its key: no permit held, nothing inside the
/// cache started.
#[cfg(feature = "response-cache-stack")]
pub(crate) struct AwaitingFill<S, ReqBody> {
    wait: std::pin::Pin<Box<dyn Future<Output = vitals_response_cache::part::Waited> + Send>>,
    /// What the wait came to, kept while the service gets ready.
    arrival: Option<vitals_response_cache::part::Arrival>,
    head: http::request::Parts,
    body: Option<ReqBody>,
    inside: Option<Inside>,
    /// A clone of its own, made ready after the wait (the caller's ready one stays with it:
    /// a waiting request holds no capacity of the inner service).
    service: S,
    plan: Arc<Plan>,
}

/// No waits without the `response-cache-stack` feature.
#[cfg(not(feature = "response-cache-stack"))]
pub(crate) enum AwaitingFill<S, ReqBody> {
    #[allow(dead_code)] // Never built: it only names `S` and `ReqBody`.
    Never(
        std::convert::Infallible,
        std::marker::PhantomData<(S, ReqBody)>,
    ),
}

/// Whether the response cache is on and may apply to a request of `method`.
#[allow(unused_variables)] // Without the feature there is no cache.
pub(crate) fn applies(plan: &Plan, method: &http::Method) -> bool {
    #[cfg(feature = "response-cache-stack")]
    return plan
        .response_cache
        .as_ref()
        .is_some_and(|part| part.may_apply(method));
    #[cfg(not(feature = "response-cache-stack"))]
    false
}

/// The cache's decision on a request that passed the parts outside it: answered from the store
/// or waiting (`Break`: the phase to go on in), or on its way to the limit (`Continue`, with a
/// fill in `state` when the cache is to see its response).
#[allow(clippy::type_complexity)] // Both halves are named where they are used.
pub(crate) fn arrive<S, ReqBody, B>(
    #[allow(unused_variables)] plan: &Arc<Plan>,
    #[allow(unused_variables)] state: &mut RequestState,
    inside: Inside,
    request: Request<ReqBody>,
    #[allow(unused_variables)] service: &mut S,
) -> ControlFlow<Phase<S, ReqBody, B>, (Request<ReqBody>, Inside)>
where
    S: InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: RequestBody,
    B: ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    #[cfg(feature = "response-cache-stack")]
    if let Some(part) = plan
        .response_cache
        .as_ref()
        .filter(|part| part.may_apply(request.method()))
    {
        let (mut head, body) = request.into_parts();
        let arrival = part.arrival(&mut head, &inside.route);
        return after_arrival(plan, state, arrival, head, body, inside, service);
    }
    ControlFlow::Continue((request, inside))
}

/// Carries out what the cache decided.
#[cfg(feature = "response-cache-stack")]
#[allow(clippy::type_complexity)] // As `arrive`.
fn after_arrival<S, ReqBody, B>(
    plan: &Arc<Plan>,
    state: &mut RequestState,
    arrival: vitals_response_cache::part::Arrival,
    head: http::request::Parts,
    body: ReqBody,
    inside: Inside,
    service: &mut S,
) -> ControlFlow<Phase<S, ReqBody, B>, (Request<ReqBody>, Inside)>
where
    S: InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: RequestBody,
    B: ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    use vitals_response_cache::part::Arrival;
    match arrival {
        Arrival::Pass => {}
        Arrival::Forward(fill) => state.parts.fill = Some(fill),
        Arrival::Answer(response, refresh) => {
            if let Some(refresh) = refresh {
                spawn_refresh(plan, service.clone(), *refresh);
            }
            return ControlFlow::Break(Phase::Answered {
                answer: Some(crate::future::own_answer(*response)),
            });
        }
        Arrival::Wait(waiter) => {
            return ControlFlow::Break(Phase::Awaiting {
                awaiting: Box::new(AwaitingFill {
                    wait: Box::pin(waiter.wait()),
                    arrival: None,
                    head,
                    body: Some(body),
                    inside: Some(inside),
                    service: service.clone(),
                    plan: Arc::clone(plan),
                }),
            });
        }
    }
    ControlFlow::Continue((Request::from_parts(head, body), inside))
}

#[cfg(feature = "response-cache-stack")]
impl<S, ReqBody> AwaitingFill<S, ReqBody> {
    /// Waits for the fill (again, if the cache says so), then for the service when the
    /// request is to go in; the phase it goes on in.
    pub(crate) fn poll_next<B>(
        &mut self,
        state: &mut RequestState,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Phase<S, ReqBody, B>, S::Error>>
    where
        S: InnerService<Request<ReqBody>, Response = Response<B>>,
        ReqBody: RequestBody,
        B: ResponseBody,
        B::Data: From<Bytes> + Buf,
        Inner<B>: Body<Data = B::Data>,
    {
        use std::task::Poll;
        use vitals_response_cache::part::Arrival;
        let Some(part) = self.plan.response_cache.as_ref() else {
            unreachable!("only a stack with a response cache waits for a fill");
        };
        loop {
            let arrival = if let Some(arrival) = self.arrival.take() {
                arrival
            } else {
                let waited = std::task::ready!(self.wait.as_mut().poll(cx));
                let Some(inside) = self.inside.as_ref() else {
                    unreachable!("a waiting request keeps its route until it goes on");
                };
                part.follow_up(&mut self.head, &inside.route, waited)
            };
            match arrival {
                Arrival::Wait(again) => {
                    self.wait = Box::pin(again.wait());
                    continue;
                }
                Arrival::Answer(..) => {}
                Arrival::Pass | Arrival::Forward(_) => match self.service.poll_ready(cx) {
                    Poll::Pending => {
                        self.arrival = Some(arrival);
                        return Poll::Pending;
                    }
                    // The service failed before the handler ran: a stale response that may
                    // answer for a failing handler does, as after the handler's own failure;
                    // else the fill is given up and its waiters look again.
                    Poll::Ready(Err(error)) => {
                        return Poll::Ready(match arrival {
                            Arrival::Forward(fill) => match fill.on_error() {
                                Some(kept) => Ok(Phase::Answered {
                                    answer: Some(crate::future::own_answer(kept)),
                                }),
                                None => Err(error),
                            },
                            _ => Err(error),
                        });
                    }
                    Poll::Ready(Ok(())) => {}
                },
            }
            let (Some(body), Some(inside)) = (self.body.take(), self.inside.take()) else {
                unreachable!("a waiting request goes on once");
            };
            let head = std::mem::replace(&mut self.head, Request::new(()).into_parts().0);
            let plan = Arc::clone(&self.plan);
            let service = &mut self.service;
            return Poll::Ready(Ok(
                match after_arrival(&plan, state, arrival, head, body, inside, service) {
                    ControlFlow::Break(phase) => phase,
                    ControlFlow::Continue((request, inside)) => {
                        crate::future::past_cache(&plan, state, inside, request, service)
                    }
                },
            ));
        }
    }
}

/// The response head passed the parts inside the cache (or one of them answered): the fill,
/// when there is one, marks it (`Cache-Status`), replaces it with the stored response (a
/// revalidation's `304`, `stale-if-error`), or records its body to store.
#[allow(clippy::type_complexity)] // A response and what records its body.
pub(crate) fn on_head<B>(
    parts: &mut Parts,
    response: Response<Cached<EitherBody<B>>>,
) -> (Response<Cached<EitherBody<B>>>, Option<Box<StoreRecorder>>)
where
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    let Some(fill) = parts.fill.take() else {
        return (response, None);
    };
    #[cfg(feature = "response-cache-stack")]
    {
        use vitals_response_cache::part::Next;
        let (mut head, body) = response.into_parts();
        let length = body.size_hint().exact();
        match fill.on_response(&mut head, length) {
            Next::Stream(recorder) => (Response::from_parts(head, body), recorder),
            Next::Replace(answer) => (stored_answer(answer), None),
        }
    }
    #[cfg(not(feature = "response-cache-stack"))]
    match *fill {}
}

/// The handler failed: a stale response that may answer for a failing handler
/// (`stale-if-error`), if the fill has one.
pub(crate) fn on_error<B>(parts: &mut Parts) -> Option<Response<Cached<EitherBody<B>>>>
where
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    let fill = parts.fill.take()?;
    #[cfg(feature = "response-cache-stack")]
    return fill.on_error().map(stored_answer);
    #[cfg(not(feature = "response-cache-stack"))]
    match *fill {}
}

/// A response of the store's, as the body type the parts outside the cache see.
#[cfg(feature = "response-cache-stack")]
fn stored_answer<B>(answer: Response<Bytes>) -> Response<Cached<EitherBody<B>>>
where
    B: Body,
    B::Data: From<Bytes> + Buf,
{
    crate::future::own_answer(answer).map(|body| crate::body::uncached(EitherBody::own(body)))
}

/// Refreshes a stale answer in the background, through the parts inside the cache (the
/// limit's permit, the deadline, cache headers, the query ledger) and the handler, its response
/// stored as a fill's (see `Refresh::spawn`).
#[cfg(feature = "response-cache-stack")]
fn spawn_refresh<S, ReqBody, B>(
    plan: &Plan,
    service: S,
    refresh: vitals_response_cache::part::Refresh,
) where
    S: InnerService<Request<ReqBody>, Response = Response<B>>,
    ReqBody: RequestBody,
    B: ResponseBody,
    B::Data: From<Bytes> + Buf,
    Inner<B>: Body<Data = B::Data>,
{
    if let Some(inside) = plan.refresh.clone() {
        refresh.spawn(crate::VitalsService::new(service, inside));
    }
}
