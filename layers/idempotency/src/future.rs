//! The response future: read the body of a request with a key, claim the key, run the request
//! (or answer at once), and put the recorder on the response's body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, request};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::body::IdempotencyBody;

use crate::part::{Claimed, Claiming, Keyed, Ticket};
use crate::problem::Problem;
use crate::request_body::read_body;

pin_project! {
    /// The future of [`Idempotency`](crate::Idempotency).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        B: Body,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<S, B>
    where
        S: Service<Request<B>>,
        B: Body,
    {
        Collecting {
            // Boxed: only requests with a key get here, and every other request's future
            // stays small.
            waiting: Box<Waiting<S>>,
            #[pin]
            body: B,
        },
        Running {
            #[pin]
            future: S::Future,
            // Boxed, as the answer: a request without a key has neither, and its future stays
            // small.
            ticket: Option<Box<Ticket>>,
        },
        Claiming {
            claiming: Box<Claiming>,
            waiting: Box<Waiting<S>>,
            body: Option<Bytes>,
        },
        Answered {
            response: Option<Box<Response<Bytes>>>,
        },
    }
}

/// What a request with a key keeps while its body is read.
struct Waiting<S> {
    keyed: Option<Keyed>,
    head: Option<request::Parts>,
    read: BytesMut,
    service: Option<S>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    B: Body,
{
    pub(crate) fn running(future: S::Future, ticket: Option<Box<Ticket>>) -> Self {
        Self {
            state: State::Running { future, ticket },
        }
    }

    pub(crate) fn answered(response: Response<Bytes>) -> Self {
        Self {
            state: State::Answered {
                response: Some(Box::new(response)),
            },
        }
    }

    pub(crate) fn collecting(keyed: Keyed, head: request::Parts, body: B, service: S) -> Self {
        Self {
            state: State::Collecting {
                waiting: Box::new(Waiting {
                    keyed: Some(keyed),
                    head: Some(head),
                    read: BytesMut::new(),
                    service: Some(service),
                }),
                body,
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body + From<Bytes>,
    ResBody: Body<Data = Bytes>,
{
    type Output = Result<Response<IdempotencyBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProjection::Claiming {
                    claiming,
                    waiting,
                    body,
                } => {
                    let claimed = ready!(Pin::new(&mut **claiming).poll(cx));
                    let (Some(head), Some(service), Some(body)) =
                        (waiting.head.take(), waiting.service.take(), body.take())
                    else {
                        return Poll::Ready(Ok(Problem::StoreFull
                            .into_response()
                            .map(IdempotencyBody::own)));
                    };
                    next_step(claimed, head, body, service)
                }
                StateProjection::Answered { response } => {
                    let response = response
                        .take()
                        .map_or_else(|| Problem::StoreFull.into_response(), |answer| *answer);
                    return Poll::Ready(Ok(response.map(IdempotencyBody::own)));
                }
                StateProjection::Running { future, ticket } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            // No answer: the operation failed, the key is free for a retry.
                            if let Some(ticket) = ticket.take() {
                                ticket.release();
                            }
                            return Poll::Ready(Err(error));
                        }
                    };
                    let (head, body) = response.into_parts();
                    let recorder = ticket
                        .take()
                        .and_then(|ticket| ticket.on_response(head.status, &head.headers));
                    return Poll::Ready(Ok(Response::from_parts(
                        head,
                        IdempotencyBody::inner(body, recorder.map(Box::new)),
                    )));
                }
                StateProjection::Collecting { waiting, mut body } => {
                    let Waiting {
                        keyed,
                        head,
                        read,
                        service,
                    } = &mut **waiting;
                    let limit = keyed.as_ref().map_or(0, Keyed::max_body);
                    let read_all = ready!(read_body(body.as_mut(), read, limit, cx));
                    let (Some(keyed), Some(head), Some(service)) =
                        (keyed.take(), head.take(), service.take())
                    else {
                        return Poll::Ready(Ok(Problem::StoreFull
                            .into_response()
                            .map(IdempotencyBody::own)));
                    };
                    if let Err(problem) = read_all {
                        State::Answered {
                            response: Some(Box::new(keyed.refuse(problem))),
                        }
                    } else {
                        let body = std::mem::take(read).freeze();
                        let mut claiming = keyed.claim(&head, &body);
                        match Pin::new(&mut claiming).poll(cx) {
                            Poll::Ready(claimed) => next_step(claimed, head, body, service),
                            Poll::Pending => State::Claiming {
                                claiming: Box::new(claiming),
                                waiting: Box::new(Waiting {
                                    keyed: None,
                                    head: Some(head),
                                    read: BytesMut::new(),
                                    service: Some(service),
                                }),
                                body: Some(body),
                            },
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

/// What follows a decided claim: the answer, or the request sent on with its ticket.
fn next_step<S, B>(
    claimed: Claimed,
    head: request::Parts,
    body: Bytes,
    mut service: S,
) -> State<S, B>
where
    S: Service<Request<B>>,
    B: Body + From<Bytes>,
{
    match claimed {
        Claimed::Answer(response) => State::Answered {
            response: Some(Box::new(response)),
        },
        Claimed::Run(ticket) => State::Running {
            future: service.call(Request::from_parts(head, B::from(body))),
            ticket: Some(Box::new(ticket)),
        },
    }
}
