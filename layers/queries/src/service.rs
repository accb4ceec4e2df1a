//! `QueryTracking`: the service, and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_service::Service;
use tracing::Instrument;
use tracing::instrument::Instrumented;
use vitals_core::body::EitherBody;
use vitals_core::findings::Finding;
use vitals_core::identity::{RequestIdentity, TraceId};
use vitals_core::route::RouteLabel;
use vitals_core::server_timing::{Metric, ServerTiming};

use crate::body::QueryBody;
use crate::events::REQUEST_SPAN_TARGET;
use crate::layer::{Config, NPlusOneAction};
use crate::ledger::QueryLedger;
use crate::n_plus_one::NPlusOneFinding;
use crate::scope;

/// Tracks the queries of each request; made by
/// [`QueryTrackingLayer`](crate::QueryTrackingLayer).
#[derive(Clone, Debug)]
pub struct QueryTracking<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> QueryTracking<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for QueryTracking<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes> + bytes::Buf,
{
    type Response = Response<QueryBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let ledger = QueryLedger::new();
        let route = self.config.labeler.label(&request);
        let method = request.method().clone();
        let trace_id = request
            .extensions()
            .get::<RequestIdentity>()
            .and_then(|identity| identity.trace_id);
        // Denied for this request: still add to an outer collector, for the slow-request log.
        let server_timing = ServerTiming::attach_for(&mut request, &self.config.server_timing);
        // A span of our own carries the ledger to threads and tasks outside this one. It is
        // enabled when the query event layer is installed (its filter enables our target).
        let span = tracing::trace_span!(target: REQUEST_SPAN_TARGET, "vitals_queries.request");
        if !span.is_disabled() {
            scope::attach_to_span(&span, &ledger);
        }
        let inner = span.in_scope(|| scope::sync_with_ledger(&ledger, || self.inner.call(request)));
        ResponseFuture {
            inner: scope::with_ledger(ledger.clone(), inner).instrument(span.clone()),
            state: Some(State {
                span,
                config: Arc::clone(&self.config),
                ledger,
                route,
                method,
                trace_id,
                server_timing,
            }),
        }
    }
}

pub(crate) struct State {
    span: tracing::Span,
    config: Arc<Config>,
    ledger: QueryLedger,
    route: RouteLabel,
    method: Method,
    trace_id: Option<TraceId>,
    server_timing: Option<ServerTiming>,
}

pin_project! {
    /// The response future of [`QueryTracking`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<QueryLedger, F>>,
        state: Option<State>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes> + bytes::Buf,
{
    type Output = Result<Response<QueryBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let Some(state) = this.state.take() else {
            panic!("vitals_queries::ResponseFuture polled after completion");
        };
        Poll::Ready(Ok(state.finish(response)))
    }
}

impl State {
    /// At the response head: the `db` entry, and the N+1 failure when configured. Logs and
    /// metrics wait for the end of the body, so queries made while streaming count too.
    fn finish<B>(self, response: Response<B>) -> Response<QueryBody<B>>
    where
        B: Body,
        B::Data: From<Bytes> + bytes::Buf,
    {
        let (count, total) = self.ledger.totals();
        let action = self.config.action_for(&self.route);
        let findings = if action == NPlusOneAction::Log {
            Vec::new()
        } else {
            self.ledger.findings(&self.config.rule)
        };
        let mut response: Response<EitherBody<B>> =
            if action == NPlusOneAction::Fail && !findings.is_empty() {
                failure(&findings).map(EitherBody::own)
            } else {
                response.map(EitherBody::inner)
            };
        if let Some(timing) = &self.server_timing {
            if count > 0 {
                let noun = if count == 1 { "query" } else { "queries" };
                let mut description = format!("{count} {noun}");
                if action == NPlusOneAction::Header
                    && let Some(worst) = findings.first()
                {
                    description =
                        format!("{description}; N+1 {}x: {}", worst.count, worst.fingerprint);
                }
                timing.add(
                    Metric::new("db")
                        .with_duration(total)
                        .with_description(description),
                );
            }
            let (pool_wait, acquires) = self.ledger.pool_wait();
            if acquires > 0 {
                timing.add(
                    Metric::new("db-pool")
                        .with_duration(pool_wait)
                        .with_description(format!("{acquires} acquires")),
                );
            }
            if timing.is_owner() {
                timing.append_to(response.headers_mut());
            }
        }
        response.extensions_mut().insert(self.ledger.clone());
        let span = self.span.clone();
        let ledger = self.ledger.clone();
        response.map(|body| QueryBody::new(body, span, ledger, self))
    }

    /// At the end of the body: the findings over every query the request made, logged, and
    /// the metrics.
    pub(crate) fn report(self) {
        let findings = self.ledger.findings(&self.config.rule);
        for finding in &findings {
            self.log(finding);
        }
        if let Some(sink) = &self.config.findings {
            sink.count_queries(self.route.as_str(), self.ledger.count());
            for finding in &findings {
                sink.push(Finding::NPlusOne {
                    route: self.route.as_str().to_owned(),
                    fingerprint: finding.fingerprint.to_string(),
                    count: finding.count,
                    total_ms: (finding.total.as_secs_f64() * 1e6).round() / 1e3,
                    trace_id: self.trace_id.map(|id| id.to_string()),
                });
            }
        }
        if let Some(budget) = self.config.budget_for(&self.route)
            && self.ledger.count() > budget
        {
            self.over_budget(budget);
        }
        #[cfg(feature = "metrics")]
        self.config
            .metrics
            .record(&self.route, self.ledger.count(), findings.len());
    }

    #[cold]
    fn over_budget(&self, budget: u64) {
        let count = self.ledger.count();
        let trace_id = self.trace_id.map(tracing::field::display);
        tracing::warn!(
            target: "vitals_queries",
            count,
            budget,
            http.request.method = %self.method,
            http.route = %self.route,
            trace_id,
            "query budget exceeded: {count} statements in one request, budget {budget}"
        );
        #[cfg(feature = "metrics")]
        self.config.metrics.over_budget(&self.route);
    }

    #[cold]
    fn log(&self, finding: &NPlusOneFinding) {
        let trace_id = self.trace_id.map(tracing::field::display);
        tracing::warn!(
            target: "vitals_queries",
            count = finding.count,
            http.request.method = %self.method,
            http.route = %self.route,
            fingerprint = %finding.fingerprint,
            total_ms = (finding.total.as_secs_f64() * 1e6).round() / 1e3,
            sample = %finding.sample,
            trace_id,
            "N+1 queries: the same statement ran {} times in one request",
            finding.count
        );
    }
}

fn failure<D: bytes::Buf + From<Bytes>>(findings: &[NPlusOneFinding]) -> Response<Full<D>> {
    let findings: Vec<serde_json::Value> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "fingerprint": &*f.fingerprint,
                "count": f.count,
                "total_ms": (f.total.as_secs_f64() * 1e6).round() / 1e3,
            })
        })
        .collect();
    let body = serde_json::json!({ "error": "N+1 queries detected", "findings": findings });
    let mut response = Response::new(Full::new(D::from(Bytes::from(body.to_string()))));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
