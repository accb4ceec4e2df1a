//! The rules of the cache-headers part, as functions of the request's facts and the response
//! head: whose `Cache-Control` applies (RFC 9111), when an entity tag is worth computing, and
//! what the request's preconditions make of the response (RFC 9110 §13).

use std::borrow::Cow;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH,
    CONTENT_LOCATION, CONTENT_RANGE, CONTENT_TYPE, COOKIE, ETAG, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED, SET_COOKIE, TRANSFER_ENCODING,
};
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use vitals_core::route::{RequestHead, RouteLabel};

use crate::body::CacheBody;
use crate::conditional::{Preconditions, Validators, Verdict, parse_date};
use crate::etag::EntityTag;
use crate::policy::{CachePolicy, Rendered};
use crate::privacy::{OneUser, keep_from_shared_caches};
use crate::settings::CacheSettings;

/// Left in the response extensions by a cache-headers layer that keeps public policies for
/// authenticated requests: the outer ones do not apply their rules over its decision.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PolicyApplied;

/// What the layer needs to know about the request once the response comes.
pub(crate) struct RequestFacts {
    pub(crate) safe: bool,
    pub(crate) method: Method,
    pub(crate) preconditions: Option<Box<Preconditions>>,
    /// The header a private variant depends on (`Authorization`, `Cookie`), if any.
    pub(crate) credentials: Option<&'static str>,
    /// The policy a rule chose for this request (the configured one otherwise).
    pub(crate) policy: Option<Rendered>,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))] // Labels the metrics.
    pub(crate) route: Option<RouteLabel>,
    /// The layer's counters.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: std::sync::Arc<crate::metrics::Handles>,
}

impl RequestFacts {
    /// What `settings` needs to know about `request` (for `route`) once the response comes.
    pub(crate) fn of<B>(
        settings: &CacheSettings,
        request: &Request<B>,
        route: Option<RouteLabel>,
        #[cfg(feature = "metrics")] metrics: &std::sync::Arc<crate::metrics::Handles>,
    ) -> Self {
        let headers = request.headers();
        let asked = Asked::of(headers);
        // Most requests carry no precondition: not one header looked up for them.
        let preconditions = if asked.preconditions {
            Preconditions::from_headers(headers)
        } else {
            Preconditions::default()
        };
        // Only a rule's policy is per request; the configured one is read from the settings.
        let policy = settings
            .rule
            .as_ref()
            .and_then(|rule| rule.policy(RequestHead::of(request)))
            .map(Rendered::from);
        Self {
            safe: matches!(*request.method(), Method::GET | Method::HEAD),
            method: request.method().clone(),
            preconditions: (!preconditions.is_empty()).then(|| Box::new(preconditions)),
            credentials: credentials(headers, asked, &settings.private_cookies),
            policy,
            route: route.filter(|_| cfg!(feature = "metrics")),
            #[cfg(feature = "metrics")]
            metrics: std::sync::Arc::clone(metrics),
        }
    }
}

/// Which of the request headers these rules read a request carries, found in one pass over
/// its names (a lookup each would hash the name every time; most requests carry none of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Asked {
    /// `If-Match`, `If-None-Match`, `If-Modified-Since` or `If-Unmodified-Since`.
    preconditions: bool,
    authorization: bool,
    cookie: bool,
}

impl Asked {
    fn of(headers: &HeaderMap) -> Self {
        let mut asked = Self::default();
        for name in headers.keys() {
            if *name == AUTHORIZATION {
                asked.authorization = true;
            } else if *name == COOKIE {
                asked.cookie = true;
            } else if *name == IF_NONE_MATCH
                || *name == IF_MATCH
                || *name == IF_MODIFIED_SINCE
                || *name == IF_UNMODIFIED_SINCE
            {
                asked.preconditions = true;
            }
        }
        asked
    }
}

/// The header a private variant depends on, if the request is authenticated.
fn credentials(headers: &HeaderMap, asked: Asked, cookies: &[String]) -> Option<&'static str> {
    if asked.authorization {
        return Some("Authorization");
    }
    if cookies.is_empty() || !asked.cookie {
        return None;
    }
    let carries = headers.get_all(COOKIE).iter().any(|line| {
        line.as_bytes().split(|&b| b == b';').any(|pair| {
            let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
            let name = crate::grammar::trim_ows(name);
            cookies.iter().any(|c| c.as_bytes() == name)
        })
    });
    carries.then_some("Cookie")
}

/// A body being buffered: most bodies of known length come in one frame, kept as it is.
pub(crate) enum Buffer {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Buffer {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(bytes) => bytes.len(),
            Self::Many(bytes) => bytes.len(),
        }
    }

    pub(crate) fn push(&mut self, mut chunk: impl Buf) {
        match self {
            // Without a copy when the chunk is `Bytes` already.
            Self::Empty => *self = Self::One(chunk.copy_to_bytes(chunk.remaining())),
            Self::One(first) => {
                let mut many = BytesMut::with_capacity(first.len() + chunk.remaining());
                many.extend_from_slice(first);
                while chunk.has_remaining() {
                    let piece = chunk.chunk();
                    many.extend_from_slice(piece);
                    let read = piece.len();
                    chunk.advance(read);
                }
                *self = Self::Many(many);
            }
            Self::Many(many) => {
                while chunk.has_remaining() {
                    let piece = chunk.chunk();
                    many.extend_from_slice(piece);
                    let read = piece.len();
                    chunk.advance(read);
                }
            }
        }
    }

    pub(crate) fn take(&mut self) -> Bytes {
        match std::mem::replace(self, Self::Empty) {
            Self::Empty => Bytes::new(),
            Self::One(bytes) => bytes,
            Self::Many(bytes) => bytes.freeze(),
        }
    }
}

/// Adds a frame to what is buffered.
pub(crate) fn collect<D: Buf>(
    frame: Frame<D>,
    data: &mut Buffer,
    trailers: &mut Option<HeaderMap>,
) {
    match frame.into_data() {
        Ok(chunk) => data.push(chunk),
        Err(frame) => {
            if let Ok(more) = frame.into_trailers() {
                trailers.get_or_insert_with(HeaderMap::new).extend(more);
            }
        }
    }
}

/// The buffered response with its computed entity tag, preconditions evaluated.
pub(crate) fn tagged<B: Body>(
    mut head: Parts,
    data: &mut Buffer,
    trailers: &mut Option<HeaderMap>,
    facts: &RequestFacts,
) -> Response<CacheBody<B>> {
    let bytes = data.take();
    let encoding = head
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let tag = EntityTag::header_for_body(&bytes, encoding);
    head.headers.insert(ETAG, tag);
    #[cfg(feature = "metrics")]
    facts.metrics.etag_computed(facts.route.as_ref());
    finish(head, CacheBody::buffered(bytes, trailers.take()), facts)
}

/// Sets `Cache-Control` and `Vary` on the head. Returns whether the response may be
/// validated (an entity tag makes sense for it): not for `no-store`, not for errors.
///
/// Whose `Cache-Control` it is — the policy's, the handler's, or none — is decided first; then
/// one rule, [`keep_from_shared_caches`], makes whatever was decided safe for a response that is
/// for one user, so no mode and no status can skip it.
/// Which of the headers these rules look at a response carries, found in one pass over its
/// names (a lookup each would hash the name every time; a response has a few headers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // One flag per header the rules read, set in one pass.
pub(crate) struct Carried {
    pub(crate) content_encoding: bool,
    pub(crate) set_cookie: bool,
    pub(crate) cache_control: bool,
    pub(crate) etag: bool,
    pub(crate) last_modified: bool,
}

impl Carried {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut carried = Self::default();
        for name in headers.keys() {
            if *name == CONTENT_ENCODING {
                carried.content_encoding = true;
            } else if *name == SET_COOKIE {
                carried.set_cookie = true;
            } else if *name == CACHE_CONTROL {
                carried.cache_control = true;
            } else if *name == ETAG {
                carried.etag = true;
            } else if *name == LAST_MODIFIED {
                carried.last_modified = true;
            }
        }
        carried
    }
}

pub(crate) fn apply_policy(
    status: StatusCode,
    headers: &mut HeaderMap,
    settings: &CacheSettings,
    facts: &RequestFacts,
    carried: Carried,
) -> bool {
    let mut vary: [Option<&'static str>; 3] = [None, None, None];
    if carried.content_encoding {
        // An inner compression layer encoded the body: caches must key on Accept-Encoding.
        vary[0] = Some("Accept-Encoding");
    }
    let error = status.is_client_error() || status.is_server_error();
    let for_one = OneUser {
        // The route did not say its responses are the same for everyone.
        credentials: !settings.public_even_if_authorized && facts.credentials.is_some(),
        sets_cookie: carried.set_cookie,
    };
    let handler_wins = settings.handler_wins && carried.cache_control;
    let chosen = if handler_wins {
        None
    } else {
        choose(status, settings, facts)
    };
    let mut stores = true;
    if let Some(rendered) = chosen {
        let policy = &rendered.policy;
        if policy.is_public() && !settings.public_even_if_authorized {
            // Every response of a public route says it depends on credentials, so caches keep
            // the anonymous copy apart from any other.
            vary[1] = Some("Authorization");
            if !settings.private_cookies.is_empty() {
                vary[2] = Some("Cookie");
            }
        }
        stores = !policy.is_no_store();
        headers.insert(CACHE_CONTROL, rendered.value.clone());
    } else if let Ok(directives) = crate::directives::parse(headers) {
        // The handler's value (or none: 1xx, 3xx, 2xx without a policy).
        stores = directives.is_none_or(|d| !d.no_store);
    } else {
        tracing::warn!(
            target: "vitals_cache_headers",
            status = status.as_u16(),
            cache_control = ?headers.get(CACHE_CONTROL),
            for_one_user = for_one.credentials || for_one.sets_cookie,
            "the handler's Cache-Control does not follow RFC 9111's grammar: left as it is, \
             or made no-store for a response for one user"
        );
    }
    // A shared cache would hand this user's data, or cookie, to everyone.
    if let Some(confined) = keep_from_shared_caches(headers, for_one) {
        stores = confined.stores;
        if for_one.credentials && confined.stores {
            // The user's own cache keeps the authenticated copy apart from the anonymous one.
            let slot = if facts.credentials == Some("Cookie") {
                2
            } else {
                1
            };
            vary[slot] = facts.credentials;
        }
        headers.insert(CACHE_CONTROL, confined.value);
    }
    merge_vary(headers, &vary);
    stores && !error
}

fn merge_vary(headers: &mut HeaderMap, names: &[Option<&'static str>; 3]) {
    let mut present = [""; 3];
    let mut count = 0;
    for name in names.iter().flatten() {
        present[count] = name;
        count += 1;
    }
    if count > 0 {
        crate::vary::merge(headers, &present[..count]);
    }
}

/// The policy for a response with `status`: a policy named for the status, else the route's
/// for 2xx, `no-store` from 400 up, nothing for the rest (1xx, 3xx keep what they have).
fn choose<'a>(
    status: StatusCode,
    settings: &'a CacheSettings,
    facts: &'a RequestFacts,
) -> Option<Cow<'a, Rendered>> {
    if let Some((_, policy)) = settings.status_policies.iter().find(|(s, _)| *s == status) {
        return Some(Cow::Borrowed(policy));
    }
    if status.is_client_error() || status.is_server_error() {
        return Some(Cow::Owned(Rendered {
            policy: CachePolicy::no_store(),
            value: HeaderValue::from_static("no-store"),
        }));
    }
    if status.is_success() {
        return facts
            .policy
            .as_ref()
            .or(settings.policy.as_ref())
            .map(Cow::Borrowed);
    }
    None
}

/// Whether to buffer the body for an entity tag: a `200` to `GET`/`HEAD` with no validator of
/// the handler's, an exact length within the limit.
pub(crate) fn wants_computed_etag<B: Body>(
    response: &Response<B>,
    settings: &CacheSettings,
    facts: &RequestFacts,
    carried: Carried,
) -> bool {
    facts.safe
        && response.status() == StatusCode::OK
        && settings.etag_limit > 0
        // A validator of the handler's (an ETag, or a Last-Modified) is used as it is.
        && !carried.etag
        && !carried.last_modified
        && response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|len| usize::try_from(len).is_ok_and(|len| len <= settings.etag_limit))
}

/// Evaluates the request's preconditions against the response's validators, and turns the
/// response into a `304` or `412` if they say so.
pub(crate) fn finish<B: Body>(
    mut parts: Parts,
    body: CacheBody<B>,
    facts: &RequestFacts,
) -> Response<CacheBody<B>> {
    let Some(preconditions) = facts.preconditions.as_deref() else {
        return Response::from_parts(parts, body);
    };
    // A write has happened by now: its preconditions are `PreconditionLayer`'s, checked before
    // the handler ran.
    if !facts.safe || !parts.status.is_success() {
        return Response::from_parts(parts, body);
    }
    let current = Validators {
        etag: parts
            .headers
            .get(ETAG)
            .and_then(|v| EntityTag::parse(v.as_bytes())),
        last_modified: parts.headers.get(LAST_MODIFIED).and_then(parse_date),
    };
    match preconditions.evaluate(&facts.method, &current, true) {
        Verdict::Proceed => Response::from_parts(parts, body),
        Verdict::NotModified => {
            #[cfg(feature = "metrics")]
            facts.metrics.not_modified(facts.route.as_ref());
            parts.status = StatusCode::NOT_MODIFIED;
            strip_representation(&mut parts.headers, current.etag.is_some());
            Response::from_parts(parts, CacheBody::not_modified())
        }
        Verdict::PreconditionFailed => {
            parts.status = StatusCode::PRECONDITION_FAILED;
            strip_representation(&mut parts.headers, false);
            parts.headers.remove(ETAG);
            parts
                .headers
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Response::from_parts(parts, CacheBody::empty())
        }
    }
}

/// What a `304` must not carry: the representation's metadata (RFC 9110 §15.4.5 keeps
/// `ETag`, `Cache-Control`, `Vary`, `Date`, `Expires` and `Content-Location`; `Last-Modified`
/// only when there is no `ETag`).
fn strip_representation(headers: &mut HeaderMap, has_etag: bool) {
    for name in [
        CONTENT_TYPE,
        CONTENT_LENGTH,
        CONTENT_ENCODING,
        CONTENT_LANGUAGE,
        CONTENT_RANGE,
        TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    // Any other `content-*` field (a rare custom one) goes too.
    if headers
        .keys()
        .any(|name| name.as_str().starts_with("content-") && *name != CONTENT_LOCATION)
    {
        let rest: Vec<_> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("content-") && **name != CONTENT_LOCATION)
            .cloned()
            .collect();
        for name in rest {
            headers.remove(name);
        }
    }
    if has_etag {
        headers.remove(LAST_MODIFIED);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn one_pass_finds_the_request_headers_the_rules_read() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("example.com"));
        assert_eq!(Asked::of(&headers), Asked::default());
        for name in [
            IF_MATCH,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_UNMODIFIED_SINCE,
        ] {
            let mut conditional = headers.clone();
            conditional.insert(name, HeaderValue::from_static("x"));
            assert!(Asked::of(&conditional).preconditions);
        }
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert(COOKIE, HeaderValue::from_static("session=1"));
        assert_eq!(
            Asked::of(&headers),
            Asked {
                preconditions: false,
                authorization: true,
                cookie: true,
            }
        );
        // Authorization wins; a configured private cookie counts only when sent.
        assert_eq!(
            credentials(&headers, Asked::of(&headers), &[]),
            Some("Authorization")
        );
        headers.remove(AUTHORIZATION);
        let session = ["session".to_owned()];
        assert_eq!(
            credentials(&headers, Asked::of(&headers), &session),
            Some("Cookie")
        );
        headers.remove(COOKIE);
        assert_eq!(credentials(&headers, Asked::of(&headers), &session), None);
    }

    #[test]
    fn one_pass_finds_each_header_the_rules_look_at() {
        let mut headers = HeaderMap::new();
        assert_eq!(Carried::of(&headers), Carried::default());
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        headers.insert(ETAG, HeaderValue::from_static("\"a\""));
        headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(
            Carried::of(&headers),
            Carried {
                set_cookie: true,
                etag: true,
                ..Carried::default()
            }
        );
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Sun, 06 Dec 2026 10:00:00 GMT"),
        );
        assert_eq!(
            Carried::of(&headers),
            Carried {
                content_encoding: true,
                set_cookie: true,
                cache_control: true,
                etag: true,
                last_modified: true,
            }
        );
    }
}
