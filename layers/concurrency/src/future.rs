//! The response future of [`ConcurrencyLimit`](crate::ConcurrencyLimit): waiting for a
//! permit, running the handler, or answering a refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::LimitBody;
use crate::limiter::Permit;
use crate::part::{Queued, Refusal};

pin_project! {
    /// The response future of [`ConcurrencyLimit`](crate::ConcurrencyLimit).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Waiting {
            // Boxed: the queue is the slow path, the running future stays small.
            waiting: Box<Waiting<S, Req>>,
        },
        Running {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
        },
        Refused {
            refusal: Option<Refusal>,
        },
    }
}

/// A request in the queue, with the service that will take it.
struct Waiting<S, Req> {
    queued: Queued,
    service: S,
    request: Option<Req>,
    permit: Option<Permit>,
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    pub(crate) fn running(future: S::Future, permit: Option<Permit>) -> Self {
        Self {
            state: State::Running { future, permit },
        }
    }

    pub(crate) fn refused(refusal: Refusal) -> Self {
        Self {
            state: State::Refused {
                refusal: Some(refusal),
            },
        }
    }

    pub(crate) fn waiting(queued: Queued, service: S, request: Req) -> Self {
        Self {
            state: State::Waiting {
                waiting: Box::new(Waiting {
                    queued,
                    service,
                    request: Some(request),
                    permit: None,
                }),
            },
        }
    }
}

impl<S, Req, ResBody> Future for ResponseFuture<S, Req>
where
    S: Service<Req, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + Buf,
{
    type Output = Result<Response<LimitBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { refusal } => {
                    let Some(refusal) = refusal.take() else {
                        panic!("vitals_concurrency::ResponseFuture polled after completion");
                    };
                    return Poll::Ready(Ok(refusal.into_response().map(LimitBody::own)));
                }
                StateProj::Waiting { waiting } => {
                    if waiting.permit.is_none() {
                        match ready!(waiting.queued.poll_admit(cx)) {
                            Ok(permit) => waiting.permit = Some(permit),
                            Err(refusal) => {
                                this.state.set(State::Refused { refusal: None });
                                return Poll::Ready(Ok(refusal
                                    .into_response()
                                    .map(LimitBody::own)));
                            }
                        }
                    }
                    ready!(waiting.service.poll_ready(cx))?;
                    let Some(request) = waiting.request.take() else {
                        panic!("vitals_concurrency::ResponseFuture polled after completion");
                    };
                    let future = waiting.service.call(request);
                    let permit = waiting.permit.take();
                    this.state.set(State::Running { future, permit });
                }
                StateProj::Running { future, permit } => {
                    let response = ready!(future.poll(cx))?;
                    let mut permit = permit.take();
                    if let Some(permit) = permit.as_mut() {
                        permit.on_response(&response);
                    }
                    return Poll::Ready(Ok(response.map(|body| LimitBody::inner(body, permit))));
                }
            }
        }
    }
}
