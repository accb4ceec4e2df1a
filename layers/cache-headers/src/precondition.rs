//! `PreconditionLayer`: optimistic concurrency for state-changing requests. `If-Match` and
//! `If-Unmodified-Since` are checked against the resource's current validators *before* the
//! handler runs, so a lost update is refused with `412` instead of being written.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use vitals_core::body::EitherBody;

use crate::conditional::{Preconditions, Validators, Verdict};

/// A boxed future of the current validators.
type ValidatorsFuture = Pin<Box<dyn Future<Output = Option<Validators>> + Send>>;

/// Looks up the current validators of the resource a request targets: `None` when it does not
/// exist. Closures `Fn(&Parts) -> impl Future<Output = Option<Validators>>` implement this.
pub trait CurrentValidators: Send + Sync + 'static {
    /// The resource's current validators.
    fn current(&self, request: &Parts) -> ValidatorsFuture;
}

impl<F, Fut> CurrentValidators for F
where
    F: Fn(&Parts) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Validators>> + Send + 'static,
{
    fn current(&self, request: &Parts) -> ValidatorsFuture {
        Box::pin(self(request))
    }
}

/// Checks the preconditions of state-changing requests (`POST`, `PUT`, `PATCH`, `DELETE`, …)
/// before the handler runs: `412 Precondition Failed` when `If-Match` / `If-Unmodified-Since`
/// (or `If-None-Match: *` for create-only writes) do not hold against what
/// [`CurrentValidators`] reports. Safe methods and requests without preconditions go straight
/// through, without a lookup.
///
/// **The handler's write must still be conditional.** The check runs before the handler acts,
/// so two concurrent writes with the same `If-Match` both pass it; only the write can settle
/// which one wins. Update only the version the client named, and answer `412` when no row
/// changed:
///
/// ```sql
/// UPDATE products SET name = $3, version = version + 1 WHERE id = $1 AND version = $2
/// -- 0 rows updated: another write got there first → 412 Precondition Failed
/// ```
///
/// ```no_run
/// use axum::{routing::put, Router};
/// use vitals_cache_headers::{EntityTag, PreconditionLayer, Validators};
///
/// let guarded = PreconditionLayer::new(|request: &http::request::Parts| {
///     let id = request.uri.path().rsplit('/').next().unwrap_or_default().to_owned();
///     async move {
///         // Look the row's version up; `None` if there is no such row.
///         Some(Validators { etag: EntityTag::strong(&format!("{id}-v7")), last_modified: None })
///     }
/// })
/// .with_required_precondition();
/// let app: Router = Router::new().route("/items/{id}", put(|| async { "saved" }).route_layer(guarded));
/// ```
#[derive(Clone)]
pub struct PreconditionLayer {
    resolver: Arc<dyn CurrentValidators>,
    require: bool,
}

impl std::fmt::Debug for PreconditionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreconditionLayer")
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
}

impl PreconditionLayer {
    /// Checks preconditions against what `resolver` reports.
    pub fn new(resolver: impl CurrentValidators) -> Self {
        Self {
            resolver: Arc::new(resolver),
            require: false,
        }
    }

    /// Refuse state-changing requests that do not say which version they change (`If-Match`,
    /// `If-Unmodified-Since`) or that they create (`If-None-Match: *`) with `428 Precondition
    /// Required` (RFC 6585).
    #[must_use]
    pub fn with_required_precondition(mut self) -> Self {
        self.require = true;
        self
    }
}

impl<S> Layer<S> for PreconditionLayer {
    type Service = Precondition<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Precondition {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`PreconditionLayer`].
#[derive(Clone)]
pub struct Precondition<S> {
    inner: S,
    layer: PreconditionLayer,
}

impl<S> Precondition<S> {
    vitals_core::inner_service_accessors!();
}

impl<S: std::fmt::Debug> std::fmt::Debug for Precondition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Precondition")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

fn answer<B>(status: StatusCode, message: &'static str) -> Response<EitherBody<B>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    let body = Bytes::from(format!(r#"{{"error":"{message}"}}"#));
    let mut response = Response::new(EitherBody::own(Full::new(B::Data::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Precondition<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Response = Response<EitherBody<ResBody>>;
    type Error = S::Error;
    type Future = PreconditionFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = request.method().clone();
        if matches!(
            method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) {
            return PreconditionFuture::calling(self.inner.call(request));
        }
        let preconditions = Preconditions::from_headers(request.headers());
        if self.layer.require && !preconditions.guards_write() {
            return PreconditionFuture::answered(StatusCode::PRECONDITION_REQUIRED);
        }
        if preconditions.is_empty() {
            return PreconditionFuture::calling(self.inner.call(request));
        }
        let (parts, body) = request.into_parts();
        let lookup = self.layer.resolver.current(&parts);
        // The service that was made ready goes with the request; this one takes a fresh clone.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        PreconditionFuture {
            state: State::Resolving {
                lookup,
                pending: Some(Box::new(Pending {
                    service,
                    request: Request::from_parts(parts, body),
                    preconditions,
                    method,
                })),
            },
        }
    }
}

/// What waits for the lookup.
struct Pending<S, ReqBody> {
    service: S,
    request: Request<ReqBody>,
    preconditions: Preconditions,
    method: Method,
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Resolving { lookup: ValidatorsFuture, pending: Option<Box<Pending<S, ReqBody>>> },
        Calling { #[pin] future: S::Future },
        Answered { status: StatusCode },
    }
}

pin_project! {
    /// The response future of [`Precondition`].
    pub struct PreconditionFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

impl<S, ReqBody> PreconditionFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn calling(future: S::Future) -> Self {
        Self {
            state: State::Calling { future },
        }
    }

    fn answered(status: StatusCode) -> Self {
        Self {
            state: State::Answered { status },
        }
    }
}

impl<S, ReqBody, ResBody> Future for PreconditionFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Output = Result<Response<EitherBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Answered { status } => {
                    let message = if *status == StatusCode::PRECONDITION_REQUIRED {
                        "this request must carry If-Match, If-Unmodified-Since or If-None-Match: *"
                    } else {
                        "the resource changed since it was read: precondition failed"
                    };
                    return Poll::Ready(Ok(answer(*status, message)));
                }
                StateProj::Calling { future } => {
                    return future
                        .poll(cx)
                        .map_ok(|response| response.map(EitherBody::inner));
                }
                StateProj::Resolving { lookup, pending } => {
                    let current = std::task::ready!(lookup.as_mut().poll(cx));
                    let Some(pending) = pending.take() else {
                        panic!("vitals_cache_headers::PreconditionFuture polled after completion");
                    };
                    let Pending {
                        mut service,
                        request,
                        preconditions,
                        method,
                    } = *pending;
                    let exists = current.is_some();
                    let current = current.unwrap_or_default();
                    match preconditions.evaluate(&method, &current, exists) {
                        Verdict::Proceed => this.state.set(State::Calling {
                            future: service.call(request),
                        }),
                        Verdict::NotModified | Verdict::PreconditionFailed => {
                            this.state.set(State::Answered {
                                status: StatusCode::PRECONDITION_FAILED,
                            });
                        }
                    }
                }
            }
        }
    }
}
