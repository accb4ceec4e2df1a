//! The shop's timing layer over real TCP: `/report/blocking` is reported as blocking the
//! executor and `/report` is not; `/slow` past 1 s is reported as slow.
//!
//! One test in this binary on purpose: it installs a global tracing subscriber.

use std::time::Duration;

use vitals_integration_tests::TestShop;
use vitals_integration_tests::events::{Captured, EventLog};

/// The `vitals_timing` events logged while `path` was served (the body read to its end).
async fn timing_events(log: &EventLog, shop: &TestShop, path: &str) -> Vec<Captured> {
    let start = log.len();
    let response = shop.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.bytes().await.expect("body");
    // The report is made when the server has written the last byte; give it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    log.since(start)
        .into_iter()
        .filter(|e| e.target == "vitals_timing")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_slow_requests_are_reported() {
    let log = EventLog::install();
    let shop = TestShop::start_sqlite().await;

    let blocking = timing_events(&log, &shop, "/report/blocking").await;
    assert_eq!(blocking.len(), 1, "{blocking:#?}");
    assert!(
        blocking[0]
            .message
            .starts_with("handler blocked the async executor")
    );
    assert_eq!(blocking[0].fields["http.route"], "/report/blocking");

    let offloaded = timing_events(&log, &shop, "/report").await;
    assert!(
        offloaded.is_empty(),
        "spawn_blocking keeps the executor free: {offloaded:#?}"
    );

    let quick = timing_events(&log, &shop, "/slow?ms=10").await;
    assert!(quick.is_empty(), "{quick:#?}");
    let slow = timing_events(&log, &shop, "/slow?ms=1100").await;
    assert_eq!(slow.len(), 1, "{slow:#?}");
    assert_eq!(slow[0].message, "slow request");
    assert_eq!(slow[0].fields["http.route"], "/slow");

    shop.shutdown().await;
}
