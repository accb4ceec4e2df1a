//! The shop's timing layer over real TCP: `/report/blocking` is reported as blocking the
//! executor and `/report` is not; `/slow` past 1 s is reported as slow.
//!
//! One test in this binary on purpose: it installs a global tracing subscriber.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use vitals_integration_tests::TestShop;

/// `(message, http.route)` of every `vitals_timing` event.
#[derive(Clone, Default)]
struct TimingEvents(Arc<Mutex<Vec<(String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TimingEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "vitals_timing" {
            return;
        }
        let mut fields = MessageAndRoute::default();
        event.record(&mut fields);
        self.0
            .lock()
            .expect("lock")
            .push((fields.message, fields.route));
    }
}

#[derive(Default)]
struct MessageAndRoute {
    message: String,
    route: String,
}

impl Visit for MessageAndRoute {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "http.route" {
            value.clone_into(&mut self.route);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "http.route" => self.route = format!("{value:?}"),
            _ => {}
        }
    }
}

impl TimingEvents {
    /// The events logged while `path` was served (the body read to its end).
    async fn during(&self, shop: &TestShop, path: &str) -> Vec<(String, String)> {
        let before = self.0.lock().expect("lock").len();
        let response = shop.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.bytes().await.expect("body");
        // The report is made when the server has written the last byte; give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.0.lock().expect("lock")[before..].to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_slow_requests_are_reported() {
    let events = TimingEvents::default();
    tracing_subscriber::registry().with(events.clone()).init();
    let shop = TestShop::start_sqlite().await;

    let blocking = events.during(&shop, "/report/blocking").await;
    assert_eq!(blocking.len(), 1, "{blocking:?}");
    assert!(
        blocking[0]
            .0
            .starts_with("handler blocked the async executor"),
        "{blocking:?}"
    );
    assert_eq!(blocking[0].1, "/report/blocking");

    let offloaded = events.during(&shop, "/report").await;
    assert!(
        offloaded.is_empty(),
        "spawn_blocking keeps the executor free: {offloaded:?}"
    );

    let quick = events.during(&shop, "/slow?ms=10").await;
    assert!(quick.is_empty(), "{quick:?}");
    let slow = events.during(&shop, "/slow?ms=1100").await;
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0], ("slow request".to_owned(), "/slow".to_owned()));

    shop.shutdown().await;
}
