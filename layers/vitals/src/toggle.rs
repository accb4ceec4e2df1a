//! `Toggle`: a layer that is there or not, decided when the stack is built.
//!
//! Each Vitals layer changes the response body's type, so "no layer" and "the layer" are two
//! service types; `Toggle` makes them one (an enum, with `http_body_util::Either` bodies), so a
//! part of the preset stack can be switched off without changing the stack's type.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// `Some(layer)` applies the layer; `None` passes the service through.
#[derive(Clone, Debug)]
pub struct Toggle<L>(Option<L>);

impl<L> Toggle<L> {
    /// The layer, or nothing when `layer` is `None`.
    pub fn new(layer: Option<L>) -> Self {
        Self(layer)
    }
}

impl<S, L: Layer<S>> Layer<S> for Toggle<L> {
    type Service = Toggled<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(layer) => Toggled::On(layer.layer(inner)),
            None => Toggled::Off(inner),
        }
    }
}

/// The service made by [`Toggle`]: the layer's service, or the inner one untouched.
#[derive(Clone, Debug)]
pub enum Toggled<On, Off> {
    /// The layer is on.
    On(On),
    /// The layer is off.
    Off(Off),
}

impl<On, Off, Request, OnBody, OffBody> Service<Request> for Toggled<On, Off>
where
    On: Service<Request, Response = Response<OnBody>>,
    Off: Service<Request, Response = Response<OffBody>, Error = On::Error>,
{
    type Response = Response<Either<OnBody, OffBody>>;
    type Error = On::Error;
    type Future = ToggledFuture<On::Future, Off::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(service) => service.poll_ready(cx),
            Self::Off(service) => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match self {
            Self::On(service) => ToggledFuture::on(service.call(request)),
            Self::Off(service) => ToggledFuture::off(service.call(request)),
        }
    }
}

pin_project! {
    /// The response future of [`Toggled`].
    pub struct ToggledFuture<On, Off> {
        #[pin]
        inner: Branch<On, Off>,
    }
}

pin_project! {
    #[project = BranchProj]
    enum Branch<On, Off> {
        On { #[pin] future: On },
        Off { #[pin] future: Off },
    }
}

impl<On, Off> ToggledFuture<On, Off> {
    fn on(future: On) -> Self {
        Self {
            inner: Branch::On { future },
        }
    }

    fn off(future: Off) -> Self {
        Self {
            inner: Branch::Off { future },
        }
    }
}

impl<On, Off, OnBody, OffBody, E> Future for ToggledFuture<On, Off>
where
    On: Future<Output = Result<Response<OnBody>, E>>,
    Off: Future<Output = Result<Response<OffBody>, E>>,
{
    type Output = Result<Response<Either<OnBody, OffBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(match self.project().inner.project() {
            BranchProj::On { future } => ready!(future.poll(cx)).map(|r| r.map(Either::Left)),
            BranchProj::Off { future } => ready!(future.poll(cx)).map(|r| r.map(Either::Right)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;

    /// A layer that answers with its own body type, to see which path a request took.
    #[derive(Clone)]
    struct Shout;

    impl<S> Layer<S> for Shout {
        type Service =
            tower::util::MapResponse<S, fn(Response<Full<bytes::Bytes>>) -> Response<String>>;

        fn layer(&self, inner: S) -> Self::Service {
            tower::util::MapResponse::new(inner, |_| Response::new("LAYERED".to_owned()))
        }
    }

    async fn body_of(toggle: Toggle<Shout>) -> String {
        let service = toggle.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from_static(
                b"inner",
            ))))
        }));
        let response = tower::ServiceExt::oneshot(service, Request::new(())).await;
        let Ok(response) = response;
        let Ok(collected) = response.into_body().collect().await else {
            panic!("the test bodies cannot fail");
        };
        String::from_utf8_lossy(&collected.to_bytes()).into_owned()
    }

    #[tokio::test]
    async fn on_applies_the_layer_and_off_passes_through() {
        assert_eq!(body_of(Toggle::new(Some(Shout))).await, "LAYERED");
        assert_eq!(body_of(Toggle::new(None)).await, "inner");
    }
}
