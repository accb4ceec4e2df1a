//! The route label of a request: a bounded set of names, never the raw path.
//!
//! Metrics and findings are grouped by route. Using the raw path as a label lets any client
//! create new series at will (`/products/1`, `/products/2`, … or random 404s), so Vitals uses
//! the route *template*: axum's [`MatchedPath`](axum::extract::MatchedPath) (`/products/{id}`)
//! when the router matched one, and the fixed label [`UNMATCHED`] otherwise.
//!
//! Other routers plug in an [`ExtractRoute`]; it is asked first, and the `MatchedPath` /
//! [`UNMATCHED`] fallback applies when it has no answer. [`GrpcMethodRoute`] labels gRPC calls
//! by their method path (`/grpc.health.v1.Health/Check`).
//!
//! ```
//! use http::Request;
//! use vitals_core::route::{RouteLabeler, UNMATCHED};
//!
//! let labeler = RouteLabeler::new();
//! let request = Request::get("/products/42").body(()).unwrap();
//! // No router matched this request, so the raw path is never used.
//! assert_eq!(labeler.label(&request).as_str(), UNMATCHED);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Request, Uri};

/// The label of requests that matched no route (404s, or routers without route templates).
pub const UNMATCHED: &str = "unmatched";

/// A route label: a route template or [`UNMATCHED`]. Cheap to clone (no allocation).
#[derive(Clone)]
pub struct RouteLabel(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
    #[cfg(feature = "axum")]
    Matched(axum::extract::MatchedPath),
}

impl RouteLabel {
    /// The [`UNMATCHED`] label.
    pub const fn unmatched() -> Self {
        Self(Repr::Static(UNMATCHED))
    }

    /// A label from a static string, such as a route template known at compile time.
    pub const fn from_static(label: &'static str) -> Self {
        Self(Repr::Static(label))
    }

    /// A label from a shared string. Build these once (at startup), not per request.
    pub fn new(label: impl Into<Arc<str>>) -> Self {
        Self(Repr::Shared(label.into()))
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
            #[cfg(feature = "axum")]
            Repr::Matched(m) => m.as_str(),
        }
    }

    /// Whether this is the [`UNMATCHED`] label.
    pub fn is_unmatched(&self) -> bool {
        self.as_str() == UNMATCHED
    }
}

impl Default for RouteLabel {
    fn default() -> Self {
        Self::unmatched()
    }
}

impl AsRef<str> for RouteLabel {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl Hash for RouteLabel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RouteLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(feature = "axum")]
impl From<axum::extract::MatchedPath> for RouteLabel {
    fn from(path: axum::extract::MatchedPath) -> Self {
        Self(Repr::Matched(path))
    }
}

/// A borrowed view of a request's head, handed to an [`ExtractRoute`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (where routers leave what they matched).
    pub extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    /// The head of a request taken apart (`Request::into_parts`).
    pub fn of_parts(head: &'a http::request::Parts) -> Self {
        Self {
            method: &head.method,
            uri: &head.uri,
            headers: &head.headers,
            extensions: &head.extensions,
        }
    }

    /// The head of `request`.
    pub fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }
}

/// Finds the route label of a request for routers other than axum.
///
/// Return `None` to fall back to axum's `MatchedPath`, then to [`UNMATCHED`]. Whatever is
/// returned becomes a metric label: it must come from a bounded set. Closures
/// `Fn(RequestHead<'_>) -> Option<RouteLabel>` implement this trait.
pub trait ExtractRoute: Send + Sync + 'static {
    /// The route label of the request, if this extractor knows it.
    fn extract_route(&self, head: RequestHead<'_>) -> Option<RouteLabel>;
}

impl<F> ExtractRoute for F
where
    F: Fn(RequestHead<'_>) -> Option<RouteLabel> + Send + Sync + 'static,
{
    fn extract_route(&self, head: RequestHead<'_>) -> Option<RouteLabel> {
        self(head)
    }
}

/// Labels requests: a custom [`ExtractRoute`] first, then axum's `MatchedPath`, then
/// [`UNMATCHED`]. Cheap to clone; layers keep one in their shared configuration.
#[derive(Clone, Default)]
pub struct RouteLabeler {
    custom: Option<Arc<dyn ExtractRoute>>,
}

impl RouteLabeler {
    /// A labeler that uses axum's `MatchedPath`, else [`UNMATCHED`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A labeler that asks `extractor` first.
    pub fn from_extractor(extractor: impl ExtractRoute) -> Self {
        Self {
            custom: Some(Arc::new(extractor)),
        }
    }

    /// The route label of `request`.
    pub fn label<B>(&self, request: &Request<B>) -> RouteLabel {
        if let Some(custom) = &self.custom
            && let Some(label) = custom.extract_route(RequestHead::of(request))
        {
            return label;
        }
        matched_path(request.extensions()).unwrap_or_default()
    }
}

impl fmt::Debug for RouteLabeler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteLabeler")
            .field("custom", &self.custom.is_some())
            .finish()
    }
}

#[cfg(feature = "axum")]
fn matched_path(extensions: &Extensions) -> Option<RouteLabel> {
    extensions
        .get::<axum::extract::MatchedPath>()
        .cloned()
        .map(RouteLabel::from)
}

#[cfg(not(feature = "axum"))]
fn matched_path(_: &Extensions) -> Option<RouteLabel> {
    None
}

/// Labels gRPC requests by method path (`/package.Service/Method`).
///
/// Clients choose the path, so by default only the methods you list become labels (their
/// labels are built once, no allocation per request); any other gRPC path falls through to the
/// next fallback. [`GrpcMethodRoute::any_method`] accepts every well-formed method path instead
/// — use it only behind a cap on series, as a client can invent method names.
///
/// ```
/// use http::Request;
/// use vitals_core::route::{GrpcMethodRoute, RouteLabeler};
///
/// let labeler = RouteLabeler::from_extractor(GrpcMethodRoute::new([
///     "/grpc.health.v1.Health/Check",
///     "/grpc.health.v1.Health/Watch",
/// ]));
/// let call = Request::post("/grpc.health.v1.Health/Check")
///     .header("content-type", "application/grpc")
///     .body(())
///     .unwrap();
/// assert_eq!(labeler.label(&call).as_str(), "/grpc.health.v1.Health/Check");
/// ```
#[derive(Clone, Debug)]
pub struct GrpcMethodRoute {
    known: Option<HashMap<Arc<str>, RouteLabel>>,
}

/// Longest method path [`GrpcMethodRoute::any_method`] accepts as a label.
pub const MAX_GRPC_METHOD_LEN: usize = 128;

impl GrpcMethodRoute {
    /// Labels calls to the listed method paths; other paths fall through.
    pub fn new<I, S>(methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        let known = methods
            .into_iter()
            .map(|m| {
                let m: Arc<str> = m.into();
                (Arc::clone(&m), RouteLabel::new(m))
            })
            .collect();
        Self { known: Some(known) }
    }

    /// Labels any well-formed gRPC method path of at most [`MAX_GRPC_METHOD_LEN`] bytes.
    /// Allocates the label per request; pair it with a series cap.
    pub fn any_method() -> Self {
        Self { known: None }
    }
}

impl ExtractRoute for GrpcMethodRoute {
    fn extract_route(&self, head: RequestHead<'_>) -> Option<RouteLabel> {
        if !crate::outcome::is_grpc(head.headers) {
            return None;
        }
        let path = head.uri.path();
        match &self.known {
            Some(known) => known.get(path).cloned(),
            None => is_grpc_method_path(path).then(|| RouteLabel::new(path)),
        }
    }
}

/// `/service/method`, where the service is a dotted name and the method an identifier.
fn is_grpc_method_path(path: &str) -> bool {
    if path.len() > MAX_GRPC_METHOD_LEN {
        return false;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let Some((service, method)) = rest.split_once('/') else {
        return false;
    };
    let ident = |s: &str| {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    service.split('.').all(ident) && ident(method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn matched_path_template_is_the_label_and_misses_are_unmatched() {
        let labeler = RouteLabeler::new();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = {
            let seen = Arc::clone(&seen);
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let seen = Arc::clone(&seen);
                let labeler = labeler.clone();
                async move {
                    seen.lock()
                        .unwrap()
                        .push(labeler.label(&req).as_str().to_owned());
                    next.run(req).await
                }
            }
        };
        let app = Router::new()
            .route("/products/{id}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(record));

        for path in ["/products/1", "/products/2", "/nope/3"] {
            let request = Request::get(path).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            ["/products/{id}", "/products/{id}", UNMATCHED]
        );
    }

    #[test]
    fn custom_extractor_comes_first_and_can_fall_through() {
        let labeler = RouteLabeler::from_extractor(|head: RequestHead<'_>| {
            (head.method == Method::POST).then(|| RouteLabel::from_static("/graphql"))
        });
        let post = Request::post("/anything").body(()).unwrap();
        let get = Request::get("/anything").body(()).unwrap();
        assert_eq!(labeler.label(&post).as_str(), "/graphql");
        assert!(labeler.label(&get).is_unmatched());
    }

    fn grpc(path: &str) -> Request<()> {
        Request::post(path)
            .header("content-type", "application/grpc+proto")
            .body(())
            .unwrap()
    }

    #[test]
    fn grpc_known_methods_only() {
        let labeler =
            RouteLabeler::from_extractor(GrpcMethodRoute::new(["/grpc.health.v1.Health/Check"]));
        assert_eq!(
            labeler
                .label(&grpc("/grpc.health.v1.Health/Check"))
                .as_str(),
            "/grpc.health.v1.Health/Check"
        );
        assert!(
            labeler
                .label(&grpc("/grpc.health.v1.Health/Invented"))
                .is_unmatched()
        );
        // Not gRPC: no label from the gRPC extractor.
        let plain = Request::post("/grpc.health.v1.Health/Check")
            .body(())
            .unwrap();
        assert!(labeler.label(&plain).is_unmatched());
    }

    #[test]
    fn grpc_any_method_validates_the_path() {
        let labeler = RouteLabeler::from_extractor(GrpcMethodRoute::any_method());
        assert_eq!(labeler.label(&grpc("/a.b.C/Do_1")).as_str(), "/a.b.C/Do_1");
        let long = format!("/svc/{}", "m".repeat(MAX_GRPC_METHOD_LEN));
        for bad in [
            "/",
            "/svc",
            "/svc/",
            "/svc/m/x",
            "/1svc/M",
            "/svc/M%20",
            "/a..b/M",
            &long,
        ] {
            assert!(
                labeler.label(&grpc(bad)).is_unmatched(),
                "{bad} must not be a label"
            );
        }
    }

    #[test]
    fn labels_compare_by_text() {
        assert_eq!(RouteLabel::new("/x"), RouteLabel::from_static("/x"));
        assert_eq!(RouteLabel::default(), RouteLabel::unmatched());
        assert_eq!(format!("{:?}", RouteLabel::from_static("/x")), "\"/x\"");
    }
}
