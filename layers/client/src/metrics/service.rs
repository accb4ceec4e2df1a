//! `ClientMetrics`: finds the call's label set when the call starts; its future records the
//! sample when the call ends.

use quanta::Instant;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use vitals_core::semconv;

use super::future::MeasuredFuture;
use super::handles::Handles;
use crate::error::BoxError;

/// A client service whose calls are measured (see
/// [`ClientMetricsLayer`](super::ClientMetricsLayer)).
#[derive(Clone, Debug)]
pub struct ClientMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

impl<S> ClientMetrics<S> {
    pub(super) fn new(inner: S, server: Option<(Box<str>, u16)>) -> Self {
        // quanta calibrates its clock at its first read (~0.7 ms here): done when the stack is
        // built, not in the first call.
        let _ = Instant::now();
        Self {
            inner,
            handles: Arc::new(Handles::new(server)),
        }
    }

    vitals_core::inner_service_accessors!();
}

impl<S, B, ResB> Service<Request<B>> for ClientMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = MeasuredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let downstream = self.handles.downstream(
            semconv::method_label(request.method()),
            // The URI's authority, never a `Host` header: that may come from outside.
            semconv::uri_server_address(request.uri()).or_else(|| self.handles.server()),
        );
        MeasuredFuture::new(self.inner.call(request), downstream, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::pin;
    use std::task::Waker;

    use metrics_util::debugging::DebuggingRecorder;

    use super::*;

    /// The labels of the one sample a call of `request` through the layer records.
    fn labels_of(request: Request<()>, server: Option<(Box<str>, u16)>) -> Vec<String> {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            let mut service = ClientMetrics::new(
                tower::service_fn(|_: Request<()>| {
                    std::future::ready(Ok::<_, Infallible>(Response::new(())))
                }),
                server,
            );
            let call = pin!(service.call(request));
            let answered = call.poll(&mut Context::from_waker(Waker::noop()));
            assert!(matches!(answered, Poll::Ready(Ok(_))));
        });
        let snapshot = recorder.snapshotter().snapshot().into_vec();
        assert_eq!(snapshot.len(), 1, "one sample");
        let mut labels: Vec<String> = snapshot[0]
            .0
            .key()
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        labels
    }

    #[test]
    fn the_server_is_the_uris_never_a_host_header() {
        let mut relative = Request::new(());
        *relative.uri_mut() = http::Uri::from_static("/charges");
        relative.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("from-outside.example"),
        );
        assert_eq!(
            labels_of(relative.clone(), None),
            ["http.request.method=GET", "http.response.status_code=200"]
        );
        // A server given for calls whose URI names none, as a tonic channel's.
        let given = || Some(("fallback.internal".into(), 50051));
        assert_eq!(
            labels_of(relative, given()),
            [
                "http.request.method=GET",
                "http.response.status_code=200",
                "server.address=fallback.internal",
                "server.port=50051",
            ]
        );
        let mut absolute = Request::new(());
        *absolute.uri_mut() = http::Uri::from_static("https://payment.internal/charges");
        assert_eq!(
            labels_of(absolute, given()),
            [
                "http.request.method=GET",
                "http.response.status_code=200",
                "server.address=payment.internal",
                "server.port=443",
            ]
        );
    }
}
