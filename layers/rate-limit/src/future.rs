//! The response future of [`RateLimit`](crate::RateLimit): waiting for the quotas' store
//! (Redis), then the handler's response with the `RateLimit` headers added — or the refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_service::Service;
use vitals_core::body::EitherBody;

use crate::part::{Checking, Decision, Grant};

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<S, Req, B>
    where
        S: Service<Req>,
        B: Body,
    {
        #[pin]
        state: State<S, Req, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, B>
    where
        S: Service<Req>,
        B: Body,
    {
        // Boxed: the store's round trip is the slow path; the running future stays small.
        Checking {
            waiting: Box<Waiting<S, Req>>,
        },
        Running {
            #[pin]
            future: S::Future,
            grant: Option<Grant>,
        },
        Refused {
            response: Option<Response<Full<B::Data>>>,
        },
    }
}

/// Where a check stands.
enum Decided {
    Not,
    Allowed(Option<Grant>),
    Taken,
}

/// A request whose quotas are being checked, with the service that will take it.
struct Waiting<S, Req> {
    checking: Checking,
    decided: Decided,
    service: S,
    request: Option<Req>,
}

impl<S: Service<Req>, Req, B: Body> ResponseFuture<S, Req, B> {
    pub(crate) fn running(future: S::Future, grant: Option<Grant>) -> Self {
        Self {
            state: State::Running { future, grant },
        }
    }

    pub(crate) fn refused(response: Response<Full<B::Data>>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }

    pub(crate) fn checking(checking: Checking, service: S, request: Req) -> Self {
        Self {
            state: State::Checking {
                waiting: Box::new(Waiting {
                    checking,
                    decided: Decided::Not,
                    service,
                    request: Some(request),
                }),
            },
        }
    }
}

fn completed() -> ! {
    panic!("vitals_rate_limit::ResponseFuture polled after completion")
}

impl<S, Req, B> Future for ResponseFuture<S, Req, B>
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
    B::Data: From<bytes::Bytes> + bytes::Buf,
{
    type Output = Result<Response<EitherBody<B>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                StateProj::Checking { waiting } => {
                    if let Decided::Not = waiting.decided {
                        match ready!(Pin::new(&mut waiting.checking).poll(cx)) {
                            Decision::Allowed(grant) => {
                                waiting.decided = Decided::Allowed(Some(grant));
                            }
                            Decision::Unlimited | Decision::Pending(_) => {
                                waiting.decided = Decided::Allowed(None);
                            }
                            Decision::Refused(refusal) => {
                                state.set(State::Refused {
                                    response: Some(refusal.into_response()),
                                });
                                continue;
                            }
                        }
                    }
                    ready!(waiting.service.poll_ready(cx))?;
                    let decided = std::mem::replace(&mut waiting.decided, Decided::Taken);
                    let (Some(request), Decided::Allowed(grant)) =
                        (waiting.request.take(), decided)
                    else {
                        completed();
                    };
                    let future = waiting.service.call(request);
                    state.set(State::Running { future, grant });
                }
                StateProj::Running { future, grant } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(grant) = grant.take() {
                        grant.on_response(&mut response);
                    }
                    return Poll::Ready(Ok(response.map(EitherBody::inner)));
                }
                StateProj::Refused { response } => {
                    let Some(response) = response.take() else {
                        completed();
                    };
                    return Poll::Ready(Ok(response.map(EitherBody::own)));
                }
            }
        }
    }
}
