//! [`RedisStore`]: keys shared by a fleet — every instance of a service claims, replays and
//! refuses the same keys in one Redis (feature `redis`).
//!
//! A key's record is one Redis string under `{prefix}:{scope}`:
//! - while its request runs, an in-flight marker (the request's fingerprint and a random token)
//!   set with `SET NX`-like semantics and a lease (`PX`, 60 s by default): an instance that
//!   crashed mid-request frees its keys when the lease ends;
//! - when it completed, the stored response (or "not replayable"), kept for the retention time.
//!
//! Each step is one Lua script, atomic in Redis: the claim reads the record and sets the
//! marker only when there is none; the completion replaces the marker by the response only if
//! the marker is still this request's (a request that outlived its lease cannot overwrite a
//! newer one), so the response is written before the key is let go; a release deletes the
//! marker only if it is its own.
//!
//! When Redis fails or does not answer in time (100 ms per call by default), a request with a
//! key gets `503` + `Retry-After: 1` — a payment must not run unprotected — or, with
//! [`with_fail_open`](RedisStore::with_fail_open), runs unprotected. Either way the failure is
//! counted and logged at WARN at most once a minute.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::aio::ConnectionManager;
use vitals_core::redis::RedisConnection;
use vitals_core::throttle::Throttle;

use crate::store::{Claim, StoredResponse, decide};

/// The time a Redis call may take when not told otherwise.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);

/// The key prefix when not told otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "vitals:idem";

/// How long a running request holds its key in Redis when not told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_mins(1);

const CLAIM: &str = r"
local record = redis.call('GET', KEYS[1])
if record then return record end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

const COMPLETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Keys in Redis, shared by every instance given the same URL and prefix. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
    prefix: Arc<str>,
    timeout: Duration,
    lease: Duration,
    fail_open: bool,
}

struct Shared {
    redis: RedisConnection,
    claim: redis::Script,
    complete: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    /// Failures, said at most once a minute.
    failures: Throttle,
}

/// A Redis URL the client cannot use (the error names it, its password redacted).
pub type RedisStoreError = vitals_core::redis::RedisUrlError;

/// The task renewing a running request's lease; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running request's hold on its key in Redis: the marker it set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Marker(Bytes);

impl RedisStore {
    /// A store on the Redis at `url` (`redis://host:6379/`); it connects at first use.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL.
    pub fn new(url: &str) -> Result<Self, RedisStoreError> {
        let redis = RedisConnection::open(url)?;
        Ok(Self {
            prefix: Arc::from(DEFAULT_REDIS_PREFIX),
            timeout: DEFAULT_REDIS_TIMEOUT,
            lease: DEFAULT_LEASE,
            fail_open: false,
            shared: Arc::new(Shared {
                redis,
                claim: redis::Script::new(CLAIM),
                complete: redis::Script::new(COMPLETE),
                release: redis::Script::new(RELEASE),
                renew: redis::Script::new(RENEW),
                failures: Throttle::new(Duration::from_mins(1)),
            }),
        })
    }

    /// The keys' prefix (default `vitals:idem`): services sharing one Redis use their own.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long one Redis call may take (default 100 ms; at least 1 ms).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a running request holds its key (default 60 s): longer than the slowest
    /// request the route serves, or a retry may run while the first still does.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// When Redis fails, run the request unprotected instead of answering `503`.
    #[must_use]
    pub fn with_fail_open(mut self) -> Self {
        self.fail_open = true;
        self
    }

    /// Whether a request runs unprotected when Redis fails.
    pub fn fails_open(&self) -> bool {
        self.fail_open
    }

    /// The keys' prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Redis calls that failed or timed out since the start.
    pub fn failures(&self) -> u64 {
        self.shared.failures.failures()
    }

    fn key(&self, scope: u128) -> String {
        format!("{}:{scope:032x}", self.prefix)
    }

    fn connection(&self) -> Result<ConnectionManager, String> {
        self.shared.redis.get(self.timeout)
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        key: &str,
        args: &[&[u8]],
    ) -> Result<T, String> {
        let result = tokio::time::timeout(self.timeout, async {
            let mut connection = self.connection()?;
            let mut invocation = script.prepare_invoke();
            invocation.key(key);
            for arg in args {
                invocation.arg(*arg);
            }
            invocation
                .invoke_async::<T>(&mut connection)
                .await
                .map_err(|error| error.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("no answer within the timeout".to_owned()));
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    /// Claims `scope` for a request with `fingerprint`, holding it with `marker` when the claim
    /// is [`Claim::Run`]; `Err` when Redis failed.
    pub(crate) async fn claim(
        &self,
        scope: u128,
        fingerprint: u128,
        marker: &Marker,
    ) -> Result<Claim, String> {
        let lease = self.lease.as_millis().to_string();
        let record: Option<Vec<u8>> = self
            .run(
                &self.shared.claim,
                &self.key(scope),
                &[&marker.0, lease.as_bytes()],
            )
            .await?;
        let claim = match record {
            None => Claim::Run,
            Some(record) => {
                let record = decode(&record).inspect_err(|error| self.failed(error))?;
                decide(
                    Some((record.fingerprint, record.done.as_ref().map(Option::as_ref))),
                    fingerprint,
                )
            }
        };
        Ok(claim)
    }

    /// The request holding `marker` completed: its record replaces the marker.
    pub(crate) async fn complete(
        &self,
        scope: u128,
        fingerprint: u128,
        marker: &Marker,
        response: Option<&StoredResponse>,
        retention: Duration,
    ) -> Result<(), String> {
        let record = encode(fingerprint, response);
        let retention = retention.as_millis().max(1).to_string();
        let replaced: i64 = self
            .run(
                &self.shared.complete,
                &self.key(scope),
                &[&marker.0, &record, retention.as_bytes()],
            )
            .await?;
        if replaced == 0 {
            // The marker was gone: the lease ended before the request did (a retry may have
            // run), or the record was removed. Said, not retried.
            tracing::warn!(
                prefix = %self.prefix,
                "idempotency: a request outlived its key's lease; its answer was not recorded (raise the lease above the slowest request)"
            );
        }
        Ok(())
    }

    /// Keeps `marker` on `scope` for another lease while its request runs, every third of a
    /// lease, until the returned guard is dropped (the request ended) or the marker is no
    /// longer there (its lease ended anyway: Redis was out of reach for a whole lease).
    pub(crate) fn keep_held(&self, scope: u128, marker: &Marker) -> Option<Renewal> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let store = self.clone();
        let marker = marker.clone();
        let every = (self.lease / 3).max(Duration::from_millis(1));
        let task = runtime.spawn(async move {
            let key = store.key(scope);
            let lease = store.lease.as_millis().to_string();
            loop {
                tokio::time::sleep(every).await;
                let renewed: Result<i64, String> = store
                    .run(&store.shared.renew, &key, &[&marker.0, lease.as_bytes()])
                    .await;
                if renewed == Ok(0) {
                    return;
                }
            }
        });
        Some(Renewal(task))
    }

    /// The request holding `marker` ended without a record: the key is free again.
    pub(crate) async fn release(&self, scope: u128, marker: &Marker) {
        let _: Result<i64, String> = self
            .run(&self.shared.release, &self.key(scope), &[&marker.0])
            .await;
    }

    #[cold]
    fn failed(&self, error: &str) {
        if let Some(since) = self.shared.failures.failed() {
            tracing::warn!(
                redis = %self.shared.redis.url(),
                %error,
                failures_since_last_warning = since,
                "idempotency: Redis did not answer; requests with a key get 503 or run unprotected as configured (said at most once a minute)"
            );
        }
    }
}

/// An in-flight marker: `F`, the fingerprint, and a random token (so two requests never hold
/// one marker, even with one fingerprint).
pub(crate) fn marker(fingerprint: u128) -> Marker {
    let mut marker = BytesMut::with_capacity(33);
    marker.put_u8(b'F');
    marker.put_u128(fingerprint);
    let token = xxhash_rust::xxh3::xxh3_128(
        &SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos())
            .to_le_bytes(),
    ) ^ u128::from(TOKENS.fetch_add(1, Ordering::Relaxed))
        ^ (u128::from(std::process::id()) << 64);
    marker.put_u128(token);
    Marker(marker.freeze())
}

static TOKENS: AtomicU64 = AtomicU64::new(0);

/// A record read back: whose it is, and (when done) the response or "not replayable".
#[derive(Debug, PartialEq, Eq)]
struct Record {
    fingerprint: u128,
    /// `None`: in flight; `Some(None)`: done, not replayable (the three states `decide` reads).
    #[allow(clippy::option_option)]
    done: Option<Option<std::sync::Arc<StoredResponse>>>,
}

/// `D`, the fingerprint, then `N` (not replayable) or `R`, the status, the headers (count,
/// then each name and value with its length) and the body.
fn encode(fingerprint: u128, response: Option<&StoredResponse>) -> Bytes {
    let mut record = BytesMut::new();
    record.put_u8(b'D');
    record.put_u128(fingerprint);
    let Some(response) = response else {
        record.put_u8(b'N');
        return record.freeze();
    };
    record.put_u8(b'R');
    record.put_u16(response.status.as_u16());
    record.put_u16(u16::try_from(response.headers.len()).unwrap_or(u16::MAX));
    for (name, value) in response.headers.iter().take(usize::from(u16::MAX)) {
        record.put_u16(u16::try_from(name.as_str().len()).unwrap_or(0));
        record.put_slice(name.as_str().as_bytes());
        record.put_u32(u32::try_from(value.len()).unwrap_or(0));
        record.put_slice(value.as_bytes());
    }
    record.put_slice(&response.body);
    record.freeze()
}

fn decode(record: &[u8]) -> Result<Record, String> {
    let bad = || format!("unreadable idempotency record of {} bytes", record.len());
    let mut rest = record;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(bad());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let tag = take(1)?[0];
    let fingerprint = u128::from_be_bytes(take(16)?.try_into().map_err(|_| bad())?);
    match tag {
        b'F' => Ok(Record {
            fingerprint,
            done: None,
        }),
        b'D' => match take(1)?[0] {
            b'N' => Ok(Record {
                fingerprint,
                done: Some(None),
            }),
            b'R' => {
                let status = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
                let status = StatusCode::from_u16(status).map_err(|_| bad())?;
                let count = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
                let mut headers = HeaderMap::with_capacity(usize::from(count));
                for _ in 0..count {
                    let len = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad())?);
                    let name =
                        HeaderName::from_bytes(take(usize::from(len))?).map_err(|_| bad())?;
                    let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?);
                    let len = usize::try_from(len).map_err(|_| bad())?;
                    let value = HeaderValue::from_bytes(take(len)?).map_err(|_| bad())?;
                    headers.append(name, value);
                }
                let body = Bytes::copy_from_slice(rest);
                Ok(Record {
                    fingerprint,
                    done: Some(Some(std::sync::Arc::new(StoredResponse {
                        status,
                        headers,
                        body,
                    }))),
                })
            }
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.redis.url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_what_was_written_and_garbage_is_an_error() {
        let mut headers = HeaderMap::new();
        headers.insert("location", HeaderValue::from_static("/orders/7"));
        headers.append("x-many", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b"));
        let response = StoredResponse {
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from_static(b"{\"id\":7}"),
        };
        let record = decode(&encode(42, Some(&response))).unwrap();
        assert_eq!(record.fingerprint, 42);
        assert_eq!(record.done, Some(Some(Arc::new(response))));
        assert_eq!(decode(&encode(7, None)).unwrap().done, Some(None));
        let marker = marker(9);
        assert_eq!(
            decode(&marker.0).unwrap(),
            Record {
                fingerprint: 9,
                done: None
            }
        );
        assert_ne!(marker, super::marker(9), "every marker is its own");
        for garbage in [
            &b""[..],
            b"X",
            b"D",
            b"Dxxxxxxxxxxxxxxxx",
            b"F123",
            b"Dxxxxxxxxxxxxxxxx\xff",
        ] {
            assert!(decode(garbage).is_err(), "{garbage:?}");
        }
        let mut truncated = encode(
            1,
            Some(&StoredResponse {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::new(),
            }),
        )
        .to_vec();
        truncated.truncate(18);
        assert!(decode(&truncated).is_err());
    }
}
