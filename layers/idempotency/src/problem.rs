//! The layer's own answers, as RFC 9457 problem details (`application/problem+json`).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// What the layer answers by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// 400: the route requires a key and the request has none.
    MissingKey,
    /// 400: the key is malformed, repeated or too long.
    BadKey(String),
    /// 409: a request with the same key is still running.
    InProgress,
    /// 409: the key's first request completed, but its response was not kept (too large, or
    /// its body broke off), so it cannot be replayed.
    NotReplayable,
    /// 413: the request body is larger than the layer reads to fingerprint it.
    BodyTooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// 422: the key was used before with a different request.
    Mismatch,
    /// 400: the request body broke off before its end.
    UnreadableBody,
    /// 503: the store cannot take another key (every slot holds a request in flight).
    StoreFull,
    /// 503: the shared store (Redis) did not answer, and requests are not run unprotected.
    StoreUnavailable,
}

impl Problem {
    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingKey | Self::BadKey(_) | Self::UnreadableBody => StatusCode::BAD_REQUEST,
            Self::InProgress | Self::NotReplayable => StatusCode::CONFLICT,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Mismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::StoreFull | Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MissingKey => "Idempotency-Key required",
            Self::BadKey(_) => "Invalid Idempotency-Key",
            Self::InProgress => "A request with this Idempotency-Key is in progress",
            Self::NotReplayable => "The response to this Idempotency-Key cannot be replayed",
            Self::BodyTooLarge { .. } => "Request body too large",
            Self::Mismatch => "Idempotency-Key reused with a different request",
            Self::UnreadableBody => "Request body could not be read",
            Self::StoreFull => "Idempotency keys cannot be recorded right now",
            Self::StoreUnavailable => "Idempotency keys cannot be checked right now",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::MissingKey => {
                "This operation requires an Idempotency-Key header: a string unique to the operation, sent again unchanged on every retry.".to_owned()
            }
            Self::BadKey(reason) => reason.clone(),
            Self::InProgress => {
                "The first request with this key has not finished. Retry after it has.".to_owned()
            }
            Self::NotReplayable => "The first request with this key completed, but its response was not kept. Check the outcome before sending a new request with a new key.".to_owned(),
            Self::BodyTooLarge { max } => {
                format!("Requests with an Idempotency-Key may carry at most {max} bytes.")
            }
            Self::Mismatch => "This key was used with a different request (method, path or body). Use a new key for a new operation.".to_owned(),
            Self::StoreFull => "Too many requests with an Idempotency-Key are in flight. Retry shortly.".to_owned(),
            Self::StoreUnavailable => "The store of idempotency keys did not answer; nothing was done. Retry shortly with the same key.".to_owned(),
            Self::UnreadableBody => "The request body broke off before its end; nothing was done.".to_owned(),
        }
    }

    /// The answer: the problem as JSON, `no-store`, and `Retry-After: 1` where a retry helps.
    pub fn into_response(self) -> Response<Bytes> {
        // `about:blank`: the title is the status's phrase (RFC 9457 §4.2.1); what happened is
        // the detail.
        let status = self.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or_default(),
            "status": status.as_u16(),
            "detail": format!("{}. {}", self.title(), self.detail()),
        });
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(
            self,
            Self::InProgress | Self::StoreFull | Self::StoreUnavailable
        ) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
