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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use std::hash::BuildHasher;

use governor::nanos::Nanos;
use governor::state::StateStore;
use hashbrown::{DefaultHashBuilder, HashTable};

/// Shards: contention stays low with many cores; each shard is one small lock.
const SHARD_BITS: u32 = 4;
const SHARDS: usize = 1 << SHARD_BITS;

/// An entry: the key's two halves (8-byte alignment, so an entry is 24 bytes, not 32) and its
/// theoretical arrival time, updated in place under the shard's read lock (compare and swap,
/// as governor's own stores do): checks of keys already known never wait for each other.
type Entry = (u64, u64, AtomicU64);

#[allow(clippy::cast_possible_truncation)] // The low half is taken on purpose.
fn halves(key: u128) -> (u64, u64) {
    ((key >> 64) as u64, key as u64)
}

/// One shard: entries found by the hash the store computed once per check.
type Shard = HashTable<Entry>;

/// Keys' arrival times, at most `max_keys` of them.
#[derive(Debug)]
pub(crate) struct KeyStore {
    shards: Box<[RwLock<Shard>]>,
    /// Hashes a key once for its shard and its place in the shard (seeded at random per
    /// process: nobody can aim keys at one shard or one bucket).
    hasher: DefaultHashBuilder,
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
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            hasher: DefaultHashBuilder::default(),
            per_shard,
            interval,
            evicted_early: AtomicU64::new(0),
            quota: quota.to_owned(),
            warned: AtomicBool::new(false),
        }
    }

    /// Keys stored now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| read(shard).len()).sum()
    }

    /// Bytes the tables hold now (their capacity, not their length).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(shard).allocation_size())
            .sum()
    }

    /// Keys dropped while still spending their quota.
    pub(crate) fn evicted_early(&self) -> u64 {
        self.evicted_early.load(Ordering::Relaxed)
    }

    /// The key's hash and its shard.
    fn locate(&self, key: u128) -> (u64, &RwLock<Shard>) {
        let hash = self.hasher.hash_one(key);
        // The shard is not taken from the table's hash: for some of its random seeds, the bits
        // of that hash a shard could use barely vary over keys that differ little, and most
        // keys landed in a few shards (seen: four of sixteen). The top bits of a Fibonacci
        // product spread any keys evenly.
        let (high, low) = halves(key);
        #[allow(clippy::cast_possible_truncation)] // `SHARD_BITS` bits.
        let index =
            ((high ^ low).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHARD_BITS)) as usize;
        (hash, &self.shards[index])
    }

    fn rehash(&self) -> impl Fn(&Entry) -> u64 + '_ {
        |&(high, low, _)| {
            self.hasher
                .hash_one((u128::from(high) << 64) | u128::from(low))
        }
    }

    /// Gives `key` back the share of one request: a request one quota allowed and a later one
    /// refused is counted by neither.
    pub(crate) fn refund(&self, key: u128) {
        let (hash, shard) = self.locate(key);
        let (high, low) = halves(key);
        if let Some(entry) = read(shard).find(hash, |e| e.0 == high && e.1 == low) {
            let _ = entry
                .2
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                    Some(tat.saturating_sub(self.interval))
                });
        }
    }

    #[cfg(test)]
    fn arrival(&self, key: u128) -> Option<u64> {
        let (hash, shard) = self.locate(key);
        let (high, low) = halves(key);
        read(shard)
            .find(hash, |e| e.0 == high && e.1 == low)
            .map(|e| e.2.load(Ordering::Acquire))
    }
}

/// A shard to read, even one a panic poisoned: it holds plain numbers, valid whatever
/// happened.
fn read(shard: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    shard.read().unwrap_or_else(PoisonError::into_inner)
}

/// A shard to change (a new key, a clean-up), poisoned or not.
fn write(shard: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    shard.write().unwrap_or_else(PoisonError::into_inner)
}

/// Replaces an arrival time if nobody else did meanwhile: `f` decides from the time it saw.
fn update<T, E>(
    tat: &AtomicU64,
    f: &impl Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
) -> Result<T, E> {
    let mut seen = tat.load(Ordering::Acquire);
    loop {
        let (outcome, next) = f(Some(Nanos::new(seen)))?;
        match tat.compare_exchange_weak(seen, next.as_u64(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(outcome),
            Err(current) => seen = current,
        }
    }
}

impl StateStore for KeyStore {
    type Key = u128;

    fn measure_and_replace<T, F, E>(&self, key: &u128, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (hash, shard) = self.locate(*key);
        let (high, low) = halves(*key);
        let known = |e: &Entry| e.0 == high && e.1 == low;
        if let Some(entry) = read(shard).find(hash, known) {
            return update(&entry.2, &f);
        }
        let mut table = write(shard);
        // Another check may have added the key since the read lock was let go.
        if let Some(entry) = table.find(hash, known) {
            return update(&entry.2, &f);
        }
        let (outcome, next) = f(None)?;
        let next = next.as_u64();
        if table.len() >= self.per_shard {
            // A new key's arrival time is one interval past now.
            let now = next.saturating_sub(self.interval);
            let evicted = make_room(&mut table, now, self.per_shard, &self.rehash());
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
        table.insert_unique(hash, (high, low, AtomicU64::new(next)), self.rehash());
        Ok(outcome)
    }
}

/// Makes room in a full shard: drops its fresh keys, then, while more than three quarters
/// remain, the keys closest to fresh; rebuilds the table (removals leave tombstones that would
/// make a later insert double it). Returns how many still-spending keys were dropped.
fn make_room(table: &mut Shard, now: u64, capacity: usize, rehash: &impl Fn(&Entry) -> u64) -> u64 {
    table.retain(|entry| *entry.2.get_mut() > now);
    let target = capacity - capacity / 4;
    let mut early = 0;
    if table.len() > target {
        let drop = table.len() - target;
        let mut arrivals: Vec<u64> = table.iter_mut().map(|entry| *entry.2.get_mut()).collect();
        let (_, cut, _) = arrivals.select_nth_unstable(drop - 1);
        let cut = *cut;
        let before = table.len();
        table.retain(|entry| *entry.2.get_mut() > cut);
        early = (before - table.len()) as u64;
    }
    let mut rebuilt = HashTable::with_capacity(capacity);
    for entry in table.drain() {
        rebuilt.insert_unique(rehash(&entry), entry, rehash);
    }
    *table = rebuilt;
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
        assert_eq!(store.arrival(7), Some(1_000));
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
