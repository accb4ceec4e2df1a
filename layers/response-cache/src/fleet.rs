//! Single flight across a fleet (feature `redis`): the request leading its key's flight on
//! this instance asks Redis before the handler — what another instance stored answers; else it
//! takes the key's lock and fills, or, while another instance fills, polls until that fill is
//! stored, the lock goes (the filler gave up or crashed: its lease ended), or the request's wait
//! passes. Only the instance's leader talks to Redis; the instance's other requests wait on it
//! as on any fill.

use std::time::{Duration, Instant};

use http::HeaderMap;

use crate::entry::Entry;
use crate::flight::{FlightGuard, Hold};
use crate::redis_store::{RedisStore, in_background};
use crate::rules::{RequestRules, Usable, usable};

/// The first pause between two looks at a key another instance fills; each pause doubles up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// The longest pause between two looks: a fill that lands is seen within it.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// What a request would accept from the shared store.
#[derive(Debug)]
pub(crate) struct Wanted {
    pub(crate) host: Option<Box<str>>,
    pub(crate) headers: HeaderMap,
    pub(crate) rules: RequestRules,
}

impl Wanted {
    /// Whether one of `entries` answers the request without the handler.
    fn satisfied(&self, entries: &[Entry], now: Instant) -> bool {
        entries.iter().any(|entry| {
            entry.matches(self.host.as_deref(), &self.headers)
                && matches!(
                    usable(entry.facts(now), &self.rules),
                    Usable::Fresh | Usable::StaleAccepted | Usable::StaleWhileRevalidate
                )
        })
    }
}

/// A leader's look at the shared store.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub(crate) redis: RedisStore,
    pub(crate) namespace: String,
    pub(crate) key: u128,
    pub(crate) guard: FlightGuard,
    pub(crate) wanted: Wanted,
    /// The memory's invalidation epoch when the look began: what it finds is not kept in
    /// memory if the key was purged meanwhile.
    pub(crate) epoch: u64,
}

/// What the look found.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A stored response answers the request.
    Usable,
    /// Nothing does, and this instance fills the key holding its lock.
    Lead(Hold),
    /// Another instance still filled the key when the request's wait passed.
    Busy,
    /// Redis failed or did not answer in time: the request goes to the handler.
    Failed,
}

/// The look's result: what was stored (to keep in memory; the stale ones serve revalidation
/// and `stale-if-error`), and the instance's flight, still led.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) guard: FlightGuard,
    pub(crate) key: u128,
    pub(crate) entries: Vec<Entry>,
    pub(crate) outcome: Outcome,
    pub(crate) epoch: u64,
    /// Time spent on Redis (polls included).
    pub(crate) took: Duration,
}

impl Lookup {
    /// Looks until the key can be answered, this instance holds its lock, or `deadline`.
    pub(crate) async fn run(self, deadline: Instant) -> Found {
        let started = Instant::now();
        let Self {
            redis,
            namespace,
            key,
            guard,
            wanted,
            epoch,
        } = self;
        let mut pause = FIRST_PAUSE;
        let mut entries = Vec::new();
        let outcome = loop {
            match redis.fetch(&namespace, key).await {
                Ok(found) => entries = found,
                Err(_) => break Outcome::Failed,
            }
            if wanted.satisfied(&entries, Instant::now()) {
                break Outcome::Usable;
            }
            let nonce = fastrand::u128(..);
            let mut held = Held {
                redis: redis.clone(),
                namespace: namespace.clone(),
                key,
                nonce: Some(nonce),
            };
            match redis.lock(&namespace, key, nonce).await {
                Ok(Some(token)) => {
                    // Another instance may have stored (and let the lock go) between the look
                    // and the lock: one more look, so it is not filled twice.
                    if let Ok(found) = redis.fetch(&namespace, key).await
                        && wanted.satisfied(&found, Instant::now())
                    {
                        entries = found;
                        break Outcome::Usable;
                    }
                    held.nonce = None;
                    break Outcome::Lead(Hold { token, nonce });
                }
                Ok(None) => held.nonce = None,
                // The lock may have been taken with its answer lost: `held` lets it go.
                Err(_) => break Outcome::Failed,
            }
            if Instant::now() + pause >= deadline {
                break Outcome::Busy;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        };
        Found {
            guard,
            key,
            entries,
            outcome,
            epoch,
            took: started.elapsed(),
        }
    }
}

/// A lock this look may hold and will not use (it found a stored response after all, its
/// answer was lost, or the look was dropped with the request): let go when dropped, so the
/// fleet does not wait for the lease.
struct Held {
    redis: RedisStore,
    namespace: String,
    key: u128,
    nonce: Option<u128>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(nonce) = self.nonce.take() {
            let (redis, namespace, key) = (self.redis.clone(), self.namespace.clone(), self.key);
            in_background(async move { redis.release(&namespace, key, nonce).await });
        }
    }
}
