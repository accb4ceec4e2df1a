//! The shop's routes. Each one shows a production behaviour (or its fix).
//!
//! | route                   | shows                                                        |
//! |-------------------------|--------------------------------------------------------------|
//! | `GET /healthz`          | a cheap liveness probe                                       |
//! | `GET /products`         | every product, unpaginated: a response that grows with data (response-cached) |
//! | `GET /products/{id}`    | a point lookup; 404 as JSON (both response-cached)           |
//! | `GET /products/{id}/reviews` | 200 ms of work per answer, behind the response cache: a burst of cold requests makes one fill |
//! | `GET /orders`           | orders with customers in one JOIN: the fix                   |
//! | `GET /orders/n-plus-one`| the same JSON with one query per order: the N+1 problem      |
//! | `GET /report`           | CPU work moved off the executor (`spawn_blocking`): the fix  |
//! | `GET /report/blocking`  | the same work inline on the executor: blocks other requests  |
//! | `POST /reports`         | the report as a job: `202` + `Location: /jobs/{id}` at once    |
//! | `GET /jobs/{id}`        | a job's status (`pending`, `running`, `succeeded`, `failed`)   |
//! | `GET /slow?ms=N`        | a request held open (0–60000 ms)                             |
//! | `GET /me`               | an authenticated, per-user response (`Bearer demo`)         |
//! | `GET /checkout`         | a call to a downstream payment service: deadline and breaker |
//! | `POST /orders`          | places an order; requires `Idempotency-Key`: a retry replays   |
//! | `GET /orders/by-email?email=E` | a lookup through a column without an index: a full scan |
//! | `GET /orders/by-email-indexed?email=E` | the same lookup through an indexed column: the fix |
//! | `GET /orders/hold?ms=N` | a pooled connection held across a slow call: pool exhaustion |
//! | `GET /orders/release?ms=N` | the same work, the connection released before the slow call |

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::{Customer, Db, Order, Product};
use crate::error::ApiError;
use crate::payment::{PaymentClient, PaymentError, PaymentRequest};
use crate::report::{self, Report, Workload};

/// The longest `GET /slow` may sleep, in milliseconds.
pub const MAX_SLOW_MS: u64 = 60_000;

/// The longest slow call `GET /orders/hold` and `/orders/release` may make, in milliseconds.
pub const MAX_HOLD_MS: u64 = 10_000;

/// The bearer token `GET /me` accepts.
pub const DEMO_TOKEN: &str = "demo";

/// The customer the demo token belongs to.
pub const DEMO_CUSTOMER_ID: i64 = 1;

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The queue of `POST /reports`' jobs (in the same database).
    pub jobs: vitals::jobs::JobStore,
    /// The report's calibrated CPU work.
    pub workload: Workload,
    /// The payment service client.
    pub payment: PaymentClient,
    /// Whether `POST /trace-context/test` is mounted.
    pub w3c_test_endpoint: bool,
}

/// The work one answer of `GET /products/{id}/reviews` costs (an aggregation over a slow store,
/// say): what a stampede multiplies and the response cache pays once per key.
pub const REVIEWS_WORK: Duration = Duration::from_millis(200);

/// `POST /trace-context/test`, when asked for.
fn w3c_routes(mounted: bool) -> Router<Arc<AppState>> {
    let routes = Router::new();
    if mounted {
        routes.route("/trace-context/test", axum::routing::post(crate::w3c::test))
    } else {
        routes
    }
}

/// The shop's router. `metrics` renders `GET /metrics` (Prometheus text: open to any peer, as
/// scrapers expect; see docs/dashboard.md to close it).
pub fn router(
    state: Arc<AppState>,
    metrics: Option<vitals::telemetry::PrometheusHandle>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/metrics",
            get(move || {
                let rendered = metrics
                    .as_ref()
                    .map(vitals::telemetry::PrometheusHandle::render);
                async move {
                    match rendered {
                        Some(text) => (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            text,
                        )
                            .into_response(),
                        None => ApiError::NotFound("metrics recorder").into_response(),
                    }
                }
            }),
        )
        .route("/products", get(products))
        .route("/products/{id}", get(product))
        .route("/products/{id}/reviews", get(reviews))
        .route("/orders", get(orders).post(create_order))
        .route("/orders/n-plus-one", get(orders_n_plus_one))
        .route("/orders/by-email", get(orders_by_email))
        .route("/orders/by-email-indexed", get(orders_by_email_indexed))
        .route("/orders/hold", get(orders_hold))
        .route("/orders/release", get(orders_release))
        .route("/report", get(report_off_executor))
        .route("/report/blocking", get(report_blocking))
        .route("/reports", post(enqueue_report))
        // `GET /jobs/{id}`: a job's status, read from the queue's table (open, as the shop's
        // other routes are: a job's id is its capability).
        .merge(vitals::jobs::StatusRoute::new(&state.jobs).router())
        .route("/slow", get(slow))
        .route("/me", get(me))
        .route("/checkout", get(checkout))
        .merge(w3c_routes(state.w3c_test_endpoint))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn products(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Product>>, ApiError> {
    Ok(Json(state.db.products().await?))
}

async fn product(
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Product>, ApiError> {
    let Path(id) =
        id.map_err(|_| ApiError::BadRequest("product id must be an integer".to_owned()))?;
    state
        .db
        .product(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("product"))
}

/// `GET /products/{id}/reviews`: a product's reviews, after [`REVIEWS_WORK`] of work. The
/// answer says any cache may keep it a minute (the response cache in front of it does), and
/// serve it five minutes stale while it is refreshed.
async fn reviews(
    State(state): State<Arc<AppState>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) =
        id.map_err(|_| ApiError::BadRequest("product id must be an integer".to_owned()))?;
    let product = state
        .db
        .product(id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    tokio::time::sleep(REVIEWS_WORK).await;
    let reviews: Vec<Value> = (1..=3)
        .map(|n| {
            json!({
                "rating": 3 + (id + n) % 3,
                "text": format!("Review {n} of {}", product.name),
            })
        })
        .collect();
    Ok((
        [(
            axum::http::header::CACHE_CONTROL,
            "public, max-age=60, stale-while-revalidate=300",
        )],
        Json(json!({ "product_id": id, "reviews": reviews })),
    ))
}

async fn orders(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Order>>, ApiError> {
    Ok(Json(state.db.orders_joined().await?))
}

/// The `Idempotency-Key` rule of the shop's writes: `POST /orders` requires a key; keys are
/// scoped per API key (`X-Api-Key`), so two callers' keys never meet.
pub fn idempotency() -> vitals::idempotency::IdempotencyLayer {
    use vitals::idempotency::{IdempotencyLayer, IdempotencySettings};
    IdempotencyLayer::new()
        .with_route("/orders", IdempotencySettings::new().required())
        .with_principal(|head| {
            let key = head.headers.get(crate::API_KEY_HEADER)?.to_str().ok()?;
            Some(key.to_owned())
        })
}

/// `POST /orders`'s body.
#[derive(Debug, Deserialize)]
struct NewOrder {
    customer_id: i64,
    product_id: i64,
    quantity: i64,
}

/// Places an order — a real insert, protected by `Idempotency-Key`: the first request with a
/// key inserts, a retry gets the same answer (`Idempotent-Replayed: true`) and inserts nothing.
async fn create_order(
    State(state): State<Arc<AppState>>,
    body: Result<Json<NewOrder>, axum::extract::rejection::JsonRejection>,
) -> Result<
    (
        axum::http::StatusCode,
        [(axum::http::HeaderName, String); 1],
        Json<Order>,
    ),
    ApiError,
> {
    let Json(new) = body.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "the body must be JSON {{\"customer_id\": N, \"product_id\": N, \"quantity\": N}}: {rejection}"
        ))
    })?;
    if !(1..=100).contains(&new.quantity) {
        return Err(ApiError::BadRequest(
            "quantity must be from 1 to 100".to_owned(),
        ));
    }
    let order = state
        .db
        .create_order(new.customer_id, new.product_id, new.quantity)
        .await?
        .ok_or(ApiError::NotFound("customer or product"))?;
    Ok((
        axum::http::StatusCode::CREATED,
        [(
            axum::http::header::LOCATION,
            format!("/orders/{}", order.id),
        )],
        Json(order),
    ))
}

async fn orders_n_plus_one(
    State(state): State<Arc<AppState>>,
) -> Result<Json<Vec<Order>>, ApiError> {
    Ok(Json(state.db.orders_n_plus_one().await?))
}

#[derive(Debug, Deserialize)]
struct EmailQuery {
    email: String,
}

fn email_of(query: Result<Query<EmailQuery>, QueryRejection>) -> Result<String, ApiError> {
    let Query(EmailQuery { email }) =
        query.map_err(|_| ApiError::BadRequest("query parameter email is required".to_owned()))?;
    if email.is_empty() || email.len() > 254 {
        return Err(ApiError::BadRequest(
            "email must be 1 to 254 characters".to_owned(),
        ));
    }
    Ok(email)
}

/// The customer looked up through `customers.email`, which has no index: the plan scans all
/// 12,000 customers (the missing-index detector reports it).
async fn orders_by_email(
    State(state): State<Arc<AppState>>,
    query: Result<Query<EmailQuery>, QueryRejection>,
) -> Result<Json<Vec<Order>>, ApiError> {
    let email = email_of(query)?;
    orders_of(&state.db, state.db.customer_by_email(&email).await?).await
}

/// The same, through the indexed `customer_emails.email`: nothing is scanned.
async fn orders_by_email_indexed(
    State(state): State<Arc<AppState>>,
    query: Result<Query<EmailQuery>, QueryRejection>,
) -> Result<Json<Vec<Order>>, ApiError> {
    let email = email_of(query)?;
    orders_of(&state.db, state.db.customer_by_email_indexed(&email).await?).await
}

/// The orders of the customer found, or 404.
async fn orders_of(db: &Db, customer: Option<Customer>) -> Result<Json<Vec<Order>>, ApiError> {
    let customer = customer.ok_or(ApiError::NotFound("customer"))?;
    Ok(Json(db.orders_of(&customer).await?))
}

#[derive(Debug, Deserialize)]
struct HoldQuery {
    ms: u64,
}

fn hold_of(query: Result<Query<HoldQuery>, QueryRejection>) -> Result<Duration, ApiError> {
    let message = || format!("query parameter ms must be an integer from 0 to {MAX_HOLD_MS}");
    let Query(HoldQuery { ms }) = query.map_err(|_| ApiError::BadRequest(message()))?;
    if ms > MAX_HOLD_MS {
        return Err(ApiError::BadRequest(message()));
    }
    Ok(Duration::from_millis(ms))
}

/// The pool-exhaustion bug: the connection stays checked out across a slow call (to another
/// service, say), so a few such requests leave every other request waiting for the pool.
async fn orders_hold(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HoldQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let hold = hold_of(query)?;
    let orders = state
        .db
        .order_count_holding(DEMO_CUSTOMER_ID, || tokio::time::sleep(hold))
        .await?;
    Ok(Json(
        json!({ "orders": orders, "slow_call_ms": hold.as_millis() }),
    ))
}

/// The fix: the statement done, the connection goes back to the pool before the slow call.
async fn orders_release(
    State(state): State<Arc<AppState>>,
    query: Result<Query<HoldQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let hold = hold_of(query)?;
    let orders = state.db.order_count(DEMO_CUSTOMER_ID).await?;
    tokio::time::sleep(hold).await;
    Ok(Json(
        json!({ "orders": orders, "slow_call_ms": hold.as_millis() }),
    ))
}

async fn report_off_executor(State(state): State<Arc<AppState>>) -> Result<Json<Report>, ApiError> {
    let totals = state.db.order_totals().await?;
    let workload = state.workload;
    let report = tokio::task::spawn_blocking(move || report::build(&totals, workload))
        .await
        .map_err(|e| ApiError::BadGateway(format!("report task failed: {e}")))?;
    Ok(Json(report))
}

#[derive(Debug, Deserialize)]
struct ReportOptions {
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    hold_ms: u64,
}

/// The longest a demo report holds its first run (`POST /reports?hold_ms=`).
const MAX_REPORT_HOLD_MS: u64 = 60_000;

/// The report, off the request: enqueued, answered `202` with `Location: /jobs/{id}` at
/// once; a worker builds it (the "after" of `/report`, which holds the request for it).
async fn enqueue_report(
    State(state): State<Arc<AppState>>,
    query: Result<Query<ReportOptions>, QueryRejection>,
) -> Result<vitals::jobs::Accepted, ApiError> {
    let Query(options) = query.map_err(|_| {
        ApiError::BadRequest(format!(
            "query parameters: fail=true|false, hold_ms from 0 to {MAX_REPORT_HOLD_MS}"
        ))
    })?;
    if options.hold_ms > MAX_REPORT_HOLD_MS {
        return Err(ApiError::BadRequest(format!(
            "hold_ms must be from 0 to {MAX_REPORT_HOLD_MS}"
        )));
    }
    let job = crate::jobs::ReportJob {
        fail: options.fail,
        hold_ms: options.hold_ms,
    };
    state.jobs.accept(job).await.map_err(|error| {
        tracing::warn!(error = %error, "a report could not be enqueued");
        ApiError::ServiceUnavailable(
            "the job queue did not answer".to_owned(),
            std::time::Duration::from_secs(1),
        )
    })
}

/// The bad example: CPU work inline on the async executor, stalling every task on this worker.
async fn report_blocking(State(state): State<Arc<AppState>>) -> Result<Json<Report>, ApiError> {
    let totals = state.db.order_totals().await?;
    Ok(Json(report::build(&totals, state.workload)))
}

#[derive(Debug, Deserialize)]
struct SlowQuery {
    ms: u64,
}

async fn slow(query: Result<Query<SlowQuery>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    let Query(SlowQuery { ms }) = query.map_err(|_| {
        ApiError::BadRequest(format!(
            "query parameter ms must be an integer from 0 to {MAX_SLOW_MS}"
        ))
    })?;
    if ms > MAX_SLOW_MS {
        return Err(ApiError::BadRequest(format!(
            "query parameter ms must be an integer from 0 to {MAX_SLOW_MS}"
        )));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(Json(json!({ "slept_ms": ms })))
}

async fn me(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let authorized = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token.trim() == DEMO_TOKEN);
    if !authorized {
        return Err(ApiError::Unauthorized);
    }
    let customer: Customer = state
        .db
        .customer(DEMO_CUSTOMER_ID)
        .await?
        .ok_or(ApiError::NotFound("customer"))?;
    let orders = state.db.order_count(DEMO_CUSTOMER_ID).await?;
    Ok(Json(json!({ "customer": customer, "orders": orders })))
}

#[derive(Debug, Deserialize)]
struct CheckoutQuery {
    product_id: Option<i64>,
}

async fn checkout(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CheckoutQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(CheckoutQuery { product_id }) = query.map_err(|_| {
        ApiError::BadRequest("query parameter product_id must be an integer".to_owned())
    })?;
    let product_id = product_id.unwrap_or(1);
    let product = state
        .db
        .product(product_id)
        .await?
        .ok_or(ApiError::NotFound("product"))?;
    let request = PaymentRequest {
        product_id,
        amount_cents: product.price_cents,
    };
    match state.payment.pay(&request).await {
        Ok(receipt) => {
            // Inside the request span: the log line carries its trace_id and span_id.
            tracing::info!(
                product_id,
                payment_id = %receipt.payment_id,
                amount_cents = receipt.amount_cents,
                "payment approved"
            );
            Ok(Json(
                json!({ "status": "paid", "product": product, "payment": receipt }),
            ))
        }
        Err(PaymentError::Timeout) => {
            tracing::warn!(product_id, "payment service timed out");
            Err(ApiError::GatewayTimeout(
                "payment service timed out".to_owned(),
            ))
        }
        Err(PaymentError::Unavailable { retry_after }) => {
            // Answered at once: the breaker keeps the request from waiting on a service that
            // keeps failing.
            tracing::warn!(
                product_id,
                retry_after_ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
                "payment service unavailable (circuit open)"
            );
            Err(ApiError::ServiceUnavailable(
                "payment service unavailable".to_owned(),
                retry_after,
            ))
        }
        Err(PaymentError::Failed(reason)) => {
            tracing::warn!(product_id, %reason, "payment failed");
            Err(ApiError::BadGateway("payment service failed".to_owned()))
        }
    }
}
