//! Captures log events, to check what the layers report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// One captured event.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// Its message.
    pub message: String,
    /// Its other fields, as text.
    pub fields: BTreeMap<String, String>,
}

/// Every event whose target starts with `vitals_`, in order.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<Captured>>>);

impl EventLog {
    /// Installs the global subscriber: the query event layer (as the shop's `main` does) and
    /// this log. One per test binary: keep such tests in a file of their own.
    pub fn install() -> Self {
        let log = Self::default();
        tracing_subscriber::registry()
            .with(vitals_queries::query_events())
            .with(log.clone())
            .init();
        log
    }

    /// How many events were captured so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events captured since `start` (a [`Self::len`] taken earlier).
    pub fn since(&self, start: usize) -> Vec<Captured> {
        self.lock()
            .get(start..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Captured>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EventLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let target = event.metadata().target();
        if !target.starts_with("vitals_") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        self.lock().push(Captured {
            target: target.to_owned(),
            level: *event.metadata().level(),
            message,
            fields: fields.0,
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
