//! A JSON endpoint with the local quantiles: `GET ?window=1m|5m&group=route`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_service::Service;

use crate::registry::LatencyRegistry;
use crate::window::Window;

impl LatencyRegistry {
    /// A service answering with a [`Snapshot`](crate::Snapshot) as JSON:
    ///
    /// ```json
    /// {"window": "1m", "window_seconds": 72.4, "overflowed": 0, "series": [{"method": "GET",
    ///  "route": "/products/{id}", "status": 200, "count": 41, "cancelled": 0,
    ///  "rate_per_s": 0.57, "error_rate": 0.0, "p50_ms": 1.2, "p90_ms": 2.0, "p95_ms": 2.3,
    ///  "p99_ms": 4.9, "p999_ms": 4.9, "max_ms": 4.9}]}
    /// ```
    ///
    /// Query parameters: `window=1m` (default) or `5m`; `group=route` merges statuses. Anything
    /// else is answered `400` with `{"error": "..."}`.
    pub fn json_service(&self) -> JsonSnapshotService {
        JsonSnapshotService {
            registry: self.clone(),
        }
    }
}

/// Serves a [`LatencyRegistry`]'s snapshot as JSON; see [`LatencyRegistry::json_service`].
#[derive(Clone, Debug)]
pub struct JsonSnapshotService {
    registry: LatencyRegistry,
}

/// The window and grouping a query asks for.
fn parse_query(query: Option<&str>) -> Result<(Window, bool), String> {
    let mut window = Window::OneMinute;
    let mut by_route = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "window" => {
                window =
                    Window::parse(value).ok_or_else(|| "window must be 1m or 5m".to_owned())?;
            }
            "group" if value == "route" => by_route = true,
            "group" if value == "series" => by_route = false,
            "group" => return Err("group must be route or series".to_owned()),
            _ => return Err("unknown parameter; use window and group".to_owned()),
        }
    }
    Ok((window, by_route))
}

impl<B> Service<Request<B>> for JsonSnapshotService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (status, body) = match parse_query(request.uri().query()) {
            Ok((window, by_route)) => {
                let snapshot = if by_route {
                    self.registry.snapshot_by_route(window)
                } else {
                    self.registry.snapshot(window)
                };
                match serde_json::to_string(&snapshot) {
                    Ok(json) => (StatusCode::OK, json),
                    Err(error) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        serde_json::json!({ "error": error.to_string() }).to_string(),
                    ),
                }
            }
            Err(message) => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": message }).to_string(),
            ),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_strictly() {
        assert_eq!(parse_query(None), Ok((Window::OneMinute, false)));
        assert_eq!(
            parse_query(Some("window=5m&group=route")),
            Ok((Window::FiveMinutes, true))
        );
        assert!(parse_query(Some("window=1h")).is_err());
        assert!(parse_query(Some("group=status")).is_err());
        assert!(parse_query(Some("limit=3")).is_err());
    }
}
