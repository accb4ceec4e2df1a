//! The in-process key store under governor's GCRA: one theoretical arrival time per key, in
//! shards of a bounded size, so a flood of new keys cannot grow memory without end.
//!
//! A key whose arrival time has passed is indistinguishable from a key never seen: it is
//! dropped first when a shard is full. When a shard is still more than three quarters full of
//! keys that are spending their quota (more distinct clients inside one burst window than the
//! bound), the ones closest to being fresh again are dropped down to three quarters: those
//! clients get a fresh burst early. That loosens the limit for them only; it is counted
//! ([`KeyStore::evicted_early`]) and logged once. Each clean-up frees a quarter of the shard
//! at least, so its cost is spread over that many new keys; a key's shard is chosen with a
//! per-process random hash, so nobody can aim keys at one shard.
//!
//! Each key is a 128-bit digest, so an entry is 24 bytes (the digest and the arrival time) plus
//! the map's control byte whatever the key's source (an address, an API key): `max_keys`
//! entries take `max_keys × 25 / (7/8)` bytes rounded up to the shards' power-of-two
//! capacities — under 64 bytes a key, 6.4 MB for the default 100,000 keys per quota (measured:
//! 3.3 MB).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::hash::BuildHasher;

use governor::nanos::Nanos;
use governor::state::StateStore;
use hashbrown::{DefaultHashBuilder, HashMap};

/// Shards: contention stays low with many cores; each shard is one small lock.
const SHARDS: usize = 16;

/// A 128-bit key as two halves: 8-byte alignment, so an entry is 24 bytes, not 32.
type Halves = (u64, u64);

#[allow(clippy::cast_possible_truncation)] // The low half is taken on purpose.
fn halves(key: u128) -> Halves {
    ((key >> 64) as u64, key as u64)
}

/// Keys' arrival times, at most `max_keys` of them.
#[derive(Debug)]
pub(crate) struct KeyStore {
    shards: Box<[Mutex<HashMap<Halves, u64>>]>,
    /// Picks a key's shard (seeded at random per process).
    spread: DefaultHashBuilder,
    per_shard: usize,
    /// One request's share of the quota, in nanoseconds: a key whose arrival time is this far
    /// in the past of a new key's is fresh.
    interval: u64,
    evicted_early: AtomicU64,
    /// The quota's name, for the one warning a full store gives.
    quota: String,
    warned: AtomicBool,
}

impl KeyStore {
    pub(crate) fn new(max_keys: usize, interval: u64, quota: &str) -> Self {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            spread: DefaultHashBuilder::default(),
            per_shard,
            interval,
            evicted_early: AtomicU64::new(0),
            quota: quota.to_owned(),
            warned: AtomicBool::new(false),
        }
    }

    /// Keys stored now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |map| map.len()))
            .sum()
    }

    /// Bytes the maps hold now (their capacity, not their length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(shard).allocation_size())
            .sum()
    }

    /// Keys dropped while still spending their quota.
    pub(crate) fn evicted_early(&self) -> u64 {
        self.evicted_early.load(Ordering::Relaxed)
    }

    fn shard(&self, key: u128) -> &Mutex<HashMap<Halves, u64>> {
        #[allow(clippy::cast_possible_truncation)] // Any bits of the hash will do.
        let index = (self.spread.hash_one(key) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Gives `key` back the share of one request: a request one quota allowed and a later one
    /// refused is counted by neither.
    pub(crate) fn refund(&self, key: u128) {
        let mut map = lock(self.shard(key));
        if let Some(tat) = map.get_mut(&halves(key)) {
            *tat = tat.saturating_sub(self.interval);
        }
    }
}

/// A shard, even one a panic poisoned: it holds plain numbers, valid whatever happened.
fn lock(shard: &Mutex<HashMap<Halves, u64>>) -> std::sync::MutexGuard<'_, HashMap<Halves, u64>> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StateStore for KeyStore {
    type Key = u128;

    fn measure_and_replace<T, F, E>(&self, key: &u128, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A poisoned shard (a panic elsewhere while it was held) still holds valid numbers.
        let mut map = self
            .shard(*key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = halves(*key);
        if let Some(tat) = map.get_mut(&key) {
            let (outcome, next) = f(Some(Nanos::new(*tat)))?;
            *tat = next.as_u64();
            return Ok(outcome);
        }
        let (outcome, next) = f(None)?;
        let next = next.as_u64();
        if map.len() >= self.per_shard {
            // A new key's arrival time is one interval past now.
            let now = next.saturating_sub(self.interval);
            let evicted = make_room(&mut map, now, self.per_shard);
            if evicted > 0 {
                self.evicted_early.fetch_add(evicted, Ordering::Relaxed);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        quota = %self.quota,
                        max_keys = self.per_shard * SHARDS,
                        "rate limit: more clients spending this quota at once than it holds \
                         keys for; the longest-waiting were given a fresh burst early \
                         (raise with_max_keys; said once)"
                    );
                }
            }
        }
        map.insert(key, next);
        Ok(outcome)
    }
}

/// Makes room in a full shard: drops its fresh keys, then, while more than three quarters
/// remain, the keys closest to fresh; rebuilds the table (removals leave tombstones that would
/// make a later insert double it). Returns how many still-spending keys were dropped.
fn make_room(map: &mut HashMap<Halves, u64>, now: u64, capacity: usize) -> u64 {
    map.retain(|_, tat| *tat > now);
    let target = capacity - capacity / 4;
    let mut early = 0;
    if map.len() > target {
        let drop = map.len() - target;
        let mut arrivals: Vec<u64> = map.values().copied().collect();
        let (_, cut, _) = arrivals.select_nth_unstable(drop - 1);
        let cut = *cut;
        let before = map.len();
        map.retain(|_, tat| *tat > cut);
        early = (before - map.len()) as u64;
    }
    let mut rebuilt = HashMap::with_capacity(capacity);
    rebuilt.extend(map.drain());
    *map = rebuilt;
    early
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrive(store: &KeyStore, key: u128, now: u64) {
        let _: Result<(), ()> = store.measure_and_replace(&key, |tat| {
            let tat = tat.map_or(now, Nanos::as_u64).max(now);
            Ok(((), Nanos::new(tat + store.interval)))
        });
    }

    #[test]
    fn fresh_keys_go_first() {
        // Room for 64 keys a shard; shards are picked at random, so fill each about halfway.
        let store = KeyStore::new(SHARDS * 64, 10, "test");
        for key in 0..(SHARDS as u128 * 32) {
            arrive(&store, key, 0);
        }
        assert_eq!(store.len(), SHARDS * 32);
        // Later, every stored key is fresh again: new keys replace them, none early.
        for key in 100_000..(100_000 + SHARDS as u128 * 16) {
            arrive(&store, key, 100);
        }
        assert!(store.len() <= SHARDS * 64);
        assert!(store.len() >= SHARDS * 16, "{}", store.len());
        assert_eq!(store.evicted_early(), 0);
        // A refund gives one request's share back: the key is as if it had not come.
        arrive(&store, 7, 1_000);
        store.refund(7);
        let tat = lock(store.shard(7)).get(&halves(7)).copied();
        assert_eq!(tat, Some(1_000));
    }

    #[test]
    fn a_flood_stays_bounded_and_is_counted() {
        let store = KeyStore::new(1_000, 1_000_000_000, "test");
        for key in 0..100_000_u128 {
            arrive(
                &store,
                key.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                5,
            );
        }
        assert!(store.len() <= 1_000 + SHARDS, "{}", store.len());
        assert!(store.evicted_early() > 0);
    }
}
