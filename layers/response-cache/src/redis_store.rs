//! [`RedisStore`]: one cache for a fleet (feature `redis`). Every instance given the same URL
//! and prefix reads what any of them stored, and a key is filled by one instance at a time.
//!
//! What a primary key holds in Redis (all under `{prefix}:{namespace}:{key}`):
//! - a hash of its variants (one field per host and set of `Vary` values, each an encoded
//!   [`Entry`]), kept through the longest variant's stale windows;
//! - `…:lock`, while an instance fills the key: the filler's nonce, with a lease (`PX`, 3 s by
//!   default), so an instance that crashed mid-fill frees the key when the lease ends;
//! - `…:fence`, the key's fencing counter: taking the lock and invalidating the key each raise
//!   it, and a fill led under a lock stores only while the counter is still its token — a
//!   filler that outlived its lease, or whose key was invalidated meanwhile, cannot overwrite
//!   what is newer.
//!
//! Routes and tags are sets of keys (`{prefix}:{namespace}:route:{route}`, `…:tag:{tag}`), so a
//! purge by route or tag reaches every instance's stores. Each instance keeps what it read or
//! stored in memory too, for at most the local TTL (1 s by default): the two tiers. A purge
//! reaches another instance's memory within that time.
//!
//! When Redis fails or does not answer in time (50 ms per call by default), the cache fails
//! open: the request goes to the handler (single flight within the instance still holds), the
//! failure is counted and logged at WARN at most once a minute. Never a 500 because the cache
//! is sick.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::aio::ConnectionManager;
use vitals_core::redis::RedisConnection;
use vitals_core::route::RouteLabel;
use vitals_core::throttle::Throttle;

use crate::entry::Entry;
use crate::flight::Hold;
use crate::rules::Freshness;

/// The time a Redis call may take when not told otherwise.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(50);

/// The key prefix when not told otherwise.
pub const DEFAULT_REDIS_PREFIX: &str = "vitals:cache";

/// How long an instance filling a key holds it when not told otherwise: past it, another
/// instance fills (the filler crashed, or is slower than the lease). Shorter than the default
/// wait (5 s), so the requests waiting on a crashed filler outlast its lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

/// How long an instance keeps in memory what it read from or stored in Redis when not told
/// otherwise.
pub const DEFAULT_LOCAL_TTL: Duration = Duration::from_secs(1);

/// How long the warm-up may take to open the connection and load the scripts.
const WARM_UP: Duration = Duration::from_secs(5);

/// The shortest local TTL: the requests woken by a fill find it in memory.
const MIN_LOCAL_TTL: Duration = Duration::from_millis(100);

/// How long a key's fencing counter outlives its last use: longer than any fill could run (a
/// counter that expired would start again at 1, and a filler stuck for longer could match it).
const FENCE_KEPT_MS: &str = "3600000";

/// Takes the fill of a key: the lock set to the filler's nonce, and the key's next fencing
/// token returned; `0` while another instance holds it. KEYS: lock, fence. ARGV: lease (ms),
/// fence kept (ms), nonce.
const LOCK: &str = r"
if redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[1]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return token
end
return 0
";

/// Stores one variant: under a lock only while the fence is still the filler's token (a token
/// of `0`: a fill led by no lock, stored as is); either way the filler's lock goes. At most
/// eight variants per key (a new one past that starts the key afresh). The route's and the
/// tags' sets hold each key until it expires (scored by its expiry; the expired are dropped on
/// each store). KEYS: entries, lock, fence, route set, tag sets…. ARGV: field, entry, keep
/// (ms), token, nonce (empty without a lock), now (ms since the epoch).
const STORE: &str = r"
local token = ARGV[4]
local function let_go()
  if ARGV[5] ~= '' and redis.call('GET', KEYS[2]) == ARGV[5] then
    redis.call('DEL', KEYS[2])
  end
end
if token ~= '0' and redis.call('GET', KEYS[3]) ~= token then
  let_go()
  return 0
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= 8 then
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local keep = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < keep then
  redis.call('PEXPIRE', KEYS[1], keep)
end
local now = tonumber(ARGV[6])
for i = 4, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZADD', KEYS[i], 'GT', now + keep, KEYS[1])
  if redis.call('PTTL', KEYS[i]) < keep then
    redis.call('PEXPIRE', KEYS[i], keep)
  end
end
let_go()
return 1
";

/// Lets a lock go if it is still the filler's. KEYS: lock. ARGV: nonce.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Forgets a key and raises its fence (a fill in flight cannot put back what it read before).
/// KEYS: entries, fence. ARGV: fence kept (ms).
const REMOVE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
";

/// Forgets every key in a set (a route's, a tag's), raising each one's fence, and the set.
/// KEYS: the set. ARGV: fence kept (ms).
const REMOVE_SET: &str = r"
local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, key in ipairs(keys) do
  redis.call('DEL', key)
  redis.call('INCR', key .. ':fence')
  redis.call('PEXPIRE', key .. ':fence', ARGV[1])
end
redis.call('DEL', KEYS[1])
return #keys
";

/// Stored responses in Redis, shared by every instance given the same URL and prefix. Cheap to
/// clone. Give it to [`ResponseCacheLayer::with_redis`](crate::ResponseCacheLayer::with_redis).
///
/// ```
/// use std::time::Duration;
/// use vitals_response_cache::{RedisStore, ResponseCacheLayer};
///
/// let fleet = RedisStore::new("redis://127.0.0.1:6379/")
///     .expect("a Redis URL")
///     .with_prefix("shop:cache")
///     .with_lease(Duration::from_secs(2));
/// let cache = ResponseCacheLayer::new().with_redis(fleet);
/// # let _ = cache;
/// ```
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
    prefix: Arc<str>,
    timeout: Duration,
    lease: Duration,
    local_ttl: Duration,
}

struct Shared {
    redis: RedisConnection,
    lock: redis::Script,
    store: redis::Script,
    release: redis::Script,
    remove: redis::Script,
    remove_set: redis::Script,
    /// Failures, said at most once a minute.
    failures: Throttle,
    /// Whether the connection was opened and the scripts loaded ahead of the first request.
    warmed: AtomicBool,
}

/// A Redis URL the client cannot use (the error names it, its password redacted).
pub type RedisStoreError = vitals_core::redis::RedisUrlError;

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
            local_ttl: DEFAULT_LOCAL_TTL,
            shared: Arc::new(Shared {
                redis,
                lock: redis::Script::new(LOCK),
                store: redis::Script::new(STORE),
                release: redis::Script::new(RELEASE),
                remove: redis::Script::new(REMOVE),
                remove_set: redis::Script::new(REMOVE_SET),
                failures: Throttle::new(Duration::from_mins(1)),
                warmed: AtomicBool::new(false),
            }),
        })
    }

    /// Opens the connection and loads the scripts in the background (once per store, on the
    /// current runtime; without one, the first request does it), so the first requests after
    /// start do not pay for both within their timeout and fail open in a burst.
    pub(crate) fn warm(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.warmed.swap(true, Ordering::Relaxed) {
            return;
        }
        let store = self.clone();
        runtime.spawn(async move {
            let Ok(mut connection) = store.connection() else {
                return;
            };
            let shared = &store.shared;
            let scripts = [
                &shared.lock,
                &shared.store,
                &shared.release,
                &shared.remove,
                &shared.remove_set,
            ];
            // Not a request's wait: a connection that takes a while still helps the next one.
            let _ = tokio::time::timeout(WARM_UP, async {
                for script in scripts {
                    script.load_async(&mut connection).await?;
                }
                Ok::<(), redis::RedisError>(())
            })
            .await;
        });
    }

    /// The keys' prefix (default `vitals:cache`): services sharing one Redis use their own (or
    /// their own [namespace](crate::ResponseCacheLayer::with_namespace)).
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// How long one Redis call may take (default 50 ms; at least 1 ms). Past it the request
    /// goes to the handler.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long an instance filling a key holds it (default 3 s; at least 10 ms): longer than
    /// the slowest fill, or a second instance fills while the first still does; shorter than
    /// the routes' waits, so the requests waiting on a crashed filler's key outlast it and get
    /// the next instance's fill.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(10));
        self
    }

    /// How long an instance keeps in memory what it read from or stored in Redis (default 1 s;
    /// at least 100 ms, so the requests waiting on a fill find it; at most as long as the
    /// response may be stored): hits within it cost no round trip, and a purge made elsewhere
    /// reaches this instance's memory within it.
    #[must_use]
    pub fn with_local_ttl(mut self, ttl: Duration) -> Self {
        self.local_ttl = ttl.max(MIN_LOCAL_TTL);
        self
    }

    /// The keys' prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How long an instance filling a key holds it.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How long an instance keeps in memory what it read from or stored in Redis.
    pub fn local_ttl(&self) -> Duration {
        self.local_ttl
    }

    /// Redis calls that failed or timed out since the start.
    pub fn failures(&self) -> u64 {
        self.shared.failures.failures()
    }

    fn connection(&self) -> Result<ConnectionManager, String> {
        self.shared.redis.get(self.timeout)
    }

    /// Runs `call` on a connection within the timeout; a failure is counted and said.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = tokio::time::timeout(self.timeout, async {
            let connection = self.connection()?;
            call(connection).await.map_err(|error| error.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("no answer within the timeout".to_owned()));
        if let Err(error) = &result {
            self.failed(error);
        }
        result
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, String> {
        self.run(|mut connection| async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(*key);
            }
            for arg in args {
                invocation.arg(*arg);
            }
            invocation.invoke_async::<T>(&mut connection).await
        })
        .await
    }

    fn key(&self, namespace: &str, key: u128) -> String {
        format!("{}:{namespace}:{key:032x}", self.prefix)
    }

    fn set_key(&self, namespace: &str, kind: &str, name: &str) -> String {
        format!("{}:{namespace}:{kind}:{name}", self.prefix)
    }

    /// Every variant stored under `key` that can still be read (one that cannot is skipped).
    pub(crate) async fn fetch(&self, namespace: &str, key: u128) -> Result<Vec<Entry>, String> {
        let name = self.key(namespace, key);
        let values: Vec<Vec<u8>> = self
            .run(|mut connection| async move {
                redis::cmd("HVALS")
                    .arg(&name)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        let now = (Instant::now(), SystemTime::now());
        Ok(values
            .iter()
            .filter_map(|value| decode(value, now).ok())
            .collect())
    }

    /// Takes the fill of `key` with the lock holding `nonce`: `Some(token)` when this instance
    /// fills it, `None` while another does.
    pub(crate) async fn lock(
        &self,
        namespace: &str,
        key: u128,
        nonce: u128,
    ) -> Result<Option<u64>, String> {
        let name = self.key(namespace, key);
        let lease = self.lease.as_millis().to_string();
        let nonce = format!("{nonce:032x}");
        let token: u64 = self
            .script(
                &self.shared.lock,
                &[&format!("{name}:lock"), &format!("{name}:fence")],
                &[lease.as_bytes(), FENCE_KEPT_MS.as_bytes(), nonce.as_bytes()],
            )
            .await?;
        Ok((token > 0).then_some(token))
    }

    /// Stores `entry` under `key` for `keep`; with a lock's `hold`, only while its token is
    /// still the key's fence (`Ok(false)`: it is not — the entry is older than what is there, or
    /// cannot be written as a record), letting the lock go either way.
    pub(crate) async fn store(
        &self,
        namespace: &str,
        key: u128,
        entry: &Entry,
        keep: Duration,
        hold: Option<&Hold>,
    ) -> Result<bool, String> {
        let name = self.key(namespace, key);
        let mut keys = vec![
            name.clone(),
            format!("{name}:lock"),
            format!("{name}:fence"),
            self.set_key(namespace, "route", entry.route.as_str()),
        ];
        keys.extend(
            entry
                .tags
                .iter()
                .map(|tag| self.set_key(namespace, "tag", tag)),
        );
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let field = format!("{:032x}", variant_id(entry));
        let wall = SystemTime::now();
        let Some(encoded) = encode(entry, wall, Instant::now()) else {
            // A name past a record's 64 KiB: kept in this instance's memory only.
            if let Some(hold) = hold {
                self.release(namespace, key, hold.nonce).await;
            }
            return Ok(false);
        };
        let keep = keep.as_millis().max(1).to_string();
        let (token, nonce) = hold.map_or_else(
            || ("0".to_owned(), String::new()),
            |hold| (hold.token.to_string(), format!("{:032x}", hold.nonce)),
        );
        let now = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis())
            .to_string();
        let stored: i64 = self
            .script(
                &self.shared.store,
                &keys,
                &[
                    field.as_bytes(),
                    &encoded,
                    keep.as_bytes(),
                    token.as_bytes(),
                    nonce.as_bytes(),
                    now.as_bytes(),
                ],
            )
            .await?;
        Ok(stored == 1)
    }

    /// Lets the lock on `key` go, if it still holds `nonce` (the fill stored nothing, or its
    /// lock's reply was lost).
    pub(crate) async fn release(&self, namespace: &str, key: u128, nonce: u128) {
        let lock = format!("{}:lock", self.key(namespace, key));
        let nonce = format!("{nonce:032x}");
        let _: Result<i64, String> = self
            .script(&self.shared.release, &[&lock], &[nonce.as_bytes()])
            .await;
    }

    /// Forgets `key` on every instance's shared store.
    pub(crate) async fn remove(&self, namespace: &str, key: u128) -> Result<(), String> {
        let name = self.key(namespace, key);
        let _: i64 = self
            .script(
                &self.shared.remove,
                &[&name, &format!("{name}:fence")],
                &[FENCE_KEPT_MS.as_bytes()],
            )
            .await?;
        Ok(())
    }

    /// Forgets every key stored for `route`.
    pub(crate) async fn remove_route(&self, namespace: &str, route: &str) -> Result<(), String> {
        self.remove_set(&self.set_key(namespace, "route", route))
            .await
    }

    /// Forgets every key whose response named `tag`.
    pub(crate) async fn remove_tag(&self, namespace: &str, tag: &str) -> Result<(), String> {
        self.remove_set(&self.set_key(namespace, "tag", tag)).await
    }

    async fn remove_set(&self, set: &str) -> Result<(), String> {
        let _: i64 = self
            .script(&self.shared.remove_set, &[set], &[FENCE_KEPT_MS.as_bytes()])
            .await?;
        Ok(())
    }

    /// Forgets every key of `namespace` (a scan: for an operator's purge, not a request path).
    pub(crate) async fn clear(&self, namespace: &str) -> Result<(), String> {
        let pattern = format!(
            "{}:{}:*",
            glob_escaped(&self.prefix),
            glob_escaped(namespace)
        );
        let mut cursor = 0_u64;
        loop {
            let pattern = pattern.clone();
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut connection| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut connection)
                        .await
                })
                .await?;
            // Fences stay, raised: a fill in flight finds its token outdated.
            let (fences, gone): (Vec<String>, Vec<String>) =
                keys.into_iter().partition(|key| key.ends_with(":fence"));
            if !gone.is_empty() || !fences.is_empty() {
                let mut pipe = redis::pipe();
                if !gone.is_empty() {
                    pipe.cmd("DEL").arg(&gone).ignore();
                }
                for fence in &fences {
                    pipe.cmd("INCR").arg(fence).ignore();
                }
                let () = self
                    .run(|mut connection| async move { pipe.query_async(&mut connection).await })
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    #[cold]
    fn failed(&self, error: &str) {
        if let Some(since) = self.shared.failures.failed() {
            tracing::warn!(
                redis = %self.shared.redis.url(),
                %error,
                failures_since_last_warning = since,
                "response cache: Redis did not answer; requests go to the handler (said at most once a minute)"
            );
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.redis.url())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .field("local_ttl", &self.local_ttl)
            .finish_non_exhaustive()
    }
}

/// `text` with the characters `SCAN`'s `MATCH` reads as a pattern escaped.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Runs `work` in the background on the current runtime (outside one, it is not done: the
/// shared store misses what this instance did, and its memory still has it).
pub(crate) fn in_background(work: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(work);
    }
}

/// What tells one variant of a key from another: its host and its `Vary` values (a new
/// response for the same replaces it).
fn variant_id(entry: &Entry) -> u128 {
    let mut identity = Vec::new();
    identity.extend_from_slice(entry.host.as_deref().unwrap_or("").as_bytes());
    identity.push(0);
    for name in &entry.freshness.vary {
        identity.extend_from_slice(name.as_str().as_bytes());
        identity.push(0);
    }
    for value in &entry.vary_values {
        match value {
            Some(value) => {
                identity.push(1);
                identity.extend_from_slice(&(value.len() as u64).to_be_bytes());
                identity.extend_from_slice(value);
            }
            None => identity.push(0),
        }
    }
    xxhash_rust::xxh3::xxh3_128(&identity)
}

/// The encoding's version: a record of another is skipped (a fleet mid-upgrade misses once).
const VERSION: u8 = 1;

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A record's field or count that does not fit its length prefix: the entry is not written.
struct TooLong;

fn put_count(record: &mut BytesMut, count: usize) -> Result<(), TooLong> {
    record.put_u16(u16::try_from(count).map_err(|_| TooLong)?);
    Ok(())
}

fn put_short(record: &mut BytesMut, bytes: &[u8]) -> Result<(), TooLong> {
    put_count(record, bytes.len())?;
    record.put_slice(bytes);
    Ok(())
}

fn put_long(record: &mut BytesMut, bytes: &[u8]) -> Result<(), TooLong> {
    record.put_u32(u32::try_from(bytes.len()).map_err(|_| TooLong)?);
    record.put_slice(bytes);
    Ok(())
}

/// An entry as bytes: its times on the wall clock (another instance reads them against its
/// own), then its freshness, the request it answers, its head and its body. `None` for an
/// entry with a name, or a count, past what the record's prefixes hold (64 Ki): never cut.
fn encode(entry: &Entry, wall: SystemTime, now: Instant) -> Option<Bytes> {
    encode_fields(entry, wall, now).ok()
}

fn encode_fields(entry: &Entry, wall: SystemTime, now: Instant) -> Result<Bytes, TooLong> {
    let stored = wall
        .checked_sub(now.saturating_duration_since(entry.stored_at))
        .and_then(|stored| stored.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let mut record = BytesMut::with_capacity(entry.weight() + 64);
    record.put_u8(VERSION);
    record.put_u16(entry.status.as_u16());
    record.put_u64(millis(stored));
    record.put_u64(millis(entry.initial_age));
    record.put_u64(millis(entry.lifetime));
    let freshness = &entry.freshness;
    record.put_u64(millis(freshness.lifetime));
    record.put_u64(millis(freshness.stale_while_revalidate));
    record.put_u64(millis(freshness.stale_if_error));
    record.put_u8(u8::from(freshness.no_cache) | (u8::from(freshness.forbids_stale) << 1));
    put_count(&mut record, freshness.vary.len())?;
    for name in &freshness.vary {
        put_short(&mut record, name.as_str().as_bytes())?;
    }
    put_count(&mut record, entry.vary_values.len())?;
    for value in &entry.vary_values {
        match value {
            Some(value) => {
                record.put_u8(1);
                put_long(&mut record, value)?;
            }
            None => record.put_u8(0),
        }
    }
    match &entry.host {
        Some(host) => {
            record.put_u8(1);
            put_short(&mut record, host.as_bytes())?;
        }
        None => record.put_u8(0),
    }
    put_short(&mut record, entry.route.as_str().as_bytes())?;
    put_count(&mut record, entry.tags.len())?;
    for tag in &entry.tags {
        put_short(&mut record, tag.as_bytes())?;
    }
    put_count(&mut record, entry.headers.len())?;
    for (name, value) in &entry.headers {
        put_short(&mut record, name.as_str().as_bytes())?;
        put_long(&mut record, value.as_bytes())?;
    }
    record.put_slice(&entry.body);
    Ok(record.freeze())
}

/// Reads a record, front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < n {
            return Err(());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ()> {
        self.take(N)?.try_into().map_err(|_| ())
    }

    fn u8(&mut self) -> Result<u8, ()> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, ()> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ()> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn millis(&mut self) -> Result<Duration, ()> {
        Ok(Duration::from_millis(self.u64()?))
    }

    fn short(&mut self) -> Result<&'a [u8], ()> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn long(&mut self) -> Result<&'a [u8], ()> {
        let len = u32::from_be_bytes(self.array()?);
        self.take(usize::try_from(len).map_err(|_| ())?)
    }

    fn text(&mut self) -> Result<&'a str, ()> {
        std::str::from_utf8(self.short()?).map_err(|_| ())
    }
}

/// A record read back, its times on this instance's clocks (`now`: the monotonic and the wall
/// clock read together). A record that cannot be read, or was stored in the future by more than
/// a clock's drift allows, is an error.
fn decode(record: &[u8], now: (Instant, SystemTime)) -> Result<Entry, ()> {
    let mut reader = Reader(record);
    if reader.u8()? != VERSION {
        return Err(());
    }
    let status = StatusCode::from_u16(reader.u16()?).map_err(|_| ())?;
    let stored = UNIX_EPOCH.checked_add(reader.millis()?).ok_or(())?;
    // The time since it was stored, on the wall clock, is age it had on arrival here (a
    // record from a clock ahead of this one is taken as stored now).
    let since = now.1.duration_since(stored).unwrap_or_default();
    let initial_age = reader.millis()?.saturating_add(since);
    let lifetime = reader.millis()?;
    let freshness_lifetime = reader.millis()?;
    let stale_while_revalidate = reader.millis()?;
    let stale_if_error = reader.millis()?;
    let flags = reader.u8()?;
    let mut vary = Vec::new();
    for _ in 0..reader.u16()? {
        vary.push(HeaderName::from_bytes(reader.short()?).map_err(|_| ())?);
    }
    let mut vary_values = Vec::new();
    for _ in 0..reader.u16()? {
        vary_values.push(match reader.u8()? {
            0 => None,
            1 => Some(reader.long()?.to_vec()),
            _ => return Err(()),
        });
    }
    let host = match reader.u8()? {
        0 => None,
        1 => Some(Box::from(reader.text()?)),
        _ => return Err(()),
    };
    let route = RouteLabel::new(reader.text()?);
    let mut tags = Vec::new();
    for _ in 0..reader.u16()? {
        tags.push(Box::from(reader.text()?));
    }
    let count = reader.u16()?;
    // A count past what a header map holds is a broken record, not a panic.
    let mut headers =
        HeaderMap::try_with_capacity(usize::from(count) + crate::entry::ROOM_FOR_ANSWER)
            .map_err(|_| ())?;
    for _ in 0..count {
        let name = HeaderName::from_bytes(reader.short()?).map_err(|_| ())?;
        let value = HeaderValue::from_bytes(reader.long()?).map_err(|_| ())?;
        headers.try_append(name, value).map_err(|_| ())?;
    }
    Ok(Entry {
        status,
        headers,
        body: Bytes::copy_from_slice(reader.0),
        route,
        tags,
        vary_values,
        stored_at: now.0,
        host,
        initial_age,
        lifetime,
        freshness: Freshness {
            lifetime: freshness_lifetime,
            stale_while_revalidate,
            stale_if_error,
            no_cache: flags & 1 != 0,
            forbids_stale: flags & 2 != 0,
            vary,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-many", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b"));
        Entry {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::from_static(b"gone"),
            route: RouteLabel::new("/products/{id}"),
            tags: vec![Box::from("catalogue"), Box::from("p-7")],
            vary_values: vec![Some(b"gzip".to_vec()), None],
            stored_at: Instant::now(),
            host: Some(Box::from("shop.example")),
            initial_age: Duration::from_secs(3),
            lifetime: Duration::from_millis(54_321),
            freshness: Freshness {
                lifetime: Duration::from_mins(1),
                stale_while_revalidate: Duration::from_secs(30),
                stale_if_error: Duration::from_mins(5),
                no_cache: false,
                forbids_stale: true,
                vary: vec![http::header::ACCEPT_ENCODING, http::header::ACCEPT_LANGUAGE],
            },
        }
    }

    #[test]
    fn records_read_back_what_was_written() {
        let original = entry();
        let now = (Instant::now(), SystemTime::now());
        let read = decode(&encode(&original, now.1, now.0).unwrap(), now).unwrap();
        assert_eq!(read.status, original.status);
        assert_eq!(read.headers, original.headers);
        assert_eq!(read.body, original.body);
        assert_eq!(read.route, original.route);
        assert_eq!(read.tags, original.tags);
        assert_eq!(read.vary_values, original.vary_values);
        assert_eq!(read.host, original.host);
        assert!(read.initial_age.abs_diff(original.initial_age) <= Duration::from_millis(1));
        assert_eq!(read.lifetime, original.lifetime);
        assert_eq!(read.freshness, original.freshness);
        // Its age carries over within the millisecond the record rounds to.
        let (age, was) = (read.age(now.0), original.age(now.0));
        assert!(
            age.abs_diff(was) <= Duration::from_millis(1),
            "{age:?} {was:?}"
        );
        assert_eq!(variant_id(&read), variant_id(&original));
    }

    #[test]
    fn an_entry_read_later_has_aged_by_the_wall_clock() {
        let original = entry();
        let then = (Instant::now(), SystemTime::now());
        let record = encode(&original, then.1, then.0).unwrap();
        let later = (then.0, then.1 + Duration::from_secs(10));
        let read = decode(&record, later).unwrap();
        let age = read.age(later.0);
        assert!(
            age.abs_diff(Duration::from_secs(13)) <= Duration::from_millis(2),
            "{age:?}"
        );
    }

    #[test]
    fn garbage_and_every_truncation_are_errors_not_panics() {
        let now = (Instant::now(), SystemTime::now());
        let record = encode(&entry(), now.1, now.0).unwrap();
        // The body is the record's tail: every cut before it is an error.
        let body_starts = record.len() - entry().body.len();
        for cut in 0..body_starts {
            assert!(decode(&record[..cut], now).is_err(), "cut at {cut}");
        }
        for garbage in [&b""[..], b"\x02", b"\x01\x00", &[0xff; 64]] {
            assert!(decode(garbage, now).is_err(), "{garbage:?}");
        }
        // A header count past what a header map holds: an error, not `with_capacity`'s panic.
        let (name, _) = entry().headers.into_iter().next().unwrap();
        let name = name.unwrap();
        let named = record
            .windows(name.as_str().len())
            .position(|window| window == name.as_str().as_bytes())
            .unwrap();
        // Before the first name: the header count, then the name's length.
        let count_at = named - 4;
        let mut huge = record.to_vec();
        huge[count_at..count_at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(decode(&huge, now).is_err());
    }

    #[test]
    fn a_name_past_its_length_prefix_is_not_written_rather_than_cut() {
        let now = (Instant::now(), SystemTime::now());
        let mut long_tag = entry();
        long_tag.tags.push(Box::from("t".repeat(70_000)));
        assert!(encode(&long_tag, now.1, now.0).is_none());
        let mut many_tags = entry();
        many_tags.tags = (0..70_000).map(|n| Box::from(n.to_string())).collect();
        assert!(encode(&many_tags, now.1, now.0).is_none());
        // A record from a wall clock far in the past or future reads without a panic.
        let far = decode(
            &encode(&entry(), UNIX_EPOCH, now.0).unwrap(),
            (now.0, SystemTime::now()),
        )
        .unwrap();
        assert!(far.age(now.0) > Duration::from_secs(1_000_000));
    }

    #[test]
    fn variants_differ_by_host_and_vary_values() {
        let one = entry();
        let mut other = entry();
        other.host = Some(Box::from("other.example"));
        assert_ne!(variant_id(&one), variant_id(&other));
        let mut other = entry();
        other.vary_values[1] = Some(b"en".to_vec());
        assert_ne!(variant_id(&one), variant_id(&other));
        let mut same = entry();
        same.body = Bytes::from_static(b"a newer body");
        assert_eq!(variant_id(&one), variant_id(&same));
    }
}
