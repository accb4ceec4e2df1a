//! The response future: a stored answer at once, the handler's response (marked, maybe
//! recorded, maybe replaced by the stored one), or a wait for another request's fill first.
//! And the background refresh of a stale answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, request};
use http_body::Body;
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tower_service::Service;
use vitals_core::body::{BodyEnd, BodyRecorder, RecordingBody};
use vitals_core::route::RouteLabel;

use crate::body::ResponseCacheBody;
use crate::part::{Arrival, Fill, Next, Refresh, ResponseCachePart, Waited, Waiter};

type Wait = Pin<Box<dyn Future<Output = Waited> + Send>>;

pin_project! {
    /// The future of [`ResponseCache`](crate::ResponseCache).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
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
    {
        Running {
            #[pin]
            future: S::Future,
            fill: Option<Box<Fill>>,
        },
        Answered {
            response: Option<Box<Response<Bytes>>>,
        },
        Waiting {
            wait: Wait,
            // Boxed: only a request that waits gets here.
            pending: Box<Pending<S, B>>,
        },
    }
}

/// What a waiting request keeps until it is answered or sent on.
struct Pending<S, B> {
    part: ResponseCachePart,
    route: RouteLabel,
    head: request::Parts,
    body: Option<B>,
    service: Option<S>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn running(future: S::Future, fill: Option<Box<Fill>>) -> Self {
        Self {
            state: State::Running { future, fill },
        }
    }

    pub(crate) fn answered(response: Box<Response<Bytes>>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    pub(crate) fn waiting(
        waiter: Waiter,
        part: ResponseCachePart,
        route: RouteLabel,
        head: request::Parts,
        body: B,
        service: S,
    ) -> Self {
        Self {
            state: State::Waiting {
                wait: Box::pin(waiter.wait()),
                pending: Box::new(Pending {
                    part,
                    route,
                    head,
                    body: Some(body),
                    service: Some(service),
                }),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Default + Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Output = Result<Response<ResponseCacheBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProjection::Running { future, fill } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => {
                            return Poll::Ready(match fill.take().and_then(Fill::on_error) {
                                Some(stale) => Ok(stale.map(RecordingBody::own)),
                                None => Err(error),
                            });
                        }
                    };
                    let Some(fill) = fill.take() else {
                        return Poll::Ready(Ok(
                            response.map(|body| RecordingBody::inner(body, None))
                        ));
                    };
                    let (mut head, body) = response.into_parts();
                    let length = body.size_hint().exact();
                    return Poll::Ready(Ok(match fill.on_response(&mut head, length) {
                        Next::Stream(recorder) => {
                            Response::from_parts(head, RecordingBody::inner(body, recorder))
                        }
                        Next::Replace(answer) => answer.map(RecordingBody::own),
                    }));
                }
                StateProjection::Answered { response } => {
                    let response = response
                        .take()
                        .map_or_else(|| Response::new(Bytes::new()), |response| *response);
                    return Poll::Ready(Ok(response.map(RecordingBody::own)));
                }
                StateProjection::Waiting { wait, pending } => {
                    let waited = ready!(wait.as_mut().poll(cx));
                    let Pending {
                        part,
                        route,
                        head,
                        body,
                        service,
                    } = &mut **pending;
                    let arrival = part.follow_up(head, route, waited);
                    let (Some(mut service), Some(body)) = (service.take(), body.take()) else {
                        return Poll::Ready(Ok(Response::new(RecordingBody::own(Bytes::new()))));
                    };
                    match arrival {
                        Arrival::Answer(response, refresh) => {
                            if let Some(refresh) = refresh {
                                refresh.spawn(service);
                            }
                            State::Answered {
                                response: Some(response),
                            }
                        }
                        Arrival::Wait(again) => {
                            *wait = Box::pin(again.wait());
                            pending.service = Some(service);
                            pending.body = Some(body);
                            continue;
                        }
                        Arrival::Pass | Arrival::Forward(_) => {
                            let fill = match arrival {
                                Arrival::Forward(fill) => Some(fill),
                                _ => None,
                            };
                            let head = std::mem::replace(head, Request::new(()).into_parts().0);
                            State::Running {
                                future: service.call(Request::from_parts(head, body)),
                                fill,
                            }
                        }
                    }
                }
            };
            this.state.set(next);
        }
    }
}

impl Refresh {
    /// Runs the refresh in the background through `service`: the request again, with an empty
    /// body and the stored validators, its response stored as a fill's. Given up at its limit
    /// (the fill is dropped, its flight abandoned, and the next stale answer leads another),
    /// and outside a tokio runtime (the next request after the stale window fills). A composed
    /// stack passes the parts inside the cache with the handler as `service`.
    pub fn spawn<S, B, ResBody>(self, mut service: S)
    where
        S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
        S::Future: Send + 'static,
        B: Default + Send + 'static,
        ResBody: Body + Send + 'static,
        ResBody::Data: Send,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Self {
            request,
            fill,
            limit,
        } = self;
        runtime.spawn(tokio::time::timeout(limit, async move {
            let request = request.map(|()| B::default());
            if std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .is_err()
            {
                return;
            }
            // The error is not kept across an await: it need not be `Send`.
            let Some(response) = service.call(request).await.ok() else {
                drop(fill.on_error());
                return;
            };
            let (mut head, body) = response.into_parts();
            let length = body.size_hint().exact();
            let Next::Stream(Some(mut recorder)) = fill.on_response(&mut head, length) else {
                return;
            };
            let mut body = std::pin::pin!(body);
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            recorder.on_buf(data);
                        }
                    }
                    Some(Err(_)) => return recorder.on_end(BodyEnd::Errored),
                    None => return recorder.on_end(BodyEnd::Completed),
                }
            }
        }));
    }
}
