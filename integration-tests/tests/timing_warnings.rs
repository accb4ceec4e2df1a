//! The shop's timing layer over real TCP: `/report/blocking` is reported as blocking the
//! executor, `/slow` past 1 s is reported as slow, and every warning follows what the layer
//! measured for its request.
//!
//! The machine running this may be busy: a poll of `/report` (its work in `spawn_blocking`)
//! or of `/slow?ms=10` that was preempted past the 10 ms threshold is rightly reported. So the
//! requests that should not be reported are checked for the layer's decision against its own
//! measurement — a warning only with a poll or a total past the threshold — not for silence.
//!
//! One test in this binary on purpose: it installs a global tracing subscriber.

use vitals_integration_tests::events::{Captured, EventLog};
use vitals_integration_tests::{TestShop, eventually};

const BLOCKED: &str = "handler blocked the async executor";
const SLOW: &str = "slow request";

/// `GET path` with `x-request-id: id`, the body read to its end. The layer reports a request
/// when its body ends; the id tells its events from the others'.
async fn get_to_the_end(shop: &TestShop, path: &str, id: &str) {
    let response = shop
        .client()
        .get(shop.url(path))
        .header("x-request-id", id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(response.status(), 200, "GET {path}");
    assert_eq!(response.headers()["x-request-id"], id, "GET {path}");
    response.bytes().await.expect("body");
}

/// The `vitals_timing` events of request `id` whose message starts with `message`.
fn events_of(log: &EventLog, id: &str, message: &str) -> Vec<Captured> {
    log.since(0)
        .into_iter()
        .filter(|e| {
            e.target == "vitals_timing"
                && e.message.starts_with(message)
                && e.fields.get("request_id").map(String::as_str) == Some(id)
        })
        .collect()
}

fn number(event: &Captured, field: &str) -> f64 {
    event
        .fields
        .get(field)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no number in {field}: {event:#?}"))
}

/// Request `id`'s warnings follow what the layer measured for it: at most one of each kind, a
/// blocking one only with a poll at or past its threshold, a slow one only with a total at or
/// past its threshold. Returns them, blocking then slow.
fn warnings_follow_the_measurement(log: &EventLog, id: &str) -> (Vec<Captured>, Vec<Captured>) {
    let blocking = events_of(log, id, BLOCKED);
    let slow = events_of(log, id, SLOW);
    assert!(blocking.len() <= 1, "{id}: {blocking:#?}");
    assert!(slow.len() <= 1, "{id}: {slow:#?}");
    for warning in &blocking {
        assert_eq!(warning.level, tracing::Level::WARN);
        assert!(
            number(warning, "longest_poll_ms") >= number(warning, "threshold_ms"),
            "{id}: a blocking warning without a poll past the threshold: {warning:#?}"
        );
    }
    for warning in &slow {
        assert_eq!(warning.level, tracing::Level::WARN);
        assert!(
            number(warning, "total_ms") >= number(warning, "threshold_ms"),
            "{id}: a slow warning without a total past the threshold: {warning:#?}"
        );
    }
    (blocking, slow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_slow_requests_are_reported_as_measured() {
    let log = EventLog::install();
    let shop = TestShop::start_sqlite().await;

    get_to_the_end(&shop, "/report/blocking", "timing-blocking").await;
    let rounds = shop.shop().workload().rounds();
    eventually(
        &format!("the blocking warning of /report/blocking ({rounds} rounds of work)"),
        || !events_of(&log, "timing-blocking", BLOCKED).is_empty(),
    )
    .await;
    get_to_the_end(&shop, "/report", "timing-offloaded").await;
    get_to_the_end(&shop, "/slow?ms=10", "timing-quick").await;
    get_to_the_end(&shop, "/slow?ms=1100", "timing-slow").await;
    eventually("the slow-request warning of /slow?ms=1100", || {
        !events_of(&log, "timing-slow", SLOW).is_empty()
    })
    .await;

    let (blocking, _) = warnings_follow_the_measurement(&log, "timing-blocking");
    assert_eq!(blocking.len(), 1, "{blocking:#?}");
    assert_eq!(blocking[0].fields["http.route"], "/report/blocking");
    assert_eq!(blocking[0].fields["threshold_ms"], "10.0");

    // Work moved to spawn_blocking, and a handler that only sleeps: reported only if a poll
    // really did cross the threshold (a preemption on a busy machine).
    for id in ["timing-offloaded", "timing-quick"] {
        warnings_follow_the_measurement(&log, id);
    }

    let (_, slow) = warnings_follow_the_measurement(&log, "timing-slow");
    assert_eq!(slow.len(), 1, "{slow:#?}");
    assert_eq!(slow[0].fields["http.route"], "/slow");
    assert_eq!(slow[0].fields["threshold_ms"], "1000.0");
    assert!(number(&slow[0], "total_ms") >= 1100.0, "{slow:#?}");

    shop.shutdown().await;
}
