//! The queries part: the per-request ledger, N+1 rules, budgets and `Server-Timing` entries
//! of [`QueryTrackingLayer`](crate::QueryTrackingLayer), written once and driven two ways — by
//! the layer's own service, and by the fused `vitals` stack, which puts the ledger on its one
//! request span instead of opening a span of its own.
//!
//! ```
//! use http::{Request, Response};
//! use vitals_core::body::{BodyEnd, BodyObserver};
//! use vitals_core::route::RouteLabel;
//! use std::time::Duration;
//! use vitals_queries::QueryTrackingLayer;
//!
//! let part = QueryTrackingLayer::new().part();
//! let request = Request::new(());
//! let in_flight = part.start(&request, RouteLabel::from_static("/items"), None);
//! in_flight.scope(|| vitals_queries::record("SELECT 1", Duration::from_millis(2)));
//! assert_eq!(in_flight.ledger().count(), 1);
//! let response = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
//! let (_response, finish) = in_flight.on_response(response);
//! finish.on_end(BodyEnd::Completed); // N+1 findings and budgets are reported
//! ```

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use vitals_core::body::{BodyEnd, BodyObserver, EitherBody};
use vitals_core::findings::Finding;
use vitals_core::identity::{RequestIdentity, TraceId};
use vitals_core::route::RouteLabel;
use vitals_core::server_timing::{Metric, ServerTiming};

use crate::layer::{Config, NPlusOneAction};
use crate::ledger::QueryLedger;
use crate::n_plus_one::NPlusOneFinding;
use crate::scope;
use crate::statements::RequestWatch;

/// The queries part of a [`QueryTrackingLayer`](crate::QueryTrackingLayer) (see
/// [`QueryTrackingLayer::part`](crate::QueryTrackingLayer::part)). Cheap to clone.
#[derive(Clone, Debug)]
pub struct QueriesPart {
    pub(crate) config: Arc<Config>,
}

impl QueriesPart {
    /// Whether this part's `Server-Timing` mode lets the client of `headers` see timings.
    #[inline]
    pub fn shows_server_timing(&self, headers: &http::HeaderMap) -> bool {
        self.config.server_timing.allows(headers)
    }

    /// A request for `route` arrived: a fresh ledger. `server_timing` is the request's
    /// collector when the client may see timings. The trace id is read from the request's
    /// extensions, so a trace-context part must have run first.
    pub fn start<B>(
        &self,
        request: &Request<B>,
        route: RouteLabel,
        server_timing: Option<ServerTiming>,
    ) -> QueriesInFlight {
        let trace_id = request
            .extensions()
            .get::<RequestIdentity>()
            .and_then(|identity| identity.trace_id);
        let ledger = QueryLedger::watched(RequestWatch {
            route: route.clone(),
            trace_id,
            threshold: self.config.slow_statement_for(&route),
            config: Arc::clone(&self.config),
        });
        QueriesInFlight {
            config: Arc::clone(&self.config),
            ledger,
            route,
            method: request.method().clone(),
            trace_id,
            server_timing,
        }
    }
}

/// A request the queries part follows: its ledger, and what it reports when the body ends.
pub struct QueriesInFlight {
    config: Arc<Config>,
    ledger: QueryLedger,
    route: RouteLabel,
    method: Method,
    trace_id: Option<TraceId>,
    server_timing: Option<ServerTiming>,
}

impl QueriesInFlight {
    /// The request's ledger.
    pub fn ledger(&self) -> &QueryLedger {
        &self.ledger
    }

    /// Runs `f` with the ledger current on this task: queries reported inside count for the
    /// request. Drivers call it around each poll of the handler and of the body.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.ledger.in_scope(f)
    }

    /// Puts the ledger on `span` (a request span), so queries reported on other threads inside
    /// it — sqlx-sqlite's worker, spawned tasks instrumented with it — count for the request.
    pub fn attach_to(&self, span: &tracing::Span) {
        if !span.is_disabled() {
            scope::attach_to_span(span, &self.ledger);
        }
    }

    /// A span of the part's own carrying the ledger, for a driver with no request span: it is
    /// enabled when the query event layer is installed (its filter enables this target).
    pub fn own_span(&self) -> tracing::Span {
        let span = tracing::trace_span!(target: crate::events::REQUEST_SPAN_TARGET, "vitals_queries.request");
        self.attach_to(&span);
        span
    }
}

/// Reports the request's queries once its body ended.
pub struct QueriesFinish(QueriesInFlight);

impl std::fmt::Debug for QueriesFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueriesFinish")
            .field("route", &self.0.route)
            .finish_non_exhaustive()
    }
}

impl BodyObserver for QueriesFinish {
    fn on_end(self, _: BodyEnd) {
        self.0.report();
    }
}

impl QueriesInFlight {
    /// At the response head: the `db` entry, and the N+1 failure when configured. Logs and
    /// metrics wait for the end of the body, so queries made while streaming count too.
    /// The handler answered: the `db` and `db-pool` entries go to `Server-Timing`, the
    /// response is replaced by a `500` when N+1 queries fail requests on this route, and the
    /// ledger goes into the response's extensions. Returns what reports when the body ends.
    pub fn on_response<B>(self, response: Response<B>) -> (Response<EitherBody<B>>, QueriesFinish)
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
                let metric = Metric::new("db").with_duration(total);
                let metric = match findings.first() {
                    Some(worst) if action == NPlusOneAction::Header => {
                        metric.with_description(format!(
                            "{count} {noun}; N+1 {}x: {}",
                            worst.count, worst.fingerprint
                        ))
                    }
                    // Composed on the stack: the `db` entry of every request with statements.
                    _ => {
                        let mut text = [0u8; 32];
                        let mut rest = &mut text[..];
                        let _ = write!(rest, "{count} {noun}");
                        let len = 32 - rest.len();
                        metric.with_copied_description(
                            std::str::from_utf8(&text[..len]).unwrap_or_default(),
                        )
                    }
                };
                timing.add(metric);
            }
            let (pool_wait, acquires) = self.ledger.pool_wait();
            if acquires > 0 {
                timing.add(
                    Metric::new("db-pool")
                        .with_duration(pool_wait)
                        .with_description(format!("{acquires} acquires")),
                );
            }
        }
        response.extensions_mut().insert(self.ledger.clone());
        (response, QueriesFinish(self))
    }

    /// At the end of the body: the findings over every query the request made, logged, and
    /// the metrics.
    fn report(self) {
        self.ledger.settle();
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
        {
            self.config
                .metrics
                .record(&self.route, self.ledger.count(), findings.len());
            let timeouts = self.ledger.timeouts();
            if timeouts > 0 {
                self.config.metrics.timeouts(&self.route, timeouts);
            }
        }
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
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // A report about one request: no cache may keep it, whatever layer sits outside.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}
