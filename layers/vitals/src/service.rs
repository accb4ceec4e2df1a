//! `VitalsService`: the one service [`VitalsLayer`](crate::VitalsLayer) builds — the route
//! labelled once, one request state, every enabled part called at each phase.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::body::{Inner, VitalsBody};
use crate::bounds::{InnerService, RequestBody, ResponseBody};
use crate::future::ResponseFuture;
use crate::plan::{Early, Plan, Started};

/// The service made by [`VitalsLayer`](crate::VitalsLayer): every part — trace context,
/// timing, latency, the concurrency limit, the deadline, cache headers, queries — run in one
/// pass around `S`.
#[derive(Clone, Debug)]
pub struct VitalsService<S> {
    inner: S,
    plan: Arc<Plan>,
}

impl<S> VitalsService<S> {
    pub(crate) fn new(inner: S, plan: Arc<Plan>) -> Self {
        Self { inner, plan }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VitalsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + InnerService<Request<ReqBody>>,
    ReqBody: RequestBody,
    ResBody: ResponseBody,
    ResBody::Data: From<Bytes> + Buf,
    Inner<ResBody>: Body<Data = ResBody::Data>,
{
    type Response = Response<VitalsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.plan.is_empty() {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        #[cfg(feature = "rate-limit")]
        let early = match self.plan.early_decision(&request) {
            None => None,
            Some(Ok(early)) => Some(early),
            Some(Err((checking, early))) => {
                // The quotas' store must answer first: nothing starts before it has. The
                // clone that is ready goes with the request; this service keeps the fresh one.
                let clone = self.inner.clone();
                let service = std::mem::replace(&mut self.inner, clone);
                return ResponseFuture::checking(crate::future::Checking {
                    quota_check: checking,
                    early: Some(early),
                    decided: false,
                    service,
                    request: Some(request),
                    plan: Arc::clone(&self.plan),
                });
            }
        };
        #[cfg(not(feature = "rate-limit"))]
        let early = None;
        begin(&self.plan, request, early, &mut self.inner)
    }
}

/// The parts start on the request (with what was decided early), then it is answered at
/// once, read and claimed for its `Idempotency-Key`, answered from the response cache or
/// waits for another request's fill, waits in the limit's queue, or goes to `service`, which
/// is ready.
pub(crate) fn begin<S, ReqBody, ResBody>(
    plan: &Arc<Plan>,
    mut request: Request<ReqBody>,
    early: Option<Early>,
    service: &mut S,
) -> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + InnerService<Request<ReqBody>>,
    ReqBody: RequestBody,
    ResBody: ResponseBody,
    ResBody::Data: From<Bytes> + Buf,
    Inner<ResBody>: Body<Data = ResBody::Data>,
{
    let Started {
        state,
        #[cfg(feature = "rate-limit")]
        rate_refusal,
        #[cfg(feature = "idempotency-stack")]
        key_refusal,
        keyed,
        inside,
    } = plan.start(&mut request, early);
    #[cfg(feature = "rate-limit")]
    if let Some(refusal) = rate_refusal {
        return ResponseFuture::refused(refusal.into_response(), state);
    }
    #[cfg(feature = "idempotency-stack")]
    if let Some(answer) = key_refusal {
        return ResponseFuture::refused(crate::future::own_answer(answer), state);
    }
    if let Some(keyed) = keyed {
        #[cfg(feature = "idempotency-stack")]
        {
            let (keyed, inside) = keyed;
            // The service that is ready goes with the request; the caller keeps a clone.
            let clone = service.clone();
            let service = std::mem::replace(service, clone);
            let (head, body) = request.into_parts();
            let keying = crate::future::Keying {
                keyed: Some(keyed),
                inside: Some(inside),
                head: Some(head),
                read: bytes::BytesMut::new(),
                body: None,
                claiming: None,
                service,
                plan: Arc::clone(plan),
            };
            return ResponseFuture::keying(keying, body, state);
        }
        #[cfg(not(feature = "idempotency-stack"))]
        match keyed {}
    }
    let Some(inside) = inside else {
        unreachable!("a request neither answered nor keyed has the parts inside to start");
    };
    ResponseFuture::start(plan, state, inside, request, service)
}
