//! A Prometheus text endpoint for services with no `metrics` recorder: the cumulative
//! histograms in the text exposition format, valid under `promtool check metrics`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use tower_service::Service;

use crate::registry::LatencyRegistry;

/// The histogram family's name in Prometheus.
pub const DURATION_FAMILY: &str = "http_server_request_duration_seconds";
/// The counter of cancelled requests.
pub const CANCELLED_FAMILY: &str = "vitals_latency_cancelled_requests_total";
/// The counter of requests folded into the overflow series.
pub const OVERFLOW_FAMILY: &str = "vitals_latency_overflow_requests_total";
/// The gauge of series.
pub const SERIES_FAMILY: &str = "vitals_latency_series";

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl LatencyRegistry {
    /// The cumulative histograms and counters in the Prometheus text format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let bounds = self.export_buckets();
        let all = self.cumulative();
        family(
            &mut out,
            DURATION_FAMILY,
            "histogram",
            "Duration of HTTP server requests, to the last byte of the response body.",
        );
        for cumulative in all.iter().filter(|c| c.count > 0) {
            let mut labels = String::new();
            label(&mut labels, "http_request_method", cumulative.method);
            label(&mut labels, "http_route", &cumulative.route);
            label(
                &mut labels,
                "http_response_status_code",
                &cumulative.status.to_string(),
            );
            let mut running = 0;
            for (le, count) in bounds.iter().zip(&cumulative.buckets) {
                running += count;
                let _ = writeln!(
                    out,
                    "{DURATION_FAMILY}_bucket{{{labels},le=\"{le}\"}} {running}"
                );
            }
            let _ = writeln!(
                out,
                "{DURATION_FAMILY}_bucket{{{labels},le=\"+Inf\"}} {}",
                cumulative.count
            );
            let _ = writeln!(
                out,
                "{DURATION_FAMILY}_sum{{{labels}}} {}",
                cumulative.sum_seconds
            );
            let _ = writeln!(
                out,
                "{DURATION_FAMILY}_count{{{labels}}} {}",
                cumulative.count
            );
        }

        family(
            &mut out,
            CANCELLED_FAMILY,
            "counter",
            "Requests whose client went away before the response ended (not in the histogram).",
        );
        let mut cancelled = std::collections::BTreeMap::<(&str, &str), u64>::new();
        for cumulative in all.iter().filter(|c| c.cancelled > 0) {
            *cancelled
                .entry((&cumulative.route, cumulative.method))
                .or_default() += cumulative.cancelled;
        }
        for ((route, method), count) in cancelled {
            let mut labels = String::new();
            label(&mut labels, "http_request_method", method);
            label(&mut labels, "http_route", route);
            let _ = writeln!(out, "{CANCELLED_FAMILY}{{{labels}}} {count}");
        }

        family(
            &mut out,
            OVERFLOW_FAMILY,
            "counter",
            "Requests counted in the overflow series because the series cap was reached.",
        );
        let _ = writeln!(out, "{OVERFLOW_FAMILY} {}", self.overflowed());
        family(
            &mut out,
            SERIES_FAMILY,
            "gauge",
            "Latency series being tracked.",
        );
        let _ = writeln!(out, "{SERIES_FAMILY} {}", self.series_count());
        out
    }

    /// A service answering every request with [`render_prometheus`](Self::render_prometheus):
    /// mount it at `/metrics` (`Router::route_service("/metrics", registry.prometheus_service())`).
    pub fn prometheus_service(&self) -> PrometheusService {
        PrometheusService {
            registry: self.clone(),
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Appends `name="value"`, escaping the value as the text format requires.
fn label(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Serves a [`LatencyRegistry`] in the Prometheus text format; see
/// [`LatencyRegistry::prometheus_service`].
#[derive(Clone, Debug)]
pub struct PrometheusService {
    registry: LatencyRegistry,
}

impl<B> Service<Request<B>> for PrometheusService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let mut response = Response::new(self.registry.render_prometheus());
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        label(&mut out, "a", "x\"y\\z\nw");
        label(&mut out, "b", "plain");
        assert_eq!(out, r#"a="x\"y\\z\nw",b="plain""#);
    }
}
