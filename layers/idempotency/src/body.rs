//! The response body: the inner one (recorded when a key's request runs), or the layer's own
//! answer (a replay or a problem).

use vitals_core::body::{BodyEnd, BodyRecorder, RecordingBody};

use crate::part::Recorder;

/// The body of every response through the layer: the handler's (recorded while a key's
/// request runs), or the layer's own answer (a replay, a problem document).
pub type IdempotencyBody<B> = RecordingBody<B, Recorder>;

impl BodyRecorder for Recorder {
    fn on_data(&mut self, data: &bytes::Bytes) {
        Recorder::on_data(self, data);
    }

    fn on_end(self, end: BodyEnd) {
        Recorder::on_end(self, end);
    }
}
