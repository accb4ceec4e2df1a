//! `StatusRoute`: `GET {path}/{id}` — a job's status read from the queue's table, never from
//! the worker, under the access rule the service chooses.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use vitals_core::route::RequestHead;
use vitals_core::throttle::Throttle;

use crate::id::JobId;
use crate::state::JobState;
use crate::store::{JobStatus, JobStore};

/// Who may read a job's status: the request's head and the job.
type Access = dyn Fn(RequestHead<'_>, &JobStatus) -> bool + Send + Sync;

/// The status route of a [`JobStore`]'s jobs, as an axum router to merge:
///
/// | job | answer |
/// |---|---|
/// | pending or running | `200`, the [`JobStatus`] as JSON, `Retry-After: 1` |
/// | succeeded | `200`, with its `result` |
/// | failed (dead-lettered) | `200`, with its last `error` |
/// | no such job, an id that is not one, or one the access rule refuses | `404` |
/// | the database failing | `503`, `Retry-After: 1` (said in a WARN at most once a minute) |
///
/// Every answer is `Cache-Control: no-store`. By default any client with a job's id may read
/// it: the id's 80 random bits are the capability. [`with_access`](Self::with_access) narrows
/// that (a refused reader gets the same `404` as for a job that does not exist).
#[derive(Clone)]
pub struct StatusRoute {
    store: JobStore,
    access: Option<Arc<Access>>,
    warned: Arc<Throttle>,
}

impl std::fmt::Debug for StatusRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusRoute")
            .field("store", &self.store)
            .field("access", &self.access.is_some())
            .finish_non_exhaustive()
    }
}

impl StatusRoute {
    /// The status route of `store`'s jobs, at its status path (`/jobs` by default).
    pub fn new(store: &JobStore) -> Self {
        Self {
            store: store.clone(),
            access: None,
            warned: Arc::new(Throttle::new(Duration::from_mins(1))),
        }
    }

    /// Only requests `rule` allows read a job's status (for example, the job's owner, from a
    /// header or an extension an authentication layer set).
    #[must_use]
    pub fn with_access(
        mut self,
        rule: impl Fn(RequestHead<'_>, &JobStatus) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.access = Some(Arc::new(rule));
        self
    }

    /// The route, to merge into the service's router.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> axum::Router<S> {
        let path = format!("{}/{{id}}", self.store.status_path);
        axum::Router::new()
            .route(&path, axum::routing::get(read_status))
            .with_state(self)
    }

    /// The answer for job `id` to the request of `head`.
    async fn answer(&self, head: RequestHead<'_>, id: &str) -> Response {
        let Some(id) = JobId::parse(id) else {
            return not_found();
        };
        let status = match self.store.status(&id).await {
            Ok(Some(status)) => status,
            Ok(None) => return not_found(),
            Err(error) => {
                if let Some(failures) = self.warned.failed() {
                    tracing::warn!(
                        target: "vitals_jobs",
                        error = %error,
                        failures,
                        "jobs' status could not be read"
                    );
                }
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The job store did not answer. Retry shortly.",
                );
            }
        };
        if let Some(access) = &self.access
            && !access(head, &status)
        {
            return not_found();
        }
        let waiting = matches!(status.state, JobState::Pending | JobState::Running);
        let body = serde_json::to_string(&status).unwrap_or_default();
        let mut response = (
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            body,
        )
            .into_response();
        if waiting {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn read_status(
    State(route): State<StatusRoute>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    route.answer(RequestHead::of(&request), &id).await
}

fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "No such job.")
}

/// An RFC 9457 problem document, `no-store` (and `Retry-After: 1` for a 503).
fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or_default(),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
