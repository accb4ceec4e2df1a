//! Errors as JSON responses: `{"error": "..."}` with the right status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error a handler answers with.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the request was malformed.
    BadRequest(String),
    /// 401: credentials missing or wrong.
    Unauthorized,
    /// 404: no such resource.
    NotFound(&'static str),
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 502: a downstream service failed.
    BadGateway(String),
    /// 504: a downstream service did not answer in time.
    GatewayTimeout(String),
    /// 503: a downstream service is known to be failing (its circuit breaker is open); try
    /// again after the duration (`Retry-After`, whole seconds, at least 1).
    ServiceUnavailable(String, std::time::Duration),
    /// 500: a database failure (details are logged, not sent).
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (try `Authorization: Bearer demo`)".to_owned(),
            ),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, format!("{what} not found")),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed".to_owned(),
            ),
            Self::BadGateway(message) => (StatusCode::BAD_GATEWAY, message),
            Self::GatewayTimeout(message) => (StatusCode::GATEWAY_TIMEOUT, message),
            Self::ServiceUnavailable(message, retry_after) => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({ "error": message })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
                return response;
            }
            // Cut at the database's statement timeout: the database is slow or locked, not
            // broken; the client may retry later (recorded as such by `Db`).
            Self::Database(error) if vitals::queries::is_sqlx_timeout(&error) => {
                return Self::ServiceUnavailable(
                    "the database did not answer in time".to_owned(),
                    std::time::Duration::from_secs(1),
                )
                .into_response();
            }
            Self::Database(error) => {
                tracing::error!(%error, "database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
