//! Test helpers: capture finished-request reports and `vitals_timing` log events.
//!
//! [`Events::capture`] installs a per-thread subscriber. tracing caches each callsite's
//! interest process-wide, computed when the callsite is first hit: a test that fires one of
//! the layer's `warn!`/`info!` callsites on a thread with no subscriber, while another test is
//! installing its capture, can cache "never" for that callsite, and the capturing test then
//! sees nothing. So a test binary either captures in every test, for the whole test
//! (`blocking.rs`, `events.rs`), or in none (`timing.rs`, `grpc.rs`).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use vitals_core::outcome::{GrpcStatus, Outcome};
use vitals_timing::{RequestTimingLayer, TimingReport};

/// An owned copy of a [`TimingReport`].
#[derive(Clone, Debug)]
pub struct Record {
    pub method: String,
    pub route: String,
    pub status: Option<u16>,
    pub grpc_status: Option<GrpcStatus>,
    pub outcome: Outcome,
    pub head: Option<Duration>,
    pub total: Duration,
    pub busy: Option<Duration>,
    pub longest_poll: Option<Duration>,
    pub polls: u32,
    /// The threshold the layer applied to this request's route.
    pub blocking_threshold: Option<Duration>,
    /// What the layer decided: a single poll blocked the executor.
    pub blocked: bool,
}

/// Collects every report the layer makes.
#[derive(Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<Record>>>);

impl Reports {
    /// `layer` with a hook that records into `self`.
    pub fn attach(&self, layer: RequestTimingLayer) -> RequestTimingLayer {
        let records = Arc::clone(&self.0);
        layer.on_finish(move |report: &TimingReport<'_>| {
            records.lock().unwrap().push(Record {
                method: report.method.to_string(),
                route: report.route.to_string(),
                status: report.status.map(|s| s.as_u16()),
                grpc_status: report.grpc_status,
                outcome: report.outcome,
                head: report.head,
                total: report.total,
                busy: report.busy,
                longest_poll: report.longest_poll,
                polls: report.polls,
                blocking_threshold: report.blocking_threshold,
                blocked: report.blocked_executor(),
            });
        })
    }

    pub fn all(&self) -> Vec<Record> {
        self.0.lock().unwrap().clone()
    }

    /// The only report so far.
    pub fn single(&self) -> Record {
        let all = self.all();
        assert_eq!(all.len(), 1, "expected exactly one report: {all:#?}");
        all.into_iter().next().unwrap()
    }

    /// Waits (up to 5 s) until `n` reports arrived; for reports made on server tasks.
    pub async fn wait_for(&self, n: usize) -> Vec<Record> {
        for _ in 0..500 {
            if self.0.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.all()
    }
}

/// `duration` in milliseconds rounded to the microsecond, as the layer writes log fields.
pub fn logged_ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// One captured log event.
#[derive(Clone, Debug)]
pub struct Event {
    pub level: tracing::Level,
    pub message: String,
    pub fields: BTreeMap<String, String>,
}

impl Event {
    /// A numeric field, parsed.
    pub fn number(&self, field: &str) -> f64 {
        let value = self
            .fields
            .get(field)
            .unwrap_or_else(|| panic!("{field} missing: {self:?}"));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{field} is not a number: {self:?}"))
    }
}

/// Captures `vitals_timing` events on the current thread while the guard lives.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::registry().with(self.clone());
        tracing::subscriber::set_default(subscriber)
    }

    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    pub fn with_message(&self, message: &str) -> Vec<Event> {
        self.all()
            .into_iter()
            .filter(|e| e.message.starts_with(message))
            .collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "vitals_timing" {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let message = visitor.0.remove("message").unwrap_or_default();
        self.0.lock().unwrap().push(Event {
            level: *event.metadata().level(),
            message,
            fields: visitor.0,
        });
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}
