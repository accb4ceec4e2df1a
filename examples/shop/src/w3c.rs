//! `POST /trace-context/test`: the service contract of the W3C trace-context test suite. The
//! body is a JSON list of `{"url": ..., "arguments": [...]}`; for each, in order, the shop POSTs
//! `arguments` as JSON to `url`, carrying the request's trace as a new client span.
//!
//! The suite's harness runs on this machine, and an endpoint that POSTs to any URL it is given
//! would let anyone reach the shop's network: it is mounted only with `--w3c-test-endpoint`,
//! only loopback URLs are called (`400` otherwise), without redirects or proxies, and at most
//! 64 calls per request.

use std::sync::OnceLock;

use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// One call the harness asks for.
#[derive(Debug, Deserialize)]
pub struct Call {
    url: String,
    arguments: Value,
}

fn client() -> Result<&'static reqwest::Client, ApiError> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // No redirects and no proxy: a loopback URL must stay a loopback call.
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| ApiError::BadGateway("no HTTP client".to_owned()))
}

fn loopback(url: &reqwest::Url) -> bool {
    matches!(url.scheme(), "http" | "https")
        && match url.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        }
}

/// The handler.
pub async fn test(
    calls: Result<Json<Vec<Call>>, axum::extract::rejection::JsonRejection>,
) -> Result<(), ApiError> {
    let Json(calls) = calls.map_err(|_| {
        ApiError::BadRequest("the body must be a JSON list of {url, arguments}".to_owned())
    })?;
    if calls.len() > 64 {
        return Err(ApiError::BadRequest(
            "at most 64 calls per request".to_owned(),
        ));
    }
    let client = client()?;
    for call in calls {
        let url = reqwest::Url::parse(&call.url)
            .ok()
            .filter(loopback)
            .ok_or_else(|| ApiError::BadRequest(format!("not a loopback URL: {}", call.url)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        vitals::trace_context::inject(&mut headers);
        client
            .post(url)
            .headers(headers)
            .json(&call.arguments)
            .send()
            .await
            .map_err(|e| ApiError::BadGateway(format!("the harness did not answer: {e}")))?;
    }
    Ok(())
}
