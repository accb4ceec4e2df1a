//! Blocking-poll warnings: a handler poll that held the executor past the threshold is
//! reported once, with the poll the layer measured; work moved to `spawn_blocking` is not
//! counted as a poll.
//!
//! The assertions compare what the layer decided with what it measured, never with how fast
//! this machine is: a preempted poll may legitimately cross the threshold on a busy machine.
//!
//! Every test in this binary captures events for its whole length: see `common` for why tests
//! that fire the layer's callsites without a subscriber must not share a binary with these.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use common::{Event, Events, Record, Reports, logged_ms};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vitals_core::findings::{Finding, Findings};
use vitals_timing::{DEFAULT_BLOCKING_THRESHOLD, RequestTimingLayer, RouteTiming};

const BLOCKED: &str = "handler blocked the async executor";

async fn get_to_the_end(app: &Router, path: &str) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
}

/// The blocking warnings logged for `route`.
fn blocking_warnings(events: &Events, route: &str) -> Vec<Event> {
    events
        .with_message(BLOCKED)
        .into_iter()
        .filter(|e| e.fields.get("http.route").map(String::as_str) == Some(route))
        .collect()
}

/// The blocking-poll findings pushed so far (a busy machine may add others, about it).
fn blocking_findings(findings: &Findings) -> Vec<Finding> {
    findings
        .recent()
        .into_iter()
        .map(|recorded| recorded.finding)
        .filter(|finding| finding.kind() == "blocking")
        .collect()
}

/// The layer's decision follows its own measurement: the request counts as blocking exactly
/// when its longest poll reached its route's threshold, and then, and only then, one WARN says
/// so with the poll that was measured.
fn assert_warned_iff_measured_past_threshold(events: &Events, record: &Record) {
    let crossed = matches!(
        (record.longest_poll, record.blocking_threshold),
        (Some(longest), Some(threshold)) if longest >= threshold
    );
    assert_eq!(record.blocked, crossed, "{record:?}");
    let warnings = blocking_warnings(events, &record.route);
    assert_eq!(
        warnings.len(),
        usize::from(crossed),
        "{record:?}: {warnings:#?}"
    );
    for warning in warnings {
        assert_eq!(warning.level, tracing::Level::WARN);
        assert!(
            (warning.number("longest_poll_ms") - logged_ms(record.longest_poll.unwrap())).abs()
                < 1e-9,
            "the warning reports the poll that was measured: {warning:?} vs {record:?}"
        );
        assert!(
            (warning.number("threshold_ms") - logged_ms(record.blocking_threshold.unwrap())).abs()
                < 1e-9,
            "{warning:?}"
        );
        assert_eq!(warning.fields["polls"], record.polls.to_string());
    }
}

#[tokio::test]
async fn a_poll_past_the_threshold_warns_exactly_once_with_the_poll_it_measured() {
    // Ten times the threshold: the poll holds its thread well past it even if a few
    // milliseconds of it are not counted as held (time spent waiting for a CPU is not).
    const WORK: Duration = Duration::from_millis(100);
    let events = Events::default();
    let _guard = events.capture();
    let reports = Reports::default();
    let findings = Findings::new(16);
    let app = Router::new()
        .route(
            "/report/blocking",
            get(|| async {
                // Blocks the executor thread for the whole poll.
                std::thread::sleep(WORK);
                "blocked"
            }),
        )
        .layer(reports.attach(RequestTimingLayer::new().with_findings(findings.clone())));

    get_to_the_end(&app, "/report/blocking").await;

    let record = reports.single();
    assert_eq!(record.blocking_threshold, Some(DEFAULT_BLOCKING_THRESHOLD));
    let longest = record.longest_poll.unwrap();
    assert!(longest >= DEFAULT_BLOCKING_THRESHOLD, "{record:?}");
    assert!(record.blocked, "{record:?}");

    let warnings = events.with_message(BLOCKED);
    assert_eq!(warnings.len(), 1, "{:#?}", events.all());
    let warning = &warnings[0];
    assert_eq!(warning.fields["http.route"], "/report/blocking");
    assert_eq!(warning.fields["http.request.method"], "GET");
    assert_eq!(warning.fields["threshold_ms"], "10.0");
    assert_warned_iff_measured_past_threshold(&events, &record);

    let found = blocking_findings(&findings);
    assert!(
        matches!(
            found.as_slice(),
            [Finding::Blocking { route, longest_poll_ms, .. }]
                if route == "/report/blocking"
                    && (longest_poll_ms - logged_ms(longest)).abs() < 1e-9
        ),
        "one finding, with the poll that was measured: {found:#?}"
    );
}

#[tokio::test]
async fn work_moved_to_spawn_blocking_is_not_counted_as_a_poll() {
    // Long enough that no poll of the handler reaches it unless the layer counted the wait for
    // the blocking task as executor time.
    const OFFLOADED: Duration = Duration::from_millis(200);
    let events = Events::default();
    let _guard = events.capture();
    let reports = Reports::default();
    let findings = Findings::new(16);
    let app = Router::new()
        .route(
            "/report",
            get(|| async {
                tokio::task::spawn_blocking(|| std::thread::sleep(OFFLOADED))
                    .await
                    .unwrap();
                "offloaded"
            }),
        )
        .layer(reports.attach(RequestTimingLayer::new().with_findings(findings.clone())));

    get_to_the_end(&app, "/report").await;

    let record = reports.single();
    assert!(
        record.head.unwrap() >= OFFLOADED,
        "the handler waited for the work: {record:?}"
    );
    assert!(
        record.polls >= 2,
        "spawn_blocking makes the handler wait: {record:?}"
    );
    assert!(
        record.longest_poll.unwrap() < OFFLOADED && record.busy.unwrap() < OFFLOADED,
        "the wait for the blocking task is not executor time: {record:?}"
    );
    // A preempted poll may cross the 10 ms threshold on a busy machine; what must hold is that
    // the warning and the finding follow the poll the layer measured.
    assert_warned_iff_measured_past_threshold(&events, &record);
    assert_eq!(
        blocking_findings(&findings).len(),
        usize::from(record.blocked)
    );
}

#[tokio::test]
async fn per_route_thresholds_override_the_default_or_switch_the_check_off() {
    // Well past the default threshold, far below the tolerated route's.
    const WORK: Duration = Duration::from_millis(50);
    let events = Events::default();
    let _guard = events.capture();
    let reports = Reports::default();
    let handler = || async {
        std::thread::sleep(WORK);
        "x"
    };
    let app = Router::new()
        .route("/tolerated", get(handler))
        .route("/unchecked", get(handler))
        .route("/checked", get(handler))
        .layer(
            reports.attach(
                RequestTimingLayer::new()
                    // Far above any poll this test makes, however busy the machine.
                    .with_route(
                        "/tolerated",
                        RouteTiming::new().with_blocking_threshold(Duration::from_mins(1)),
                    )
                    .with_route(
                        "/unchecked",
                        RouteTiming::new().with_blocking_threshold(None),
                    ),
            ),
        );
    for path in ["/tolerated", "/unchecked", "/checked"] {
        get_to_the_end(&app, path).await;
    }

    let records = reports.all();
    let applied: Vec<_> = records
        .iter()
        .map(|r| (r.route.as_str(), r.blocking_threshold))
        .collect();
    assert_eq!(
        applied,
        [
            ("/tolerated", Some(Duration::from_mins(1))),
            ("/unchecked", None),
            ("/checked", Some(DEFAULT_BLOCKING_THRESHOLD)),
        ]
    );
    for record in &records {
        assert!(
            record.longest_poll.unwrap() >= DEFAULT_BLOCKING_THRESHOLD,
            "{record:?}"
        );
        assert_warned_iff_measured_past_threshold(&events, record);
    }
    let blocked: Vec<_> = records.iter().map(|r| r.blocked).collect();
    assert_eq!(blocked, [false, false, true]);
}
