//! The response future of [`CacheHeaders`](crate::CacheHeaders): the handler's future, then
//! the [part](crate::part)'s answer at the head (buffering the body first when it asks to).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::body::CacheBody;
use crate::part::{Buffering, CacheHead, CacheInFlight};

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Calling {
            #[pin]
            future: F,
            in_flight: Option<CacheInFlight>,
        },
        Buffering {
            buffering: Buffering<B>,
        },
        Done,
    }
}

pin_project! {
    /// The response future of [`CacheHeaders`](crate::CacheHeaders).
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, in_flight: CacheInFlight) -> Self {
        Self {
            state: State::Calling {
                future,
                in_flight: Some(in_flight),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, in_flight } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    };
                    let Some(in_flight) = in_flight.take() else {
                        panic!("vitals_cache_headers::ResponseFuture polled after completion");
                    };
                    match in_flight.on_response(response) {
                        CacheHead::Ready(response) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        CacheHead::Buffer(buffering) => {
                            this.state.set(State::Buffering { buffering });
                        }
                    }
                }
                StateProj::Buffering { buffering } => {
                    let response = ready!(buffering.poll_buffer(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => {
                    panic!("vitals_cache_headers::ResponseFuture polled after completion")
                }
            }
        }
    }
}
