//! The response future of [`RateLimit`](crate::RateLimit): the handler's response with the
//! `RateLimit` headers added, or the refusal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use vitals_core::body::EitherBody;

use crate::part::Grant;

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<F, B: Body> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B: Body> {
        Running {
            #[pin]
            future: F,
            grant: Option<Grant>,
        },
        Refused {
            response: Option<Response<Full<B::Data>>>,
        },
    }
}

impl<F, B: Body> ResponseFuture<F, B> {
    pub(crate) fn running(future: F, grant: Option<Grant>) -> Self {
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
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<EitherBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running { future, grant } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(grant) = grant.take() {
                    grant.on_response(&mut response);
                }
                Poll::Ready(Ok(response.map(EitherBody::inner)))
            }
            StateProj::Refused { response } => {
                let Some(response) = response.take() else {
                    panic!("vitals_rate_limit::ResponseFuture polled after completion");
                };
                Poll::Ready(Ok(response.map(EitherBody::own)))
            }
        }
    }
}
