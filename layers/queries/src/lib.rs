//! `vitals-queries`: per-request database query counts and time, SQL fingerprints, and N+1
//! detection.
//!
//! N+1 queries — one query for a list, then one more per item — are the most common reason an
//! API that was instant on a developer's ten rows crawls on production's ten thousand.
//! [`QueryTrackingLayer`] gives every request a [`QueryLedger`]; the code that runs queries
//! reports into it; at the response head the layer adds `db;dur=<ms>;desc="<n> queries"` to the
//! `Server-Timing` header and reports statements repeated within the request as N+1 findings.
//!
//! # Wiring (axum + sqlx)
//!
//! ```
//! use axum::{routing::get, Router};
//! use tracing_subscriber::{filter::EnvFilter, fmt, prelude::*};
//! use vitals_queries::QueryTrackingLayer;
//!
//! // 1. sqlx reports every statement as a DEBUG `tracing` event: install the query event layer
//! //    with its own filter, so your logs can stay at INFO.
//! let subscriber = tracing_subscriber::registry()
//!     .with(fmt::layer().with_filter(EnvFilter::new("info")))
//!     .with(vitals_queries::query_events());
//! # let _ = subscriber;
//!
//! // 2. The layer, innermost, so the ledger covers the handler's work.
//! let app: Router = Router::new()
//!     .route("/orders", get(|| async { "[]" }))
//!     .layer(QueryTrackingLayer::new());
//! ```
//!
//! Queries reach the ledger through a task-local set around the request future, or through
//! the request's tracing span for work on other threads (sqlx-sqlite's worker) and spawned
//! tasks ([`in_current_request`]). Clients that do not report through `tracing` call
//! [`record`].

#[cfg(feature = "diesel")]
pub mod diesel;
pub mod fingerprint;
pub mod index;
pub mod pool;

mod body;
mod cache;
mod events;
mod future;
mod layer;
mod ledger;
#[cfg(feature = "metrics")]
pub mod metrics;
mod n_plus_one;
pub mod part;
mod scope;
mod service;
mod statements;
#[cfg(feature = "testing")]
pub mod testing;

pub use body::QueryBody;
pub use events::{
    DB_TEXT_FIELDS, QueryEventLayer, QueryFilter, REQUEST_SPAN_TARGET, SQLX_ACQUIRE_TARGET,
    SQLX_TARGET, query_events,
};
pub use future::ResponseFuture;
pub use index::SpawnError;
pub use layer::{NPlusOneAction, QueryTrackingLayer, RouteQueries};
pub use ledger::{
    FingerprintGroup, MAX_RECORDED, MAX_STATEMENT_LEN, Query, QueryLedger, QueryReport,
    RecordedQuery,
};
pub use n_plus_one::{DEFAULT_THRESHOLD, NPlusOneFinding, NPlusOneRule};
pub use scope::{current_ledger, in_current_request, record, record_query};
pub use service::QueryTracking;
pub use statements::{DEFAULT_SLOW_STATEMENT, SLOW_REPORT_INTERVAL, is_slow, is_timeout_error};
#[cfg(feature = "sqlx")]
pub use statements::{is_sqlx_timeout, record_sqlx_error};
