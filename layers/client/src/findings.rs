//! What the client layers tell the dashboard: findings of kind `downstream`, each kind of event
//! at most once per interval per layer, so an outage is one line, not one per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vitals_core::findings::{Finding, Findings};

/// How often a layer reports the same kind of event at most.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// A layer's findings sink, with when it last reported: one reference count to clone, none
/// without a sink.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reporter {
    sink: Option<Arc<Sink>>,
}

#[derive(Debug)]
struct Sink {
    findings: Findings,
    last_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

impl Reporter {
    pub(crate) fn new(sink: Findings) -> Self {
        Self {
            sink: Some(Arc::new(Sink {
                findings: sink,
                last_ms: AtomicU64::new(0),
            })),
        }
    }

    /// Pushes the finding (a state change: every one counts).
    pub(crate) fn always(&self, downstream: &str, event: &'static str, detail: String) {
        if let Some(sink) = &self.sink {
            sink.findings.push(Finding::Downstream {
                downstream: downstream.to_owned(),
                event,
                detail,
            });
        }
    }

    /// Pushes the finding unless this layer reported one within [`INTERVAL`]; `detail` is only
    /// made when it is pushed.
    pub(crate) fn at_most_every_interval(
        &self,
        downstream: &str,
        event: &'static str,
        detail: impl FnOnce() -> String,
    ) {
        let Some(sink) = &self.sink else {
            return;
        };
        let now = now_ms();
        let last = sink.last_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < interval
            || sink
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.always(downstream, event, detail());
    }
}
