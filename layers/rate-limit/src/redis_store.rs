//! [`RedisStore`]: quotas shared across a fleet — every instance spends the same keys' quotas
//! in one Redis (feature `redis`).
//!
//! One round trip per request: a Lua script runs GCRA for each quota of the request in order,
//! on Redis's own clock (`TIME`, so the instances' clocks do not matter), atomically, and stops
//! at the first quota that refuses. The script is sent once and then run by its digest
//! (`EVALSHA`; sent again when Redis answers `NOSCRIPT`, after a restart or `SCRIPT FLUSH`).
//! Each key expires when its quota is whole again: Redis holds only the clients spending.
//!
//! Once Redis refused a key, the instance refuses it locally until the refusal's
//! `Retry-After` has passed, without a round trip: a client hammering past its quota costs
//! Redis one call per wait, not one per request. The local refusal is never looser than
//! Redis's (it ends exactly when Redis said more quota comes back, measured from when the
//! answer arrived), so the slack across a fleet is on the strict side.
//!
//! When Redis fails or is slow (each call has a timeout, 50 ms by default), the quota fails
//! open (the request is allowed, without `RateLimit` headers) or, for a quota made with
//! [`Quota::with_fail_closed`](crate::Quota::with_fail_closed), closed (`503` +
//! `Retry-After: 1`). Either way the failure is counted, and logged at WARN at most once a
//! minute with how many failed since.
//!
//! ```no_run
//! use vitals_rate_limit::{Quota, RateLimitLayer, RedisStore};
//!
//! # fn main() -> Result<(), vitals_rate_limit::RedisStoreError> {
//! let redis = RedisStore::new("redis://10.0.0.5:6379/")?;
//! let layer = RateLimitLayer::new(Quota::per_minute(600)).with_redis(redis);
//! # let _ = layer; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use vitals_core::redis::RedisConnection;
use vitals_core::throttle::Throttle;

/// The default time a call to Redis may take before the quota fails open or closed.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);
/// The default prefix of the keys the rate limit writes.
pub const DEFAULT_REDIS_PREFIX: &str = "vitals:rl";

/// GCRA for each quota of one request, in order (KEYS[i]; ARGV[2i-1] the interval in
/// microseconds, ARGV[2i] the burst), on the server's clock. Answers
/// `{refused quota (1-based, 0: none), wait in microseconds, remaining of each quota}` (the
/// remaining only when every quota allowed).
/// Times are microseconds since the epoch: exact in Lua's doubles (under 2^53).
// Every quota is read first and written only when all allow: a refused request spends
// nothing. (`replicate_commands` lets Redis before 5 write after `TIME`; later ones always do.)
const GCRA: &str = r"
pcall(redis.replicate_commands)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local arrivals = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = interval * (tonumber(ARGV[2 * i]) - 1)
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if now < tat - tolerance then
    return {i, tat - tolerance - now}
  end
  arrivals[i] = tat
end
local answer = {0, 0}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = interval * (tonumber(ARGV[2 * i]) - 1)
  local next = arrivals[i] + interval
  redis.call('SET', KEYS[i], string.format('%d', next), 'PX', math.ceil((next - now) / 1000))
  answer[#answer + 1] = math.floor((now + tolerance + interval - next) / interval)
end
return answer
";

/// A Redis that holds the quotas of a fleet. Cheap to clone; clones share the connection (whose
/// own connect and response timeouts are those of the clone that used it first; every call is
/// also cut at its own store's timeout).
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
    prefix: Arc<str>,
    timeout: Duration,
}

struct Shared {
    redis: RedisConnection,
    script: redis::Script,
    /// Failures, said at most once a minute.
    failures: Throttle,
}

/// A Redis URL the client cannot use (the error names it, its password redacted).
pub type RedisStoreError = vitals_core::redis::RedisUrlError;

/// What Redis answered for one request's quotas.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RemoteAnswer {
    /// The remaining burst of each quota, in order, when all allowed the request.
    pub(crate) remaining: Vec<u32>,
    /// The quota that refused (0-based) and when it allows again.
    pub(crate) refused: Option<(usize, Duration)>,
}

/// Why a call to Redis gave no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    Timeout,
    Redis(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no answer within the timeout"),
            Self::Redis(error) => f.write_str(error),
        }
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://host:port/db`, `rediss://…`, `redis+unix:…`).
    /// Nothing is connected until the first request: a Redis that is down at start is a
    /// failure of the first checks, not of the service's start.
    pub fn new(url: &str) -> Result<Self, RedisStoreError> {
        let redis = RedisConnection::open(url)?;
        Ok(Self {
            shared: Arc::new(Shared {
                redis,
                script: redis::Script::new(GCRA),
                failures: Throttle::new(Duration::from_mins(1)),
            }),
            prefix: Arc::from(DEFAULT_REDIS_PREFIX),
            timeout: DEFAULT_REDIS_TIMEOUT,
        })
    }

    /// The prefix of every key the rate limit writes (default [`DEFAULT_REDIS_PREFIX`]):
    /// give services sharing one Redis different prefixes, or the same one to share quotas.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long a call may take before the quota fails open or closed (default
    /// [`DEFAULT_REDIS_TIMEOUT`]; at least 1 ms).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Calls that failed or timed out since the start.
    pub fn failures(&self) -> u64 {
        self.shared.failures.failures()
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn connection(&self) -> Result<ConnectionManager, Failure> {
        self.shared.redis.get(self.timeout).map_err(Failure::Redis)
    }

    /// Runs the script for `keys` (one a quota) with `args` (interval in microseconds and
    /// burst, a pair a quota), within the timeout.
    pub(crate) async fn check(
        &self,
        keys: &[String],
        args: &[u64],
    ) -> Result<RemoteAnswer, Failure> {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, async {
            let mut connection = self.connection()?;
            let mut invocation = self.shared.script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation
                .invoke_async::<Vec<i64>>(&mut connection)
                .await
                .map_err(|error| Failure::Redis(error.to_string()))
        })
        .await
        .unwrap_or(Err(Failure::Timeout))
        .and_then(|answer| parse(&answer, keys.len()));
        #[cfg(feature = "metrics")]
        metrics::histogram!(crate::metrics::STORE_DURATION).record(started.elapsed().as_secs_f64());
        if let Err(failure) = &result {
            self.failed(failure);
        }
        result
    }

    /// Counts a failure; logs at most once a minute, with how many failed since the last log.
    fn failed(&self, failure: &Failure) {
        if let Some(since) = self.shared.failures.failed() {
            tracing::warn!(
                redis = %self.shared.redis.url(),
                error = %failure,
                failures_since_last_warning = since,
                "rate limit: Redis did not answer; quotas fail open or closed as configured \
                 (said at most once a minute)"
            );
        }
    }
}

/// The script's answer for `quotas` quotas, checked: anything else is a failure, not a panic.
fn parse(answer: &[i64], quotas: usize) -> Result<RemoteAnswer, Failure> {
    let bad = || Failure::Redis(format!("unexpected script answer {answer:?}"));
    let (&refused, rest) = answer.split_first().ok_or_else(bad)?;
    let (&wait, remaining) = rest.split_first().ok_or_else(bad)?;
    let refused = usize::try_from(refused).map_err(|_| bad())?;
    let allowed = if refused == 0 { quotas } else { 0 };
    if refused > quotas || remaining.len() != allowed {
        return Err(bad());
    }
    let remaining = remaining
        .iter()
        .map(|&left| u32::try_from(left.max(0)).unwrap_or(u32::MAX))
        .collect();
    let wait = Duration::from_micros(u64::try_from(wait.max(0)).unwrap_or(0));
    Ok(RemoteAnswer {
        remaining,
        refused: refused.checked_sub(1).map(|quota| (quota, wait)),
    })
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.redis.url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        assert_eq!(
            parse(&[0, 0, 4, 9], 2).ok(),
            Some(RemoteAnswer {
                remaining: vec![4, 9],
                refused: None
            })
        );
        assert_eq!(
            parse(&[2, 1_500_000], 2).ok(),
            Some(RemoteAnswer {
                remaining: vec![],
                refused: Some((1, Duration::from_millis(1_500)))
            })
        );
        for bad in [
            &[][..],
            &[0],
            &[0, 0, 1],
            &[3, 0],
            &[2, 0, 4],
            &[-1, 0],
            &[1, 0, 7],
        ] {
            assert!(parse(bad, 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(RedisStore::new("http://nope").is_err());
        assert!(RedisStore::new("redis://127.0.0.1:1/").is_ok());
    }
}
