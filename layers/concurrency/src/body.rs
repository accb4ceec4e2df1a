//! The response body of the limit and timeout layers: the handler's body, or the small body of
//! a response the layer answered itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use vitals_core::body::{BodyEnd, BodyObserver, CompletionBody, EitherBody};
use vitals_core::outcome::OutcomeHint;

use crate::limiter::Permit;

/// Releases a permit when the body ends: the last byte was produced, the body failed, or the
/// client went away. Only the first is a completed request whose latency may feed an adaptive
/// limit; the others give the permit back without a sample.
#[derive(Debug)]
pub(crate) struct ReleaseOnEnd(pub(crate) Option<Permit>);

impl BodyObserver for ReleaseOnEnd {
    fn on_end(mut self, end: BodyEnd) {
        if let Some(permit) = self.0.take() {
            permit.on_end(end);
        }
    }
}

pin_project! {
    /// The handler's body (holding the concurrency permit, if any, to its end), or the body of a
    /// response the layer made itself (503, 504).
    pub struct LimitBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: CompletionBody<EitherBody<B>, ReleaseOnEnd>,
    }
}

impl<B: Body> LimitBody<B> {
    pub(crate) fn inner(body: B, permit: Option<Permit>) -> Self {
        Self {
            inner: CompletionBody::new(EitherBody::inner(body), ReleaseOnEnd(permit)),
        }
    }

    pub(crate) fn own(body: Full<B::Data>) -> Self {
        Self {
            inner: CompletionBody::new(EitherBody::own(body), ReleaseOnEnd(None)),
        }
    }
}

impl<B> Body for LimitBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> std::fmt::Debug for LimitBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitBody")
            .field("ended", &self.inner.has_ended())
            .finish_non_exhaustive()
    }
}

/// A response the layer answers with instead of the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerResponse {
    status: StatusCode,
    content_type: HeaderValue,
    body: Bytes,
}

impl LayerResponse {
    /// `{"error": message}` as JSON.
    pub fn json(status: StatusCode, message: &str) -> Self {
        let mut body = String::with_capacity(message.len() + 12);
        body.push_str(r#"{"error":""#);
        for c in message.chars() {
            match c {
                '"' => body.push_str("\\\""),
                '\\' => body.push_str("\\\\"),
                c if c.is_control() => {}
                c => body.push(c),
            }
        }
        body.push_str("\"}");
        Self {
            status,
            content_type: HeaderValue::from_static("application/json"),
            body: Bytes::from(body),
        }
    }

    /// `message` as plain text.
    pub fn plain(status: StatusCode, message: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
            body: message.into(),
        }
    }

    /// Any body with its content type.
    pub fn custom(status: StatusCode, content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn to_response<B>(&self, hint: Option<OutcomeHint>) -> Response<LimitBody<B>>
    where
        B: Body,
        B::Data: From<Bytes>,
    {
        self.to_full(hint).map(LimitBody::own)
    }

    /// The response with a body of any data type: for the layers here and for drivers of the
    /// parts (the fused `vitals` service).
    pub fn to_full<D: From<Bytes> + Buf>(&self, hint: Option<OutcomeHint>) -> Response<Full<D>> {
        let mut response = Response::new(Full::new(D::from(self.body.clone())));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        // A refusal or a timeout says nothing about the resource: no cache may keep it, even
        // when the layers that set caching headers sit inside this one.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(hint) = hint {
            hint.mark(&mut response);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_messages_are_escaped() {
        let response = LayerResponse::json(StatusCode::SERVICE_UNAVAILABLE, "say \"no\"\\\n");
        assert_eq!(&response.body[..], br#"{"error":"say \"no\"\\"}"#);
    }
}
