//! A stored response: its head and body, when it was stored and how old it was then, what it
//! allows once stale, and the request header values it was stored for (its `Vary`).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use vitals_core::route::RouteLabel;

use crate::directives;
use crate::rules::{Freshness, Stored};

/// A stored response. Immutable: a refresh stores a new one.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) route: RouteLabel,
    pub(crate) tags: Vec<Box<str>>,
    pub(crate) vary_values: Vec<Option<Vec<u8>>>,
    /// When it was stored (monotonic: a clock stepped back does not make it fresh again).
    pub(crate) stored_at: Instant,
    /// The request's host it answers (normalised): one host's response never answers another's
    /// request under the same path.
    pub(crate) host: Option<Box<str>>,
    /// Its age when stored (RFC 9111 §4.2.3's corrected initial age).
    pub(crate) initial_age: Duration,
    /// Its freshness lifetime, after jitter.
    pub(crate) lifetime: Duration,
    pub(crate) freshness: Freshness,
}

impl Entry {
    /// Its age at `now`.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// What its use depends on, at `now`.
    pub(crate) fn facts(&self, now: Instant) -> Stored {
        Stored {
            age: self.age(now),
            lifetime: self.lifetime,
            stale_while_revalidate: self.freshness.stale_while_revalidate,
            no_cache: self.freshness.no_cache,
            forbids_stale: self.freshness.forbids_stale,
        }
    }

    /// Whole seconds of freshness left at `now`, rounded down: negative once stale (stale by
    /// a tenth of a second is `-1`), for `Cache-Status`'s `ttl`.
    pub(crate) fn ttl(&self, now: Instant) -> i64 {
        let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        (millis(self.lifetime) - millis(self.age(now))).div_euclid(1_000)
    }

    /// Whether, at `now`, it may still answer when the handler fails (`stale-if-error`).
    pub(crate) fn serves_on_error(&self, now: Instant) -> bool {
        let age = self.age(now);
        !self.freshness.forbids_stale
            && !self.freshness.no_cache
            && age < self.lifetime.saturating_add(self.freshness.stale_if_error)
            && self.status.is_success()
    }

    /// How long past `now` the store should keep it: through its stale windows, and for a
    /// while longer when it can be revalidated.
    pub(crate) fn keep_for(&self, now: Instant, revalidation_grace: Duration) -> Duration {
        let mut after = self
            .freshness
            .stale_while_revalidate
            .max(self.freshness.stale_if_error);
        if crate::rules::has_validator(&self.headers) {
            after = after.max(revalidation_grace);
        }
        self.lifetime
            .saturating_add(after)
            .saturating_sub(self.age(now))
    }

    /// The bytes it holds, roughly: what bounds the memory store (the body, the headers, the
    /// request values it varies on, its tags and host).
    pub(crate) fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        let varied: usize = self
            .vary_values
            .iter()
            .map(|value| value.as_ref().map_or(0, Vec::len) + 24)
            .sum();
        let tags: usize = self.tags.iter().map(|tag| tag.len() + 16).sum();
        let host = self.host.as_ref().map_or(0, |host| host.len());
        self.body.len() + headers + varied + tags + host + 256
    }

    /// Whether it was stored for a request to this host with these values of its `Vary`
    /// headers.
    pub(crate) fn matches(&self, host: Option<&str>, request: &HeaderMap) -> bool {
        let same_host = match (self.host.as_deref(), host) {
            (Some(stored), Some(asked)) => stored.eq_ignore_ascii_case(asked),
            (stored, asked) => stored.is_none() && asked.is_none(),
        };
        same_host && crate::key::vary_values(&self.freshness.vary, request) == self.vary_values
    }

    /// The stored response, with its `Age` (and no body for a `HEAD`).
    pub(crate) fn response(&self, now: Instant, head: bool) -> Response<Bytes> {
        let mut response = Response::new(if head {
            Bytes::new()
        } else {
            self.body.clone()
        });
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        if head {
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(self.age(now).as_secs()));
        // Kept to recompute freshness after a revalidation; for this cache, not the client.
        response
            .headers_mut()
            .remove(crate::directives::SURROGATE_CONTROL);
        response
    }

    /// `304 Not Modified` for a client whose copy matches: the stored validators and the
    /// fields a `200` would have carried that describe it (RFC 9110 §15.4.5).
    pub(crate) fn not_modified(&self, now: Instant) -> Response<Bytes> {
        const KEPT: [HeaderName; 7] = [
            header::CACHE_CONTROL,
            header::CONTENT_LOCATION,
            header::DATE,
            header::ETAG,
            header::EXPIRES,
            header::VARY,
            header::LAST_MODIFIED,
        ];
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        for name in KEPT {
            for value in self.headers.get_all(&name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(self.age(now).as_secs()));
        response
    }

    /// Whether a client's conditional `GET` matches this entry, so a `304` answers it
    /// (`If-None-Match`, else `If-Modified-Since`; RFC 9110 §13.2.2).
    pub(crate) fn satisfies_precondition(&self, request: &HeaderMap) -> bool {
        if self.status != StatusCode::OK {
            return false;
        }
        if request.contains_key(header::IF_NONE_MATCH) {
            let Some(etag) = self.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
                return false;
            };
            let ours = opaque(etag);
            return request.get_all(header::IF_NONE_MATCH).iter().any(|line| {
                line.to_str().is_ok_and(|line| {
                    line.split(',')
                        .map(str::trim)
                        .any(|tag| tag == "*" || opaque(tag) == ours)
                })
            });
        }
        let Some(since) = directives::date(request, &header::IF_MODIFIED_SINCE) else {
            return false;
        };
        directives::date(&self.headers, &header::LAST_MODIFIED).is_some_and(|last| last <= since)
    }
}

/// An entity tag without its weak marker: `If-None-Match` compares weakly.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Room kept in a stored head for the fields each answer from it adds (`Age`, `Cache-Status`, a
/// `HEAD`'s `Content-Length`): its copy then takes them without growing its table.
pub(crate) const ROOM_FOR_ANSWER: usize = 3;

/// The headers a stored response keeps: the handler's, less hop-by-hop ones (RFC 9110
/// §7.6.1), the body's framing, `Age` (recomputed on every use), `Set-Cookie` (one client's),
/// and the tag header (for the cache only).
pub(crate) fn kept_headers(headers: &HeaderMap, tag_header: &HeaderName) -> HeaderMap {
    const DROPPED: [HeaderName; 9] = [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHENTICATE,
        header::CONTENT_LENGTH,
        header::AGE,
        header::SET_COOKIE,
    ];
    // Fields the response's `Connection` names belong to that connection (RFC 9111 §3.1).
    let connection: Vec<&str> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(',').map(str::trim))
        .collect();
    let mut kept = HeaderMap::try_with_capacity(headers.len() + ROOM_FOR_ANSWER)
        .unwrap_or_else(|_| HeaderMap::with_capacity(headers.len()));
    for (name, value) in headers {
        let dropped = DROPPED.contains(name)
            || connection
                .iter()
                .any(|listed| listed.eq_ignore_ascii_case(name.as_str()))
            || name == tag_header
            || name == crate::status::CACHE_STATUS
            || name == "keep-alive"
            || name == "proxy-connection"
            || name == vitals_core::server_timing::SERVER_TIMING;
        if !dropped {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// The tags a response names in `tag_header` (space-separated, as `Surrogate-Key`).
pub(crate) fn tags(headers: &HeaderMap, tag_header: &HeaderName) -> Vec<Box<str>> {
    let mut tags: Vec<Box<str>> = Vec::new();
    for line in headers.get_all(tag_header) {
        let Ok(line) = line.to_str() else { continue };
        for tag in line.split_ascii_whitespace() {
            if !tags.iter().any(|known| &**known == tag) {
                tags.push(tag.into());
            }
        }
    }
    tags
}

/// The age a response had when it arrived (RFC 9111 §4.2.3), from its `Date` and `Age` and
/// how long the handler took.
pub(crate) fn initial_age(
    headers: &HeaderMap,
    requested_at: SystemTime,
    received_at: SystemTime,
) -> Duration {
    let apparent = directives::date(headers, &header::DATE)
        .and_then(|date| received_at.duration_since(date).ok())
        .unwrap_or_default();
    let delay = received_at.duration_since(requested_at).unwrap_or_default();
    let corrected = Duration::from_secs(directives::age(headers)) + delay;
    apparent.max(corrected)
}

/// `lifetime`, shortened by up to `jitter` of itself (never lengthened), so entries filled
/// together do not all expire together.
pub(crate) fn jittered(lifetime: Duration, jitter: f64) -> Duration {
    if jitter <= 0.0 || lifetime.is_zero() {
        return lifetime;
    }
    lifetime.mul_f64(1.0 - fastrand::f64() * jitter.min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_drop_what_is_one_clients_or_the_connections() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::SET_COOKIE, HeaderValue::from_static("a=b"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::AGE, HeaderValue::from_static("4"));
        headers.insert("surrogate-key", HeaderValue::from_static("p1 catalogue"));
        let tag_header = HeaderName::from_static("surrogate-key");
        let kept = kept_headers(&headers, &tag_header);
        assert_eq!(
            kept.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["content-type"]
        );
        assert_eq!(
            tags(&headers, &tag_header),
            vec![Box::<str>::from("p1"), Box::<str>::from("catalogue")]
        );
    }

    fn entry(no_cache: bool, forbids_stale: bool) -> Entry {
        Entry {
            status: http::StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            route: RouteLabel::unmatched(),
            tags: Vec::new(),
            vary_values: Vec::new(),
            stored_at: Instant::now(),
            host: None,
            initial_age: Duration::from_secs(10),
            lifetime: Duration::from_secs(5),
            freshness: Freshness {
                lifetime: Duration::from_secs(5),
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::from_mins(1),
                no_cache,
                forbids_stale,
                vary: Vec::new(),
            },
        }
    }

    #[test]
    fn stale_if_error_never_answers_where_the_response_forbids_stale() {
        let now = Instant::now();
        assert!(entry(false, false).serves_on_error(now));
        assert!(!entry(true, false).serves_on_error(now), "no-cache");
        assert!(!entry(false, true).serves_on_error(now), "must-revalidate");
    }

    #[test]
    fn jitter_only_shortens() {
        for _ in 0..1_000 {
            let lifetime = jittered(Duration::from_mins(1), 0.1);
            assert!(lifetime <= Duration::from_mins(1));
            assert!(lifetime >= Duration::from_secs(54));
        }
        assert_eq!(
            jittered(Duration::from_mins(1), 0.0),
            Duration::from_mins(1)
        );
    }

    #[test]
    fn the_initial_age_counts_the_age_field_and_the_handlers_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(header::AGE, HeaderValue::from_static("10"));
        let age = initial_age(&headers, at, at + Duration::from_secs(2));
        assert_eq!(age, Duration::from_secs(12));
    }
}
