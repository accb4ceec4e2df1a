//! `VitalsService`: the one service [`VitalsLayer`](crate::VitalsLayer) builds — the route
//! labelled once, one request state, every enabled part called at each phase.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

#[cfg(feature = "concurrency")]
use vitals_concurrency::part::Admission;

#[cfg(feature = "concurrency")]
use crate::admission::Waiting;
use crate::body::{Inner, VitalsBody};
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
    Inner<ResBody>: Body,
{
    type Response = Response<VitalsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, ResBody>;

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
/// once, waits in the limit's queue, or goes to `service`, which is ready.
pub(crate) fn begin<S, ReqBody, ResBody>(
    plan: &Plan,
    mut request: Request<ReqBody>,
    early: Option<Early>,
    service: &mut S,
) -> ResponseFuture<S, Request<ReqBody>, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    #[allow(unused_mut, unused_variables)] // Changed by the limit only.
    let Started {
        mut state,
        #[cfg(feature = "rate-limit")]
        rate_refusal,
        admission,
    } = plan.start(&mut request, early);
    #[cfg(feature = "rate-limit")]
    if let Some(refusal) = rate_refusal {
        return ResponseFuture::refused(refusal.into_response(), state);
    }
    #[cfg(feature = "concurrency")]
    match admission {
        None => {}
        Some((Admission::Admitted(permit), _)) => state.parts.permit = permit,
        Some((Admission::Refused(refusal), _)) => {
            return ResponseFuture::refused(refusal.into_response(), state);
        }
        Some((Admission::Queued(queued), later_deadline)) => {
            // The clone that is ready goes with the request; the caller keeps the fresh one.
            let clone = service.clone();
            let service = std::mem::replace(service, clone);
            let waiting = Waiting {
                queued,
                service,
                request: Some(request),
                deadline: later_deadline,
            };
            return ResponseFuture::queued(waiting, state);
        }
    }
    let inner = state.scope.in_scope(|| service.call(request));
    ResponseFuture::running(inner, state)
}
