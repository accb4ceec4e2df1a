//! Command-line configuration of the shop.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

/// The default database: an in-memory SQLite database, created and seeded at start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite::memory:";

/// How the shop is started. Every field has a default, so `cargo run -p shop` needs no setup.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "shop",
    version,
    about = "An axum shop that shows production problems and their fixes"
)]
pub struct Config {
    /// Database URL: `sqlite::memory:` (default), `sqlite://shop.db`, or `postgres://…`.
    #[arg(long, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Base URL of the payment service `GET /checkout` calls. Without it, the shop starts its
    /// own stub payment service on a free loopback port.
    #[arg(long)]
    pub payment_url: Option<String>,

    /// Latency of the built-in stub payment service, in milliseconds.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub payment_latency_ms: u64,

    /// Share of calls the built-in stub payment service fails with 503, from 0 to 1 (spread
    /// evenly); at 1 every call fails and the payment client's circuit breaker opens within 20.
    #[arg(long, default_value_t = 0.0, value_parser = failure_rate)]
    pub payment_failure_rate: f64,

    /// Extra latency of every tenth call to the built-in stub payment service, in
    /// milliseconds (0: none): a latency spike, past `--payment-timeout-ms` to see the deadline
    /// cut calls.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub payment_latency_spike_ms: u64,

    /// How long `GET /checkout` waits for the payment service, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub payment_timeout_ms: u64,

    /// `GET /checkout` calls each caller may make a second (by `X-Api-Key`, else by client
    /// address); more get 429 + Retry-After.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub checkout_rate: u32,

    /// `GET /checkout` calls a caller may make at once before the rate applies.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub checkout_burst: u32,

    /// The API keys the shop issued (comma-separated): `X-Api-Key` counts for the checkout quota
    /// only when it is one of them; any other value is the client's own invention, and the
    /// request is counted by its address.
    #[arg(long, value_delimiter = ',', default_value = "demo,team-a,team-b")]
    pub api_keys: Vec<String>,

    /// Keep the `GET /checkout` quota and `POST /orders`' idempotency keys in this Redis
    /// (`redis://host:port/`), shared by every shop instance given the same URL; in process
    /// when not given.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,

    /// The prefix of the shop's idempotency keys in Redis (with `--redis-url`): shops sharing
    /// the prefix share `POST /orders`' keys.
    #[arg(long, default_value = "shop:idem")]
    pub redis_prefix: String,

    /// Keep the response cache (`GET /products/{id}/reviews`) in this Redis (`redis://host:port/`)
    /// too, shared by every shop instance given the same URL and prefix: one instance fills a
    /// cold key for the whole fleet. In memory only when not given.
    #[arg(long, value_name = "URL")]
    pub cache_url: Option<String>,

    /// The prefix of the response cache's keys in Redis (with `--cache-url`).
    #[arg(long, default_value = "shop:cache")]
    pub cache_prefix: String,

    /// How long one call to the response cache's Redis may take (with `--cache-url`): past it
    /// the request goes to the handler.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub cache_timeout_ms: u64,

    /// The most database connections the shop's pool opens.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub pool_size: u32,

    /// The name the pool's metrics carry (`db.client.connection.pool.name`).
    #[arg(long, default_value = "shop")]
    pub pool_name: String,

    /// How long one database statement may run before the database cuts it, in milliseconds
    /// (PostgreSQL's `statement_timeout`; SQLite waits at most 5 s for a lock).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub statement_timeout_ms: u64,

    /// Reports (`POST /reports`) this shop's workers build at once; 0 runs none here (another
    /// shop on the same database does).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub job_workers: u64,

    /// The most runs of a report before it is dead-lettered.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub job_attempts: u32,

    /// Seconds between a job worker's heartbeats: a report held by a worker silent for two is
    /// run again by another.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub job_heartbeat_s: u64,

    /// Requests served at once across the whole shop; more wait briefly, then get 503.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_concurrency: u64,

    /// Log format; JSON by default when stdout is not a terminal, pretty otherwise.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Export request spans by OTLP (HTTP/protobuf) to this base URL, e.g.
    /// `http://localhost:4318`; `OTEL_EXPORTER_OTLP_ENDPOINT` when not given; off without either.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,

    /// Mount `POST /trace-context/test`, the W3C trace-context test suite's service contract
    /// (it makes the shop POST to loopback URLs it is given: off by default).
    #[arg(long)]
    pub w3c_test_endpoint: bool,

    /// Drive a mix of the shop's own routes in the background (the N+1 route, the blocking
    /// report, slow calls, cacheable reads, bursts past `/slow`'s limit), so the dashboard at
    /// `/_vitals` comes alive within seconds.
    #[arg(long)]
    pub demo_traffic: bool,

    /// Also serve the dashboard to non-loopback peers that send `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN")]
    pub dashboard_token: Option<String>,
}

impl Config {
    /// The defaults, as `shop` with no arguments would use them.
    pub fn with_defaults() -> Self {
        Self::parse_from(["shop"])
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

/// A failure rate: a number from 0 to 1.
fn failure_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_setup() {
        let config = Config::with_defaults();
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.listen.to_string(), "127.0.0.1:3000");
        assert!(config.payment_url.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_an_error() {
        assert!(Config::try_parse_from(["shop", "--listen", "not-an-address"]).is_err());
        assert!(Config::try_parse_from(["shop", "--payment-timeout-ms", "0"]).is_err());
        for rate in ["1.5", "-0.1", "NaN", "half"] {
            assert!(
                Config::try_parse_from(["shop", "--payment-failure-rate", rate]).is_err(),
                "{rate}"
            );
        }
        let config = Config::try_parse_from(["shop", "--payment-failure-rate", "0.25"]).unwrap();
        assert!((config.payment_failure_rate - 0.25).abs() < f64::EPSILON);
        assert!(Config::try_parse_from(["shop", "--log-format", "xml"]).is_err());
        let config = Config::try_parse_from(["shop", "--log-format", "json"]).unwrap();
        assert_eq!(config.log_format, Some(LogFormat::Json));
    }
}
