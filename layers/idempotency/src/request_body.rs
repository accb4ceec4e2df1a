//! Reading the body of a request with a key: the fingerprint covers it, and the handler gets
//! it again from the bytes read.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use http_body::Body;

use crate::problem::Problem;

/// Reads `body` into `read`, at most `limit` bytes: a body that says it is larger is refused
/// before a byte is read; one that says its size is read into one buffer of that size.
pub fn read_body<B: Body>(
    mut body: Pin<&mut B>,
    read: &mut BytesMut,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Problem>> {
    let hint = body.size_hint();
    if usize::try_from(hint.lower()).unwrap_or(usize::MAX) > limit {
        return Poll::Ready(Err(Problem::BodyTooLarge { max: limit }));
    }
    if read.is_empty()
        && let Some(exact) = hint.exact().and_then(|n| usize::try_from(n).ok())
    {
        read.reserve(exact);
    }
    loop {
        match ready!(body.as_mut().poll_frame(cx)) {
            None => return Poll::Ready(Ok(())),
            Some(Err(_)) => return Poll::Ready(Err(Problem::UnreadableBody)),
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    if read.len() + data.remaining() > limit {
                        return Poll::Ready(Err(Problem::BodyTooLarge { max: limit }));
                    }
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let len = chunk.len();
                        read.extend_from_slice(chunk);
                        data.advance(len);
                    }
                }
                if body.is_end_stream() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
