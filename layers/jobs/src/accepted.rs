//! `Accepted`: the answer of a handler that enqueued its work — `202`, where to ask, and when.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::Job;
use crate::id::JobId;
use crate::store::{JobError, JobStore};

/// A job enqueued, as the handler answers it: `202 Accepted`, `Location` (its status route),
/// `Retry-After: 1`, `Cache-Control: no-store` and a JSON body
/// (`{"id": …, "state": "pending", "location": …}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    id: JobId,
    location: String,
}

impl JobStore {
    /// Enqueues `job` (with the current request's trace context) and makes the `202` that
    /// says where to ask for it.
    pub async fn accept<J: Job>(&self, job: J) -> Result<Accepted, JobError> {
        let id = self.enqueue(job).await?;
        Ok(Accepted {
            id,
            location: self.location_of(&id),
        })
    }
}

impl Accepted {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Where its status is read.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The `202` (for a handler without axum).
    pub fn into_http(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "id": self.id.to_string(),
            "state": "pending",
            "location": self.location,
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = StatusCode::ACCEPTED;
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&self.location) {
            headers.insert(header::LOCATION, location);
        }
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for Accepted {
    fn into_response(self) -> axum::response::Response {
        self.into_http().map(axum::body::Body::new)
    }
}
