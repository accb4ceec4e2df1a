//! QueryTrackingLayer on a real SQLite database through sqlx, with sqlx's own query events.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::get;
use sqlx::SqlitePool;
use sqlx::sqlite::SqlitePoolOptions;
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use vitals_core::identity::{RequestIdentity, TraceId};
use vitals_queries::{NPlusOneAction, QueryLedger, QueryTrackingLayer, RouteQueries};

/// Every `vitals_queries` WARN event of the test binary.
///
/// The subscriber is global and the tests run in parallel, several of them with N+1s and
/// budgets on the same routes, so a test reads only the warnings of its own requests: those
/// carrying the trace id it gave them ([`get_traced`]), which the layer logs with each one.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<Warning>>>);

/// One warning: the request's trace id, its route and the message.
#[derive(Clone, Debug, Default)]
struct Warning {
    trace_id: String,
    route: String,
    message: String,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "vitals_queries" {
            return;
        }
        let mut warning = Warning::default();
        event.record(&mut warning);
        self.0.lock().unwrap().push(warning);
    }
}

impl Visit for Warning {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "http.route" => self.route = format!("{value:?}"),
            "trace_id" => self.trace_id = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Warnings {
    /// The warnings logged for the request that carried `trace_id`.
    fn of(&self, trace_id: TraceId) -> Vec<Warning> {
        let trace_id = trace_id.to_string();
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// The messages of [`Self::of`].
    fn messages_of(&self, trace_id: TraceId) -> Vec<String> {
        self.of(trace_id).into_iter().map(|w| w.message).collect()
    }
}

/// One global subscriber for this test binary: every test's requests have their own ledger.
fn warnings() -> &'static Warnings {
    static WARNINGS: OnceLock<Warnings> = OnceLock::new();
    WARNINGS.get_or_init(|| {
        let warnings = Warnings::default();
        tracing_subscriber::registry()
            .with(vitals_queries::query_events())
            .with(warnings.clone())
            .init();
        warnings
    })
}

/// A trace id no other request of this test binary gets.
fn fresh_trace_id() -> TraceId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut bytes = [0x5a; 16];
    bytes[8..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    TraceId::from_bytes(bytes).unwrap()
}

async fn pool() -> SqlitePool {
    // One connection, opened here: a request that makes the pool open a connection also runs
    // its setup statements (sqlx-sqlite's PRAGMAs), which would count toward that request.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    for id in 1..=20 {
        sqlx::query("INSERT INTO items (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(format!("item {id}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

/// One query for the list, then one per item: 1 + n statements.
async fn n_plus_one(State(pool): State<SqlitePool>, Path(n): Path<i64>) -> String {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items WHERE id <= $1 ORDER BY id")
        .bind(n)
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut names = Vec::new();
    for id in ids {
        let name: String = sqlx::query_scalar("SELECT name FROM items WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        names.push(name);
    }
    names.join(",")
}

/// The same N+1, with each name written into the SQL as a literal (as careless code does).
async fn n_plus_one_with_literals(State(pool): State<SqlitePool>, Path(n): Path<i64>) -> String {
    let mut ids = Vec::new();
    for id in 1..=n {
        let sql = format!("SELECT id FROM items WHERE name = 'item {id}'");
        let found: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap();
        ids.push(found.to_string());
    }
    ids.join(",")
}

async fn app(layer: QueryTrackingLayer) -> Router {
    warnings();
    Router::new()
        .route("/items/{n}", get(n_plus_one))
        .route("/none", get(|| async { "no queries" }))
        .route(
            "/heavy",
            get(|State(pool): State<SqlitePool>| async move {
                // A million rows generated and summed: tens of milliseconds at least.
                let sum: i64 = sqlx::query_scalar(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
                     SELECT sum(i) FROM n",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                sum.to_string()
            }),
        )
        .route("/by-name/{n}", get(n_plus_one_with_literals))
        .route(
            "/spawned",
            get(|State(pool): State<SqlitePool>| async move {
                let task = tokio::spawn(vitals_queries::in_current_request(async move {
                    sqlx::query("SELECT count(*) FROM items")
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                }));
                task.await.unwrap();
                "spawned"
            }),
        )
        .route(
            "/manual",
            get(|| async {
                assert!(vitals_queries::record(
                    "SELECT * FROM cache WHERE k = 'a'",
                    Duration::from_millis(2)
                ));
                "manual"
            }),
        )
        .with_state(pool().await)
        .layer(layer)
}

async fn get_path(app: &Router, path: &str) -> axum::response::Response {
    get_traced(app, path).await.0
}

/// `GET path` with a trace id of its own in the request's identity (as the trace-context layer
/// sets it), to find the warnings it caused with [`Warnings::of`].
async fn get_traced(app: &Router, path: &str) -> (axum::response::Response, TraceId) {
    let trace_id = fresh_trace_id();
    let mut request = Request::get(path).body(Body::empty()).unwrap();
    request.extensions_mut().insert(RequestIdentity {
        trace_id: Some(trace_id),
        ..RequestIdentity::default()
    });
    (app.clone().oneshot(request).await.unwrap(), trace_id)
}

fn db_timing(response: &axum::response::Response) -> Option<String> {
    response
        .headers()
        .get("server-timing")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_every_statement_and_reports_n_plus_one_when_the_body_ends() {
    let app = app(QueryTrackingLayer::new()).await;
    let (response, trace_id) = get_traced(&app, "/items/8").await;
    assert_eq!(response.status(), StatusCode::OK);
    let timing = db_timing(&response).unwrap();
    assert!(timing.starts_with("db;dur="), "{timing}");
    assert!(timing.ends_with(r#";desc="9 queries""#), "{timing}");

    let ledger = response.extensions().get::<QueryLedger>().unwrap().report();
    assert_eq!(ledger.count, 9);
    assert_eq!(
        &*ledger.groups[0].fingerprint,
        "SELECT name FROM items WHERE id = ?"
    );
    assert_eq!(ledger.groups[0].count, 8);
    let early = warnings().of(trace_id);
    assert!(
        early.is_empty(),
        "findings are logged when the body has ended: {early:?}"
    );

    axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let warnings = warnings().of(trace_id);
    assert!(
        warnings.iter().any(|w| w.route == "/items/{n}"
            && w.message.contains("N+1")
            && w.message.contains("8 times")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_threshold_is_no_finding() {
    let app = app(QueryTrackingLayer::new().with_route(
        "/items/{n}",
        RouteQueries::new().with_n_plus_one_action(NPlusOneAction::Fail),
    ))
    .await;
    let response = get_path(&app, "/items/4").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "4 repeats are under the default 5"
    );
    assert!(
        db_timing(&response)
            .unwrap()
            .ends_with(r#"desc="5 queries""#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_action_answers_500_with_the_findings() {
    let app = app(QueryTrackingLayer::new().with_n_plus_one_action(NPlusOneAction::Fail)).await;
    let response = get_path(&app, "/items/6").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "N+1 queries detected");
    assert_eq!(json["findings"][0]["count"], 6);
    assert_eq!(
        json["findings"][0]["fingerprint"],
        "SELECT name FROM items WHERE id = ?"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_action_answers_with_fingerprints_never_the_statement_text() {
    let app = app(QueryTrackingLayer::new().with_n_plus_one_action(NPlusOneAction::Fail)).await;
    let response = get_path(&app, "/by-name/6").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        !text.contains("item "),
        "a literal reached the client: {text}"
    );
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json["findings"][0]["fingerprint"],
        "SELECT id FROM items WHERE name = ?"
    );
    assert_eq!(json["findings"][0]["count"], 6);
    assert!(json["findings"][0].get("sample").is_none(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_action_names_the_finding_in_server_timing() {
    let app = app(QueryTrackingLayer::new().with_n_plus_one_action(NPlusOneAction::Header)).await;
    let response = get_path(&app, "/items/5").await;
    let timing = db_timing(&response).unwrap();
    assert!(
        timing.contains(r#"desc="6 queries; N+1 5x: SELECT name FROM items WHERE id = ?""#),
        "{timing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_queries_no_db_entry() {
    let app = app(QueryTrackingLayer::new()).await;
    let response = get_path(&app, "/none").await;
    assert_eq!(db_timing(&response), None);
    assert_eq!(
        response.extensions().get::<QueryLedger>().unwrap().count(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_work_and_the_plain_api_count_toward_the_request() {
    let app = app(QueryTrackingLayer::new()).await;
    let spawned = get_path(&app, "/spawned").await;
    assert!(db_timing(&spawned).unwrap().ends_with(r#"desc="1 query""#));
    let manual = get_path(&app, "/manual").await;
    let timing = db_timing(&manual).unwrap();
    assert_eq!(timing, r#"db;dur=2;desc="1 query""#);
}

/// A body that runs one query per frame while it streams.
struct QueryingBody {
    pool: SqlitePool,
    remaining: i64,
    pending: Option<std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>>,
}

impl http_body::Body for QueryingBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let id = self.remaining;
        let pool = self.pool.clone();
        let pending = self.pending.get_or_insert_with(|| {
            Box::pin(async move {
                sqlx::query_scalar("SELECT name FROM items WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            })
        });
        let name = std::task::ready!(pending.as_mut().poll(cx));
        self.pending = None;
        self.remaining -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from(
            name + "\n",
        )))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_while_the_body_streams_are_counted_and_logged_not_in_the_header() {
    let app = Router::new()
        .route(
            "/stream",
            get(|State(pool): State<SqlitePool>| async move {
                sqlx::query("SELECT count(*) FROM items")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                Body::new(QueryingBody {
                    pool,
                    remaining: 6,
                    pending: None,
                })
            }),
        )
        .with_state(pool().await)
        .layer(QueryTrackingLayer::new());
    warnings();
    let (response, trace_id) = get_traced(&app, "/stream").await;
    assert!(
        db_timing(&response).unwrap().ends_with(r#"desc="1 query""#),
        "the head saw one"
    );
    let ledger = response.extensions().get::<QueryLedger>().unwrap().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        6
    );
    assert_eq!(
        ledger.count(),
        7,
        "queries made while streaming land in the ledger"
    );
    let warnings = warnings().messages_of(trace_id);
    assert!(
        warnings.iter().any(|m| m.contains("6 times")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_convention_spans_and_events_count() {
    warnings();
    let app = Router::new()
        .route(
            "/instrumented",
            get(|| async {
                use diesel::connection::SimpleConnection;
                use diesel::{Connection, RunQueryDsl};

                // What an instrumented client (or sea-orm) emits around each statement it runs
                // on a real database: a span with the OpenTelemetry database attributes, and
                // sometimes an event. (diesel runs the SQL here, not instrumented itself.)
                let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
                conn.batch_execute("CREATE TABLE carts (id INTEGER PRIMARY KEY, seen BOOLEAN)")
                    .unwrap();
                for id in 0..5 {
                    let sql = format!("INSERT INTO carts (id, seen) VALUES ({id}, false)");
                    let span = tracing::info_span!(
                        "db.query",
                        db.system.name = "sqlite",
                        db.query.text = tracing::field::Empty,
                    );
                    span.record("db.query.text", sql.as_str());
                    span.in_scope(|| {
                        diesel::sql_query(&sql).execute(&mut conn).unwrap();
                        std::thread::sleep(Duration::from_millis(1));
                    });
                }
                let sql = "UPDATE carts SET seen = true";
                diesel::sql_query(sql).execute(&mut conn).unwrap();
                tracing::debug!(db.statement = sql, "statement");
                "instrumented"
            }),
        )
        .layer(QueryTrackingLayer::new());
    let (response, trace_id) = get_traced(&app, "/instrumented").await;
    let report = response.extensions().get::<QueryLedger>().unwrap().report();
    assert_eq!(report.count, 6, "{report:#?}");
    assert_eq!(
        &*report.groups[0].fingerprint,
        "INSERT INTO carts(id, seen) VALUES (?)"
    );
    assert!(
        report.groups[0].total >= Duration::from_millis(5),
        "span durations are the query times"
    );
    axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let warnings = warnings().messages_of(trace_id);
    assert!(
        warnings.iter().any(|m| m.contains("5 times")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_statement_is_reported_once_with_its_route_and_fingerprint() {
    let findings = vitals_core::findings::Findings::new(50);
    let app = app(QueryTrackingLayer::new()
        .with_findings(findings.clone())
        .with_slow_statement_threshold(Duration::from_millis(10))
        .with_route(
            "/items/{n}",
            RouteQueries::new().with_slow_statement_threshold(None),
        ))
    .await;
    let (response, trace_id) = get_traced(&app, "/heavy").await;
    assert_eq!(response.status(), StatusCode::OK);
    let slow: Vec<_> = findings
        .recent()
        .into_iter()
        .filter(|r| r.finding.kind() == "slow_statement")
        .collect();
    assert_eq!(slow.len(), 1, "{slow:?}");
    let vitals_core::findings::Finding::SlowStatement {
        route,
        fingerprint,
        duration_ms,
        threshold_ms,
        timed_out,
        trace_id: found_trace,
    } = &slow[0].finding
    else {
        unreachable!()
    };
    assert_eq!(route, "/heavy");
    assert!(
        fingerprint.ends_with("SELECT sum(i) FROM n"),
        "{fingerprint}"
    );
    assert!(*duration_ms >= 10.0 && (*threshold_ms - 10.0).abs() < f64::EPSILON);
    assert!(!timed_out);
    assert_eq!(found_trace.as_deref(), Some(trace_id.to_string().as_str()));
    let messages = warnings().messages_of(trace_id);
    assert!(
        messages.iter().any(|m| m.starts_with("slow statement: ")),
        "{messages:?}"
    );
    // Once a minute per statement shape, however often it runs.
    let (_, again) = get_traced(&app, "/heavy").await;
    assert!(warnings().messages_of(again).is_empty());
    // A route without a threshold reports nothing, whatever the layer's.
    let (_, items) = get_traced(&app, "/items/3").await;
    assert!(warnings().messages_of(items).is_empty());
    assert_eq!(
        findings
            .recent()
            .iter()
            .filter(|r| r.finding.kind() == "slow_statement")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_waits_are_a_figure_of_their_own() {
    warnings();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_time_level(tracing::log::LevelFilter::Debug)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let app = Router::new()
        .route(
            "/pooled",
            get(|State(pool): State<SqlitePool>| async move {
                for _ in 0..3 {
                    sqlx::query("SELECT 1").execute(&pool).await.unwrap();
                }
                "pooled"
            }),
        )
        .with_state(pool)
        .layer(QueryTrackingLayer::new());
    let response = get_path(&app, "/pooled").await;
    let timing = db_timing(&response).unwrap();
    assert!(timing.contains(r#"desc="3 queries""#), "{timing}");
    assert!(timing.contains("db-pool;dur="), "{timing}");
    assert!(timing.contains(r#"desc="3 acquires""#), "{timing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outer_spans_per_request_or_shared_do_not_disturb_attribution() {
    use tracing::Instrument;

    // An outer layer that opens a span per request, as tower-http's TraceLayer does.
    let per_request_span = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let span = tracing::info_span!("request", uri = %request.uri());
            next.run(request).instrument(span).await
        },
    );
    let app = app(QueryTrackingLayer::new().with_n_plus_one_threshold(1_000))
        .await
        .layer(per_request_span);
    for n in [3, 7] {
        let response = get_path(&app, &format!("/items/{n}")).await;
        let timing = db_timing(&response).unwrap();
        assert!(
            timing.ends_with(&format!("desc=\"{} queries\"", n + 1)),
            "{timing}"
        );
    }

    // One long-lived span around many concurrent requests: each request's ledger still gets
    // exactly its own statements.
    let bare = self::app(QueryTrackingLayer::new().with_n_plus_one_threshold(1_000)).await;
    let shared = tracing::info_span!("server");
    let mut tasks = Vec::new();
    for i in 0..30 {
        let app = bare.clone();
        let n = i % 6;
        let task = async move {
            let response = get_path(&app, &format!("/items/{n}")).await;
            (
                n,
                response.extensions().get::<QueryLedger>().unwrap().count(),
            )
        };
        tasks.push(tokio::spawn(task.instrument(shared.clone())));
    }
    for task in tasks {
        let (n, count) = task.await.unwrap();
        assert_eq!(
            count,
            u64::try_from(n).unwrap() + 1,
            "request for {n} items"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_never_mix_their_ledgers() {
    let app = app(QueryTrackingLayer::new().with_n_plus_one_threshold(1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        let n = i % 10;
        tasks.push(tokio::spawn(async move {
            let response = get_path(&app, &format!("/items/{n}")).await;
            let report = response.extensions().get::<QueryLedger>().unwrap().report();
            // A request that made the pool open a connection also ran its setup statement
            // (sqlx-sqlite's PRAGMAs): real work on its behalf, counted, but not the handler's.
            let handler = report
                .queries
                .iter()
                .filter(|q| !q.statement.starts_with("PRAGMA"));
            (n, handler.count() as u64)
        }));
    }
    for task in tasks {
        let (n, count) = task.await.unwrap();
        assert_eq!(
            count,
            u64::try_from(n).unwrap() + 1,
            "request for {n} items"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_their_query_budget_are_reported_per_route() {
    // The default budget (3) is generous to `/items/{n}` on no route; `/spawned` gets 0.
    let app = app(QueryTrackingLayer::new()
        .with_query_budget(3)
        .with_route("/spawned", RouteQueries::new().with_query_budget(0))
        .with_route("/manual", RouteQueries::new().with_query_budget(None)))
    .await;
    let mut over = std::collections::HashMap::new();
    for path in ["/items/2", "/items/5", "/spawned", "/manual"] {
        let (response, trace_id) = get_traced(&app, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let budget_warnings: Vec<String> = warnings()
            .messages_of(trace_id)
            .into_iter()
            .filter(|m| m.contains("query budget exceeded"))
            .collect();
        over.insert(path, budget_warnings);
    }
    assert!(over["/items/2"].is_empty(), "3 statements, budget 3");
    assert_eq!(
        over["/items/5"],
        ["query budget exceeded: 6 statements in one request, budget 3"]
    );
    assert_eq!(
        over["/spawned"].len(),
        1,
        "one statement over a budget of 0"
    );
    assert!(over["/manual"].is_empty(), "no budget on /manual");
}
