//! Request bodies a retry can send again.

use bytes::Bytes;
use http_body::Body;
use http_body_util::{Empty, Full};

/// A request body that can be copied for another attempt. Only bodies already in memory are:
/// a streamed body is sent once, never retried. `limit` is the most bytes a copy may hold
/// ([`RetryLayer::with_max_body`](super::RetryLayer::with_max_body)).
pub trait ReplayBody: Sized {
    /// A copy to send again, or `None` when this body cannot be (or is larger than `limit`).
    fn replay(&self, limit: usize) -> Option<Self>;
}

fn within<B: Body>(body: &B, limit: usize) -> bool {
    body.size_hint()
        .exact()
        .is_some_and(|len| usize::try_from(len).is_ok_and(|len| len <= limit))
}

impl ReplayBody for Full<Bytes> {
    fn replay(&self, limit: usize) -> Option<Self> {
        within(self, limit).then(|| self.clone())
    }
}

impl ReplayBody for Empty<Bytes> {
    fn replay(&self, _: usize) -> Option<Self> {
        Some(Self::new())
    }
}

impl ReplayBody for () {
    fn replay(&self, _: usize) -> Option<Self> {
        Some(())
    }
}

impl ReplayBody for String {
    fn replay(&self, limit: usize) -> Option<Self> {
        (self.len() <= limit).then(|| self.clone())
    }
}

impl ReplayBody for Bytes {
    fn replay(&self, limit: usize) -> Option<Self> {
        (self.len() <= limit).then(|| self.clone())
    }
}

impl ReplayBody for Vec<u8> {
    fn replay(&self, limit: usize) -> Option<Self> {
        (self.len() <= limit).then(|| self.clone())
    }
}
