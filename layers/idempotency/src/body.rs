//! The response body: the inner one (recorded when a key's request runs), or the layer's own
//! answer (a replay or a problem).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use vitals_core::body::BodyEnd;

use crate::part::Recorder;

pin_project! {
    /// The body of every response through the layer: the handler's (recorded while a key's
    /// request runs), or the layer's own answer (a replay, a problem document).
    pub struct IdempotencyBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProjection]
    enum Kind<B>
    where
        B: Body,
    {
        Inner {
            #[pin]
            body: B,
            // Boxed: most responses have none, and the body stays small as it moves.
            recorder: Option<Box<Recorder>>,
        },
        Own {
            #[pin]
            body: Full<Bytes>,
        },
    }

    impl<B> PinnedDrop for Kind<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            if let KindProjection::Inner { body, recorder } = this.project()
                && let Some(recorder) = recorder.take()
            {
                recorder.on_end(BodyEnd::at_drop(false, body.is_end_stream()));
            }
        }
    }
}

impl<B: Body> IdempotencyBody<B> {
    pub(crate) fn inner(body: B, recorder: Option<Recorder>) -> Self {
        Self {
            kind: Kind::Inner {
                body,
                recorder: recorder.map(Box::new),
            },
        }
    }

    pub(crate) fn own(body: Bytes) -> Self {
        Self {
            kind: Kind::Own {
                body: Full::new(body),
            },
        }
    }
}

impl<B> Body for IdempotencyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProjection::Own { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(|never| match never {}))),
            KindProjection::Inner { mut body, recorder } => {
                let polled = std::task::ready!(body.as_mut().poll_frame(cx));
                if let Some(active) = recorder.as_mut()
                    && let Some(Ok(frame)) = &polled
                    && let Some(data) = frame.data_ref()
                {
                    active.on_data(data);
                }
                if recorder.is_some()
                    && let Some(end) = BodyEnd::after(&polled, body.is_end_stream())
                    && let Some(done) = recorder.take()
                {
                    done.on_end(end);
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Own { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Own { body } => body.size_hint(),
        }
    }
}
