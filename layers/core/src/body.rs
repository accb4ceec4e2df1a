//! A response body wrapper that reports, exactly once, how the body ended.
//!
//! "Done" for a Vitals layer means the last byte of the body was produced, not that the
//! response head was returned. [`CompletionBody`] wraps any [`http_body::Body`] and calls its
//! [`BodyObserver`] once, with a [`BodyEnd`]:
//!
//! - [`BodyEnd::Completed`] as soon as the inner body reports end of stream — checked after
//!   *every* frame, because hyper stops polling a body once `Content-Length` bytes were sent;
//! - [`BodyEnd::Errored`] when the inner body yields an error (or panics while polled);
//! - [`BodyEnd::Dropped`] when the body is dropped before its end (the client went away, or the
//!   server gave up on the connection).
//!
//! A body that is already at its end when dropped (an empty body that hyper never polled, say)
//! counts as completed.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use vitals_core::body::{BodyEnd, CompletionBody};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (tx, rx) = std::sync::mpsc::channel();
//! let body = CompletionBody::new(Full::new(Bytes::from_static(b"hi")), move |end: BodyEnd| {
//!     let _ = tx.send(end);
//! });
//! body.collect().await.unwrap();
//! assert_eq!(rx.recv().unwrap(), BodyEnd::Completed);
//! # }
//! ```

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BodyEnd {
    /// The inner body reached its end of stream: the last byte was produced.
    Completed,
    /// The inner body yielded an error.
    Errored,
    /// The body was dropped before its end: the client went away or the connection closed.
    Dropped,
}

impl BodyEnd {
    /// How the body ended with the frame `polled` (after which the body says whether it is
    /// at its end): `None` while it goes on. A rule for every wrapper that watches a body.
    pub fn after<D, E>(polled: &Option<Result<Frame<D>, E>>, is_end_stream: bool) -> Option<Self> {
        match polled {
            None => Some(Self::Completed),
            Some(Err(_)) => Some(Self::Errored),
            Some(Ok(_)) => is_end_stream.then_some(Self::Completed),
        }
    }

    /// How a body dropped before it said it ended did end: a poll still running means it
    /// panicked (`Errored`); hyper may drop a body it never needed to poll (empty, or exactly
    /// sized and fully written), and that body did end (`Completed`); else the client went
    /// away (`Dropped`).
    pub fn at_drop(polling: bool, is_end_stream: bool) -> Self {
        if polling {
            Self::Errored
        } else if is_end_stream {
            Self::Completed
        } else {
            Self::Dropped
        }
    }

    /// A short, stable name for logs: `completed`, `errored` or `dropped`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Errored => "errored",
            Self::Dropped => "dropped",
        }
    }
}

/// Receives the end of a [`CompletionBody`].
///
/// `on_end` is called exactly once. Closures `FnOnce(BodyEnd)` implement this trait; implement
/// it on a struct to keep per-request state without boxing, or to read trailers (gRPC sends its
/// status there).
pub trait BodyObserver {
    /// Called for each trailers frame, before the frame is handed on.
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        let _ = trailers;
    }

    /// Called exactly once, when the body ended.
    fn on_end(self, end: BodyEnd);
}

impl<F> BodyObserver for F
where
    F: FnOnce(BodyEnd),
{
    fn on_end(self, end: BodyEnd) {
        self(end);
    }
}

pin_project! {
    /// A body that tells its [`BodyObserver`] exactly once how it ended.
    ///
    /// Data, trailers, errors and size hints pass through unchanged. See the
    /// [module documentation](self) for what counts as each ending.
    pub struct CompletionBody<B, O>
    where
        B: Body,
        O: BodyObserver,
    {
        #[pin]
        inner: B,
        observer: Option<O>,
        // Set while the inner body is polled: still set at drop means its poll panicked.
        polling: bool,
    }

    impl<B, O> PinnedDrop for CompletionBody<B, O>
    where
        B: Body,
        O: BodyObserver,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(observer) = this.observer.take() {
                observer.on_end(BodyEnd::at_drop(*this.polling, this.inner.is_end_stream()));
            }
        }
    }
}

impl<B, O> CompletionBody<B, O>
where
    B: Body,
    O: BodyObserver,
{
    /// Wraps `inner`, reporting its end to `observer`.
    pub fn new(inner: B, observer: O) -> Self {
        Self {
            inner,
            observer: Some(observer),
            polling: false,
        }
    }

    /// Whether the observer was already told how the body ended.
    pub fn has_ended(&self) -> bool {
        self.observer.is_none()
    }
}

impl<B, O> std::fmt::Debug for CompletionBody<B, O>
where
    B: Body + std::fmt::Debug,
    O: BodyObserver,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionBody")
            .field("inner", &self.inner)
            .field("ended", &self.has_ended())
            .finish_non_exhaustive()
    }
}

impl<B, O> Body for CompletionBody<B, O>
where
    B: Body,
    O: BodyObserver,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        *this.polling = true;
        let polled = this.inner.as_mut().poll_frame(cx);
        *this.polling = false;
        let polled = ready!(polled);
        if let (Some(Ok(frame)), Some(observer)) = (&polled, this.observer.as_mut())
            && let Some(trailers) = frame.trailers_ref()
        {
            observer.on_trailers(trailers);
        }
        if let Some(end) = BodyEnd::after(&polled, this.inner.is_end_stream())
            && let Some(observer) = this.observer.take()
        {
            observer.on_end(end);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B>
    where
        B: Body,
    {
        Inner { #[pin] body: B },
        Own { #[pin] body: Full<B::Data> },
    }
}

pin_project! {
    /// A layer's response body: the inner service's, or a small one the layer made itself (a
    /// 503 from a limiter, a failure report). Data and error types stay the inner body's, so
    /// the layer keeps the inner service's types.
    pub struct EitherBody<B>
    where
        B: Body,
    {
        #[pin]
        kind: Kind<B>,
    }
}

impl<B: Body> EitherBody<B> {
    /// The inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body the layer made.
    pub fn own(body: Full<B::Data>) -> Self {
        Self {
            kind: Kind::Own { body },
        }
    }

    /// Whether this is a body the layer made.
    pub fn is_own(&self) -> bool {
        matches!(self.kind, Kind::Own { .. })
    }
}

impl<B> Body for EitherBody<B>
where
    B: Body,
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Own { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Own { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Own { body } => body.size_hint(),
        }
    }
}

impl<B: Body> std::fmt::Debug for EitherBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_own() {
            "EitherBody::Own"
        } else {
            "EitherBody::Inner"
        })
    }
}

/// Appends `data` (a frame of any `Buf` type, in up to 16 pieces) to `kept`, unless `kept`
/// would grow past `limit` bytes: `false` then, and `kept` is left as it was. For a recorder
/// driven by a stack whose body data is not `Bytes`.
pub fn keep_within(kept: &mut bytes::BytesMut, data: &impl bytes::Buf, limit: usize) -> bool {
    let mut pieces = [std::io::IoSlice::new(&[]); 16];
    let filled = data.chunks_vectored(&mut pieces);
    let gathered: usize = pieces[..filled].iter().map(|piece| piece.len()).sum();
    if gathered != data.remaining() || kept.len().saturating_add(gathered) > limit {
        return false;
    }
    for piece in &pieces[..filled] {
        kept.extend_from_slice(piece);
    }
    true
}

/// Keeps a copy of a response body as it passes, for a layer that stores responses (a cache,
/// an idempotency record), and learns how the body ended.
pub trait BodyRecorder {
    /// A data frame went by.
    fn on_data(&mut self, data: &bytes::Bytes);
    /// The body ended (exactly once: completed, failed, or dropped before its end).
    fn on_end(self, end: BodyEnd);
}

pin_project! {
    /// A layer's response body that may be recorded: the inner service's (with its recorder,
    /// when the layer keeps it), or one the layer made from what it had stored.
    pub struct RecordingBody<B, R>
    where
        B: Body,
        R: BodyRecorder,
    {
        #[pin]
        kind: RecordingKind<B, R>,
    }
}

pin_project! {
    #[project = RecordingProj]
    enum RecordingKind<B, R>
    where
        B: Body,
        R: BodyRecorder,
    {
        Inner {
            #[pin]
            body: B,
            // Boxed: most responses have none, and the body stays small as it moves.
            recorder: Option<Box<R>>,
        },
        Own {
            #[pin]
            body: Full<bytes::Bytes>,
        },
    }

    impl<B, R> PinnedDrop for RecordingKind<B, R>
    where
        B: Body,
        R: BodyRecorder,
    {
        fn drop(this: Pin<&mut Self>) {
            if let RecordingProj::Inner { body, recorder } = this.project()
                && let Some(recorder) = recorder.take()
            {
                recorder.on_end(BodyEnd::at_drop(false, body.is_end_stream()));
            }
        }
    }
}

impl<B: Body, R: BodyRecorder> RecordingBody<B, R> {
    /// The inner service's body, recorded when `recorder` is `Some` (boxed: most responses
    /// have none, and the body stays small as it moves).
    pub fn inner(body: B, recorder: Option<Box<R>>) -> Self {
        Self {
            kind: RecordingKind::Inner { body, recorder },
        }
    }

    /// A body the layer made.
    pub fn own(body: bytes::Bytes) -> Self {
        Self {
            kind: RecordingKind::Own {
                body: Full::new(body),
            },
        }
    }
}

impl<B, R> Body for RecordingBody<B, R>
where
    B: Body<Data = bytes::Bytes>,
    R: BodyRecorder,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, B::Error>>> {
        match self.project().kind.project() {
            RecordingProj::Own { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(|never| match never {}))),
            RecordingProj::Inner { mut body, recorder } => {
                let polled = ready!(body.as_mut().poll_frame(cx));
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
            RecordingKind::Inner { body, .. } => body.is_end_stream(),
            RecordingKind::Own { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RecordingKind::Inner { body, .. } => body.size_hint(),
            RecordingKind::Own { body } => body.size_hint(),
        }
    }
}

impl<B: Body, R: BodyRecorder> std::fmt::Debug for RecordingBody<B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.kind {
            RecordingKind::Inner { recorder, .. } if recorder.is_some() => {
                "RecordingBody::Recorded"
            }
            RecordingKind::Inner { .. } => "RecordingBody::Inner",
            RecordingKind::Own { .. } => "RecordingBody::Own",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderValue;
    use http_body_util::{BodyExt, Empty, Full};
    use std::sync::{Arc, Mutex};

    /// Records every call the body makes, to prove "exactly once".
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    impl Log {
        fn entries(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl BodyObserver for Log {
        fn on_trailers(&mut self, trailers: &HeaderMap) {
            let status = trailers
                .get("grpc-status")
                .map_or("-", |v| v.to_str().unwrap());
            self.0.lock().unwrap().push(format!("trailers:{status}"));
        }

        fn on_end(self, end: BodyEnd) {
            self.0.lock().unwrap().push(end.as_str().to_owned());
        }
    }

    /// A chunked body: frames from a queue, end of stream known only when the queue is empty
    /// and polled (like a streaming body with no size).
    struct Chunks(std::collections::VecDeque<Result<Frame<Bytes>, &'static str>>);

    fn chunks(frames: impl IntoIterator<Item = Result<Frame<Bytes>, &'static str>>) -> Chunks {
        Chunks(frames.into_iter().collect())
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            Poll::Ready(self.0.pop_front())
        }
    }

    #[tokio::test]
    async fn content_length_body_completes_with_its_last_frame() {
        let log = Log::default();
        let mut body = CompletionBody::new(Full::new(Bytes::from_static(b"12345")), log.clone());
        assert_eq!(body.size_hint().exact(), Some(5));

        // Poll exactly one frame, the way hyper does for a sized body, and never poll again.
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"12345"));
        assert_eq!(log.entries(), ["completed"]);
        assert!(body.has_ended());

        drop(body);
        assert_eq!(
            log.entries(),
            ["completed"],
            "drop after the end must not report again"
        );
    }

    #[tokio::test]
    async fn chunked_stream_completes_at_end_of_stream() {
        let log = Log::default();
        let frames = (0..3).map(|i| Ok(Frame::data(Bytes::from(vec![b'a'; i + 1]))));
        let body = CompletionBody::new(chunks(frames), log.clone());

        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"aaaaaa");
        assert_eq!(log.entries(), ["completed"]);
    }

    #[tokio::test]
    async fn trailers_are_observed_before_completion() {
        let log = Log::default();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("13"));
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"msg"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = CompletionBody::new(chunks(frames), log.clone());

        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "13");
        assert_eq!(log.entries(), ["trailers:13", "completed"]);
    }

    #[tokio::test]
    async fn body_error_reports_errored_once() {
        let log = Log::default();
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"partial"))),
            Err("disk on fire"),
            Ok(Frame::data(Bytes::from_static(b"never"))),
        ];
        let mut body = CompletionBody::new(chunks(frames), log.clone());

        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(body.frame().await.unwrap().unwrap_err(), "disk on fire");
        assert_eq!(log.entries(), ["errored"]);

        // Polling on after the error, then dropping, reports nothing more.
        let _ = body.frame().await;
        drop(body);
        assert_eq!(log.entries(), ["errored"]);
    }

    #[tokio::test]
    async fn early_drop_reports_dropped() {
        let log = Log::default();
        let frames = (0..10).map(|_| Ok(Frame::data(Bytes::from_static(b"x"))));
        let mut body = CompletionBody::new(chunks(frames), log.clone());

        body.frame().await.unwrap().unwrap();
        assert!(log.entries().is_empty());
        drop(body);
        assert_eq!(log.entries(), ["dropped"]);
    }

    /// A body whose poll panics, like a buggy stream.
    struct Explodes;

    impl Body for Explodes {
        type Data = Bytes;
        type Error = &'static str;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
            panic!("stream bug")
        }
    }

    #[test]
    fn a_panicking_body_poll_reports_errored_when_dropped() {
        let log = Log::default();
        let mut body = Box::pin(CompletionBody::new(Explodes, log.clone()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = body.as_mut().poll_frame(&mut cx);
        }));
        assert!(caught.is_err());
        assert!(log.entries().is_empty());
        drop(body);
        assert_eq!(log.entries(), ["errored"]);
    }

    #[test]
    fn unpolled_empty_body_counts_as_completed_on_drop() {
        let log = Log::default();
        let body = CompletionBody::new(Empty::<Bytes>::new(), log.clone());
        assert!(body.is_end_stream());
        drop(body);
        assert_eq!(log.entries(), ["completed"]);
    }

    #[tokio::test]
    async fn either_body_carries_the_inner_or_its_own_body() {
        let inner: EitherBody<Chunks> =
            EitherBody::inner(chunks([Ok(Frame::data(Bytes::from_static(b"handler")))]));
        assert!(!inner.is_own());
        assert_eq!(&inner.collect().await.unwrap().to_bytes()[..], b"handler");

        let own: EitherBody<Chunks> = EitherBody::own(Full::new(Bytes::from_static(b"{}")));
        assert!(own.is_own());
        assert_eq!(own.size_hint().exact(), Some(2));
        assert_eq!(&own.collect().await.unwrap().to_bytes()[..], b"{}");
    }

    #[test]
    fn closures_are_observers() {
        let (tx, rx) = std::sync::mpsc::channel();
        let body = CompletionBody::new(Full::new(Bytes::from_static(b"x")), move |end| {
            tx.send(end).unwrap();
        });
        drop(body);
        assert_eq!(rx.try_recv().unwrap(), BodyEnd::Dropped);
        assert!(rx.try_recv().is_err());
    }
}
