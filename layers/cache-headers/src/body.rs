//! The response body behind the cache-headers layer: the handler's body passed through, or a
//! body the layer buffered to compute its entity tag, or nothing (304, 412).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Passthrough { #[pin] body: B },
        // Trailers boxed: rare, and the body stays small as it moves.
        Buffered { data: Option<Bytes>, trailers: Option<Box<HeaderMap>> },
        Prefixed { data: Option<Bytes>, body: Pin<Box<B>> },
        // The body of a 304: none, and no length either (a 304's Content-Length would have to
        // be the 200's, so none is sent).
        NotModified,
        Failed { error: Option<B::Error> },
    }
}

pin_project! {
    /// The response body of [`CacheHeaders`](crate::CacheHeaders).
    pub struct CacheBody<B: Body> {
        #[pin]
        kind: Kind<B>,
    }
}

impl<B: Body> CacheBody<B> {
    /// `body` passed through unchanged: what a response the part did not buffer carries (and
    /// what a driver wraps the bodies of answers the part never saw in).
    pub fn passthrough(body: B) -> Self {
        Self {
            kind: Kind::Passthrough { body },
        }
    }

    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers: trailers.map(Box::new),
            },
        }
    }

    pub(crate) fn empty() -> Self {
        Self::buffered(Bytes::new(), None)
    }

    pub(crate) fn not_modified() -> Self {
        Self {
            kind: Kind::NotModified,
        }
    }

    /// `data` already read, then the rest of `body` as it streams.
    pub(crate) fn prefixed(data: Bytes, body: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed {
                data: Some(data),
                body,
            },
        }
    }

    /// The error the body failed with while being buffered, handed on at the first read.
    pub(crate) fn failed(error: B::Error) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|result| {
                    result.map(|frame| {
                        frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                    })
                })
            }),
            KindProj::Buffered { data, trailers } => Poll::Ready(
                data.take()
                    .map(|data| Ok(Frame::data(data)))
                    .or_else(|| trailers.take().map(|t| Ok(Frame::trailers(*t)))),
            ),
            KindProj::Prefixed { data, body } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                body.as_mut().poll_frame(cx).map(|frame| {
                    frame.map(|result| {
                        result.map(|frame| {
                            frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
                        })
                    })
                })
            }
            KindProj::Failed { error } => Poll::Ready(error.take().map(Err)),
            KindProj::NotModified => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Prefixed { data, body } => data.is_none() && body.is_end_stream(),
            Kind::Failed { error } => error.is_none(),
            Kind::NotModified => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Prefixed { .. } | Kind::Failed { .. } | Kind::NotModified => SizeHint::default(),
        }
    }
}

impl<B: Body> std::fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Buffered { .. } => "buffered",
            Kind::Prefixed { .. } => "prefixed",
            Kind::Failed { .. } => "failed",
            Kind::NotModified => "not_modified",
        };
        f.debug_struct("CacheBody").field("kind", &kind).finish()
    }
}
