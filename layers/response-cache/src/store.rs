//! The memory store: stored responses by primary key, each key holding its variants (one per
//! set of `Vary` values, newest first), bounded in bytes with moka (TinyLFU admission, so a
//! burst of one-off keys does not push out the popular ones), each key kept through its stale
//! windows and then dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::entry::Entry;

/// Memory a store holds when not told otherwise: 64 MiB of bodies and headers.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// Variants kept under one key: a `Vary` on a header with many values cannot fill a key
/// without bound.
pub const MAX_VARIANTS: usize = 8;

/// How long a key whose response could not be stored goes to the handler without waiting on
/// other requests (Varnish's hit-for-pass): concurrent requests for a route the cache cannot
/// help are not made to queue behind one another.
pub const PASS_FOR: Duration = Duration::from_secs(10);

/// Keys remembered as passing at most (past it the least used are forgotten, and such a key
/// waits on one fill again before it is remembered).
const MAX_PASSES: u64 = 100_000;

/// What one primary key holds.
#[derive(Debug)]
pub(crate) struct Variants {
    pub(crate) entries: Vec<Arc<Entry>>,
    /// How long the key is kept from its last write.
    keep_for: Duration,
    weight: u32,
}

/// How long a single key's invalidation is remembered, so a fill in flight when it happened
/// does not put back what it read before (a fill longer than this is not protected).
const REMEMBER_INVALIDATIONS: Duration = Duration::from_mins(5);

/// What was invalidated when, in a counter of invalidations (an epoch).
#[derive(Debug)]
struct Invalidations {
    epoch: AtomicU64,
    /// The epoch of the last purge by route, tag or of everything.
    bulk: AtomicU64,
    /// The epoch each recently invalidated key was invalidated at.
    keys: Cache<u128, u64>,
}

/// Called for each key the store pushed out to make room.
pub(crate) type OnEvicted = Arc<dyn Fn(&Entry) + Send + Sync>;

struct KeepThroughStaleWindows;

impl moka::Expiry<u128, Arc<Variants>> for KeepThroughStaleWindows {
    fn expire_after_create(
        &self,
        _key: &u128,
        value: &Arc<Variants>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }

    fn expire_after_update(
        &self,
        _key: &u128,
        value: &Arc<Variants>,
        _updated_at: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

/// Stored responses in this process.
#[derive(Clone)]
pub(crate) struct MemoryStore {
    cache: Cache<u128, Arc<Variants>>,
    /// Keys whose last response could not be stored.
    passes: Cache<u128, ()>,
    invalidations: Arc<Invalidations>,
    /// How long a stale response that can be revalidated is kept past its stale windows.
    grace: Duration,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    pub(crate) fn new(max_bytes: u64, grace: Duration, on_evicted: Option<OnEvicted>) -> Self {
        let mut builder = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &u128, value: &Arc<Variants>| value.weight)
            .expire_after(KeepThroughStaleWindows)
            .support_invalidation_closures();
        if let Some(on_evicted) = on_evicted {
            builder = builder.eviction_listener(
                move |_key: Arc<u128>, value: Arc<Variants>, cause: RemovalCause| {
                    if cause == RemovalCause::Size {
                        for entry in &value.entries {
                            on_evicted(entry);
                        }
                    }
                },
            );
        }
        Self {
            cache: builder.build(),
            passes: Cache::builder()
                .max_capacity(MAX_PASSES)
                .time_to_live(PASS_FOR)
                .build(),
            invalidations: Arc::new(Invalidations {
                epoch: AtomicU64::new(0),
                bulk: AtomicU64::new(0),
                keys: Cache::builder()
                    .max_capacity(MAX_PASSES)
                    .time_to_live(REMEMBER_INVALIDATIONS)
                    .build(),
            }),
            grace,
        }
    }

    /// Remembers that `key`'s response could not be stored: for a while, its requests go to
    /// the handler without waiting on each other.
    pub(crate) fn mark_pass(&self, key: u128) {
        // A write costs far more than a read: a key already marked keeps its mark (it ends
        // `PASS_FOR` after the first, then one request leads a fill and marks it again).
        if !self.passes.contains_key(&key) {
            self.passes.insert(key, ());
        }
    }

    /// Whether `key`'s last response could not be stored (and the mark is recent).
    pub(crate) fn passes(&self, key: u128) -> bool {
        self.passes.contains_key(&key)
    }

    /// What `key` holds.
    pub(crate) fn get(&self, key: u128) -> Option<Arc<Variants>> {
        self.cache.get(&key)
    }

    /// Stores `entry` under `key`, in place of the variant stored for the same `Vary` values,
    /// for `at_most` (with a shared store behind this one: its local TTL).
    pub(crate) fn put(&self, key: u128, entry: Arc<Entry>, at_most: Duration) {
        self.passes.invalidate(&key);
        let now = Instant::now();
        let grace = self.grace;
        self.cache.entry(key).and_upsert_with(|held| {
            let mut entries = vec![Arc::clone(&entry)];
            if let Some(held) = held {
                entries.extend(
                    held.into_value()
                        .entries
                        .iter()
                        .filter(|old| {
                            old.vary_values != entry.vary_values
                                || old.freshness.vary != entry.freshness.vary
                                || old.host != entry.host
                        })
                        .filter(|old| old.keep_for(now, grace) > Duration::ZERO)
                        .take(MAX_VARIANTS - 1)
                        .cloned(),
                );
            }
            drop(entry);
            let keep_for = entries
                .iter()
                .map(|entry| entry.keep_for(now, grace))
                .max()
                .unwrap_or_default()
                .min(at_most);
            let weight = entries.iter().map(|entry| entry.weight()).sum::<usize>();
            Arc::new(Variants {
                entries,
                keep_for,
                weight: u32::try_from(weight).unwrap_or(u32::MAX),
            })
        });
    }

    /// How long a stale response that can be revalidated is kept past its stale windows.
    #[cfg(feature = "redis")]
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }

    /// Forgets what `key` holds.
    pub(crate) fn remove(&self, key: u128) {
        let epoch = self.invalidations.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.invalidations.keys.insert(key, epoch);
        self.cache.invalidate(&key);
    }

    /// Forgets every key one of whose variants `matches`.
    pub(crate) fn remove_where(&self, matches: impl Fn(&Entry) -> bool + Send + Sync + 'static) {
        self.bulk_invalidation();
        // Fails only when closures were not enabled at build time; they are.
        let _ = self.cache.invalidate_entries_if(move |_key, variants| {
            variants.entries.iter().any(|e| matches(e))
        });
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.bulk_invalidation();
        self.cache.invalidate_all();
    }

    fn bulk_invalidation(&self) {
        let epoch = self.invalidations.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.invalidations.bulk.store(epoch, Ordering::Release);
    }

    /// The invalidation epoch now: a fill notes it when it starts, and stores only if nothing
    /// that covers its key was invalidated since ([`invalidated_since`](Self::invalidated_since)).
    pub(crate) fn epoch(&self) -> u64 {
        self.invalidations.epoch.load(Ordering::Acquire)
    }

    /// Whether `key` was invalidated (purged, or by an unsafe method) after `epoch`: a fill that
    /// started before must not put back what it read before the change.
    pub(crate) fn invalidated_since(&self, key: u128, epoch: u64) -> bool {
        self.invalidations.bulk.load(Ordering::Acquire) > epoch
            || self
                .invalidations
                .keys
                .get(&key)
                .is_some_and(|at| at > epoch)
    }

    /// Keys held (approximate until the store's pending work runs).
    pub(crate) fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes held, as weighed (approximate until the store's pending work runs).
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs the store's pending work (evictions, expiries): counts are exact after it.
    pub(crate) fn sync(&self) {
        self.cache.run_pending_tasks();
    }
}
