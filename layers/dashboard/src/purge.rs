//! The response caches' purge route (feature `response-cache`, opt-in with
//! [`Dashboard::cache_purge_router`](crate::Dashboard::cache_purge_router)): an operator forgets
//! what the caches hold for one target, route or tag, or all of it, with `PURGE` (as Varnish
//! takes it) or `DELETE` — behind the dashboard's access rule.

use axum::extract::{Query, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use vitals_response_cache::ResponseCacheHandle;

/// The longest target, route or tag a purge takes.
const MAX_NAME: usize = 2048;

/// What to purge: exactly one of these.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Purge {
    /// A request target: a path and its query (`/products/42?lang=en`).
    target: Option<String>,
    /// A route template (`/products/{id}`).
    route: Option<String>,
    /// A tag a response named in its tag header (`Surrogate-Key`).
    tag: Option<String>,
    /// `true`: everything.
    all: Option<bool>,
}

/// What one purge asked for, checked.
#[derive(Debug, PartialEq, Eq)]
enum Scope<'a> {
    Target(&'a str),
    Route(&'a str),
    Tag(&'a str),
    All,
}

/// The purge's one scope, or why the request cannot be one.
fn scope(purge: &Purge) -> Result<Scope<'_>, String> {
    let mut scopes = Vec::new();
    if let Some(target) = &purge.target {
        if !target.starts_with('/') {
            return Err("target: a path and query starting with /".to_owned());
        }
        scopes.push(Scope::Target(target));
    }
    if let Some(route) = &purge.route {
        scopes.push(Scope::Route(route));
    }
    if let Some(tag) = &purge.tag {
        scopes.push(Scope::Tag(tag));
    }
    match purge.all {
        Some(true) => scopes.push(Scope::All),
        Some(false) => return Err("all: only all=true purges everything".to_owned()),
        None => {}
    }
    let name = |scope: &Scope<'_>| match scope {
        Scope::Target(name) | Scope::Route(name) | Scope::Tag(name) => name.len(),
        Scope::All => 0,
    };
    match scopes.as_slice() {
        [one] if name(one) == 0 && *one != Scope::All => Err("an empty name purges nothing".into()),
        [one] if name(one) > MAX_NAME => Err(format!("names are at most {MAX_NAME} bytes")),
        [_] => Ok(scopes.remove(0)),
        _ => Err("give exactly one of target, route, tag or all=true".to_owned()),
    }
}

/// `PURGE` or `DELETE` with the purge's one scope in the query: the caches forget it (this
/// instance's memory at once, a Redis shared by the fleet in the background).
pub(crate) fn answer(
    caches: &[ResponseCacheHandle],
    request: &Request,
    query: Result<Query<Purge>, String>,
) -> Response {
    if request.method() != Method::DELETE && request.method().as_str() != "PURGE" {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "use PURGE or DELETE");
    }
    if caches.is_empty() {
        return problem(
            StatusCode::NOT_FOUND,
            "no response cache is given to the dashboard",
        );
    }
    let purge = match query {
        Ok(Query(purge)) => purge,
        Err(error) => return problem(StatusCode::BAD_REQUEST, &error),
    };
    let scope = match scope(&purge) {
        Ok(scope) => scope,
        Err(error) => return problem(StatusCode::BAD_REQUEST, &error),
    };
    for cache in caches {
        match scope {
            Scope::Target(target) => {
                if !cache.purge(target) {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        &format!("target {target:?} is not a request target"),
                    );
                }
            }
            Scope::Route(route) => cache.purge_route(route),
            Scope::Tag(tag) => cache.purge_tag(tag),
            Scope::All => cache.clear(),
        }
    }
    let purged = match scope {
        Scope::Target(target) => json!({ "target": target }),
        Scope::Route(route) => json!({ "route": route }),
        Scope::Tag(tag) => json!({ "tag": tag }),
        Scope::All => json!({ "all": true }),
    };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({ "purged": purged, "caches": caches.len() }).to_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/problem+json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({ "type": "about:blank", "status": status.as_u16(), "detail": detail }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purge(
        target: Option<&str>,
        route: Option<&str>,
        tag: Option<&str>,
        all: Option<bool>,
    ) -> Purge {
        Purge {
            target: target.map(str::to_owned),
            route: route.map(str::to_owned),
            tag: tag.map(str::to_owned),
            all,
        }
    }

    #[test]
    fn exactly_one_scope_with_a_sane_name() {
        assert_eq!(
            scope(&purge(Some("/p/1"), None, None, None)),
            Ok(Scope::Target("/p/1"))
        );
        assert_eq!(scope(&purge(None, None, None, Some(true))), Ok(Scope::All));
        assert_eq!(
            scope(&purge(None, None, Some("catalogue"), None)),
            Ok(Scope::Tag("catalogue"))
        );
        for bad in [
            purge(None, None, None, None),
            purge(Some("/p/1"), None, Some("t"), None),
            purge(Some("p/1"), None, None, None),
            purge(None, Some(""), None, None),
            purge(None, None, None, Some(false)),
            purge(None, None, Some(&"x".repeat(MAX_NAME + 1)), None),
        ] {
            assert!(scope(&bad).is_err(), "{bad:?}");
        }
    }
}
