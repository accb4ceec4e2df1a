//! `--demo-traffic`: the shop calls its own routes in the background, so the dashboard shows
//! every problem within seconds — the N+1 route, the blocking report, slow calls, cacheable
//! reads (with revalidation), and now and then a burst past `/slow`'s limit.

use std::time::Duration;

use tokio::task::JoinHandle;

/// How often one round of traffic starts.
const TICK: Duration = Duration::from_millis(250);

/// Starts the traffic against `base_url` (`http://127.0.0.1:3000`); it runs until the process
/// ends. Failed calls are ignored: the point is load, and the dashboard shows the failures.
pub fn spawn(base_url: String) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(client) = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
        else {
            tracing::warn!("demo traffic: cannot build an HTTP client");
            return;
        };
        let mut ticks = tokio::time::interval(TICK);
        for round in 0u64.. {
            ticks.tick().await;
            for path in paths(round) {
                let url = format!("{base_url}{path}");
                let mut request = client.get(url);
                if path == "/me" {
                    request = request.bearer_auth(crate::routes::DEMO_TOKEN);
                }
                tokio::spawn(async move {
                    if let Ok(response) = request.send().await {
                        let _ = response.bytes().await;
                    }
                });
            }
        }
    })
}

/// The calls of round `round` (four rounds a second).
fn paths(round: u64) -> Vec<String> {
    let mut paths = vec![
        format!("/products/{}", round % 24 + 1),
        "/products".to_owned(),
        "/orders".to_owned(),
    ];
    if round.is_multiple_of(2) {
        paths.push("/me".to_owned());
        paths.push("/checkout".to_owned());
    }
    if round.is_multiple_of(8) {
        paths.push("/orders/n-plus-one".to_owned());
        paths.push("/report".to_owned());
    }
    if round % 20 == 5 {
        paths.push("/report/blocking".to_owned());
    }
    if round % 16 == 3 {
        paths.push("/slow?ms=1200".to_owned());
    }
    if round % 60 == 30 {
        // 40 at once against a limit of 8 with 16 waiting at most 100 ms: some are refused.
        paths.extend(std::iter::repeat_n("/slow?ms=400".to_owned(), 40));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_rounds_covers_every_problem() {
        let all: Vec<String> = (0..240).flat_map(paths).collect();
        for needle in [
            "/orders/n-plus-one",
            "/report/blocking",
            "/slow?ms=1200",
            "/products/24",
            "/me",
        ] {
            assert!(all.iter().any(|p| p == needle), "{needle}");
        }
        assert!(all.iter().filter(|p| *p == "/slow?ms=400").count() >= 40);
    }
}
