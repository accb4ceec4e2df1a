//! `Replay`: what a retry sends again.

use http::{HeaderMap, Method, Request, Uri, Version};
use vitals_core::attempt::ResendCount;
use vitals_core::deadline::RequestDeadline;

use super::body::ReplayBody;

/// A request kept to be sent again: method, URI, version, headers, the body when it is in
/// memory and within the limit, and a [`RequestDeadline`] the request carries (other extensions
/// are the first attempt's). Kept as its parts, not as a `Request`: every call that may repeat
/// makes one, and only a retry builds the request from it.
#[derive(Debug)]
pub(crate) struct Replay<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    body: B,
    deadline: Option<RequestDeadline>,
}

impl<B: ReplayBody> Replay<B> {
    /// A copy of `request`, or `None` when its body cannot be sent again within `limit` bytes.
    // Always inlined: the copy is made where it is kept, not made and then moved (one
    // `memcpy` of ~230 bytes per call fewer).
    #[allow(clippy::inline_always)] // Measured: plain `#[inline]` keeps one of the copies.
    #[inline(always)]
    pub(crate) fn of(request: &Request<B>, limit: usize) -> Option<Self> {
        Some(Self {
            body: request.body().replay(limit)?,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            deadline: request.extensions().get::<RequestDeadline>().copied(),
        })
    }

    /// A copy of this one, for an attempt after the next.
    pub(crate) fn copy(&self, limit: usize) -> Option<Self> {
        Some(Self {
            body: self.body.replay(limit)?,
            method: self.method.clone(),
            uri: self.uri.clone(),
            version: self.version,
            headers: self.headers.clone(),
            deadline: self.deadline,
        })
    }
}

impl<B> Replay<B> {
    /// The deadline the request carried.
    pub(crate) fn deadline(&self) -> Option<RequestDeadline> {
        self.deadline
    }

    /// The host called, for findings.
    pub(crate) fn host(&self) -> Option<&str> {
        self.uri.host()
    }

    /// The request of attempt `resend + 1`, carrying its [`ResendCount`] (for the attempt's
    /// CLIENT span: `http.request.resend_count`).
    pub(crate) fn into_request(self, resend: ResendCount) -> Request<B> {
        let mut request = Request::new(self.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        let extensions = request.extensions_mut();
        if let Some(deadline) = self.deadline {
            extensions.insert(deadline);
        }
        extensions.insert(resend);
        request
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_retry_sends_the_request_again_with_its_resend_count() {
        let deadline = RequestDeadline::after(Duration::from_secs(9)).expect("a deadline");
        let mut request = Request::new(String::from("body"));
        *request.method_mut() = Method::PUT;
        *request.uri_mut() = Uri::from_static("http://payment.internal/pay?x=1");
        *request.version_mut() = Version::HTTP_2;
        request
            .headers_mut()
            .insert("idempotency-key", http::HeaderValue::from_static("k-1"));
        request.extensions_mut().insert(deadline);
        // Other extensions are the first attempt's only.
        request.extensions_mut().insert(7_u8);

        let kept = Replay::of(&request, 1024).expect("a body within the limit");
        assert_eq!(kept.host(), Some("payment.internal"));
        assert_eq!(kept.deadline(), Some(deadline));
        let again = kept
            .copy(1024)
            .expect("a copy")
            .into_request(ResendCount(2));
        assert_eq!(again.method(), Method::PUT);
        assert_eq!(again.uri(), request.uri());
        assert_eq!(again.version(), Version::HTTP_2);
        assert_eq!(again.headers(), request.headers());
        assert_eq!(again.body(), "body");
        assert_eq!(again.extensions().get::<RequestDeadline>(), Some(&deadline));
        assert_eq!(
            again.extensions().get::<ResendCount>().map(|c| c.0),
            Some(2)
        );
        assert_eq!(again.extensions().get::<u8>(), None);
        // A body past the limit is not kept.
        assert!(Replay::of(&request, 3).is_none());
    }
}
