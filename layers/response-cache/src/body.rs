//! The response body: the handler's (recorded while its response is being stored), or one
//! answered from the store.

use vitals_core::body::{BodyEnd, BodyRecorder, RecordingBody};

use crate::part::Recorder;

/// The body of every response through [`ResponseCache`](crate::ResponseCache).
pub type ResponseCacheBody<B> = RecordingBody<B, Recorder>;

impl BodyRecorder for Recorder {
    fn on_data(&mut self, data: &bytes::Bytes) {
        self.on_buf(data);
    }

    fn on_end(self, end: BodyEnd) {
        self.end(end);
    }
}
