//! The keys' states, in memory: bounded in entries and in bytes, kept for the retention time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use http::{HeaderMap, StatusCode};

/// Keys remembered at most when not told otherwise.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Bytes of stored responses kept at most when not told otherwise (64 MiB).
pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

const SHARDS: usize = 16;

/// A response kept to be replayed: its status, its headers (hop-by-hop and, unless kept,
/// `Set-Cookie` removed) and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl StoredResponse {
    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        self.body.len() + headers + 64
    }
}

/// What the store says to a request that brings a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its record expired): this request runs; it holds the key until it
    /// completes or is released.
    Run,
    /// A request with this key and the same fingerprint is running.
    InProgress,
    /// The key belongs to a different request.
    Mismatch,
    /// The key's request completed: replay its response.
    Replay(Arc<StoredResponse>),
    /// The key's request completed, and its response was not kept.
    NotReplayable,
    /// Every slot holds a request in flight: nothing can be recorded.
    Full,
}

#[derive(Debug)]
enum State {
    InFlight,
    Done(Option<Arc<StoredResponse>>),
}

#[derive(Debug)]
struct Entry {
    /// This record's number in its shard's order.
    number: u64,
    fingerprint: u128,
    state: State,
    at: Instant,
    weight: usize,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<u128, Entry>,
    /// Keys in the order their records began, each with the record's number: the oldest are
    /// looked at first when room is needed (a number that no longer matches is a stale line).
    order: VecDeque<(u128, u64)>,
    next: u64,
    bytes: usize,
}

/// The in-memory store: 16 shards, each a map under its own lock.
#[derive(Debug)]
pub struct MemoryStore {
    shards: [Mutex<Shard>; SHARDS],
    keys_per_shard: usize,
    bytes_per_shard: usize,
    retention: Duration,
}

/// The rule: what a stored entry (if any, and not expired) means for a request with
/// `fingerprint`. A pure function, the same for every store.
pub fn decide(
    existing: Option<(u128, Option<Option<&Arc<StoredResponse>>>)>,
    fingerprint: u128,
) -> Claim {
    match existing {
        None => Claim::Run,
        Some((stored, _)) if stored != fingerprint => Claim::Mismatch,
        Some((_, None)) => Claim::InProgress,
        Some((_, Some(Some(response)))) => Claim::Replay(Arc::clone(response)),
        Some((_, Some(None))) => Claim::NotReplayable,
    }
}

impl MemoryStore {
    /// A store keeping records `retention` long, at most `max_keys` of them and `max_bytes`
    /// of responses.
    pub fn new(retention: Duration, max_keys: usize, max_bytes: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
            keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            bytes_per_shard: max_bytes.div_ceil(SHARDS),
            retention,
        }
    }

    fn shard(&self, scope: u128) -> std::sync::MutexGuard<'_, Shard> {
        let index = usize::try_from(scope >> 124).unwrap_or(0) % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A request with key `scope` and `fingerprint` arrived at `now`.
    pub fn claim(&self, scope: u128, fingerprint: u128, now: Instant) -> Claim {
        let mut shard = self.shard(scope);
        let live = shard.entries.get(&scope).filter(|entry| {
            matches!(entry.state, State::InFlight)
                || now.saturating_duration_since(entry.at) < self.retention
        });
        let claim = decide(
            live.map(|entry| {
                let done = match &entry.state {
                    State::InFlight => None,
                    State::Done(response) => Some(response.as_ref()),
                };
                (entry.fingerprint, done)
            }),
            fingerprint,
        );
        if claim != Claim::Run {
            return claim;
        }
        if let Some(expired) = shard.entries.remove(&scope) {
            shard.bytes = shard.bytes.saturating_sub(expired.weight);
        }
        if shard.entries.len() >= self.keys_per_shard && !self.make_room(&mut shard, 0) {
            return Claim::Full;
        }
        let number = shard.next;
        shard.next += 1;
        shard.order.push_back((scope, number));
        // Lines of records removed elsewhere (released, begun again) must not pile up: dropped
        // when they outnumber the records two to one (amortised: once per that many claims).
        if shard.order.len() > 2 * shard.entries.len().max(64) {
            let Shard { entries, order, .. } = &mut *shard;
            order.retain(|(scope, number)| {
                entries
                    .get(scope)
                    .is_some_and(|entry| entry.number == *number)
            });
        }
        shard.entries.insert(
            scope,
            Entry {
                number,
                fingerprint,
                state: State::InFlight,
                at: now,
                weight: 0,
            },
        );
        Claim::Run
    }

    /// The request holding `scope` completed: its response (`None`: not kept) is recorded for
    /// the retention time.
    pub fn complete(
        &self,
        scope: u128,
        fingerprint: u128,
        response: Option<StoredResponse>,
        now: Instant,
    ) {
        let mut shard = self.shard(scope);
        let response = response.map(Arc::new);
        let mut weight = response.as_ref().map_or(0, |response| response.weight());
        let response = if weight > self.bytes_per_shard {
            weight = 0;
            None
        } else {
            response
        };
        if shard.bytes + weight > self.bytes_per_shard {
            self.make_room(&mut shard, weight);
        }
        let fits = shard.bytes + weight <= self.bytes_per_shard;
        let (response, weight) = if fits { (response, weight) } else { (None, 0) };
        let Some(entry) = shard.entries.get_mut(&scope) else {
            return;
        };
        if entry.fingerprint != fingerprint || !matches!(entry.state, State::InFlight) {
            return;
        }
        entry.state = State::Done(response);
        entry.at = now;
        entry.weight = weight;
        shard.bytes += weight;
    }

    /// The request holding `scope` ended without a response worth keeping (it failed, or
    /// was dropped): the key is free again, so the client can retry.
    pub fn release(&self, scope: u128, fingerprint: u128) {
        let mut shard = self.shard(scope);
        let ours = shard.entries.get(&scope).is_some_and(|entry| {
            entry.fingerprint == fingerprint && matches!(entry.state, State::InFlight)
        });
        if ours {
            shard.entries.remove(&scope);
        }
    }

    /// Frees a slot (and `bytes` of room), oldest records first — expired or completed; a
    /// request in flight is never dropped (it goes to the back of the line). Each call looks at
    /// each line at most once. Whether there is a free slot now.
    fn make_room(&self, shard: &mut Shard, bytes: usize) -> bool {
        let mut looked = 0;
        let lines = shard.order.len();
        while (shard.entries.len() >= self.keys_per_shard
            || shard.bytes + bytes > self.bytes_per_shard)
            && looked < lines
        {
            looked += 1;
            let Some((scope, number)) = shard.order.pop_front() else {
                break;
            };
            let in_flight = match shard.entries.get(&scope) {
                Some(entry) if entry.number == number => matches!(entry.state, State::InFlight),
                // A record since removed or begun again: a stale line.
                _ => continue,
            };
            if in_flight {
                shard.order.push_back((scope, number));
                continue;
            }
            if let Some(entry) = shard.entries.remove(&scope) {
                shard.bytes = shard.bytes.saturating_sub(entry.weight);
            }
        }
        shard.entries.len() < self.keys_per_shard
    }

    /// Keys remembered now (in flight or completed, expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &'static str) -> StoredResponse {
        StoredResponse {
            status: StatusCode::CREATED,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn a_key_runs_once_then_replays_and_refuses_another_request() {
        let store = MemoryStore::new(Duration::from_mins(1), 100, 1 << 20);
        let now = Instant::now();
        assert_eq!(store.claim(1, 10, now), Claim::Run);
        assert_eq!(store.claim(1, 10, now), Claim::InProgress);
        assert_eq!(store.claim(1, 11, now), Claim::Mismatch);
        store.complete(1, 10, Some(response("{\"id\":1}")), now);
        let Claim::Replay(stored) = store.claim(1, 10, now) else {
            panic!("a replay");
        };
        assert_eq!(stored.body, "{\"id\":1}");
        assert_eq!(store.claim(1, 11, now), Claim::Mismatch);
        assert_eq!(store.claim(2, 10, now), Claim::Run, "another key");
    }

    #[test]
    fn records_expire_and_released_keys_run_again() {
        let store = MemoryStore::new(Duration::from_mins(1), 100, 1 << 20);
        let now = Instant::now();
        assert_eq!(store.claim(1, 10, now), Claim::Run);
        store.complete(1, 10, None, now);
        assert_eq!(store.claim(1, 10, now), Claim::NotReplayable);
        let later = now + Duration::from_secs(61);
        assert_eq!(
            store.claim(1, 12, later),
            Claim::Run,
            "expired: a new request"
        );
        store.release(1, 12);
        assert_eq!(store.claim(1, 13, later), Claim::Run, "released");
        store.release(1, 99);
        assert_eq!(
            store.claim(1, 13, later),
            Claim::InProgress,
            "only its holder releases it"
        );
    }

    #[test]
    fn the_store_is_bounded_and_never_drops_a_request_in_flight() {
        let store = MemoryStore::new(Duration::from_mins(1), SHARDS, 1 << 20);
        let now = Instant::now();
        // One key per shard: each shard holds one.
        let keys: Vec<u128> = (0..SHARDS as u128).map(|shard| shard << 124).collect();
        for key in &keys {
            assert_eq!(store.claim(*key, 1, now), Claim::Run);
        }
        let same_shard = keys[0] | 7;
        assert_eq!(
            store.claim(same_shard, 1, now),
            Claim::Full,
            "its holder is in flight"
        );
        store.complete(keys[0], 1, Some(response("x")), now);
        assert_eq!(
            store.claim(same_shard, 1, now),
            Claim::Run,
            "the completed one went"
        );
        assert_eq!(store.claim(keys[0], 1, now), Claim::Full);
    }

    #[test]
    fn freed_keys_leave_no_lines_behind_and_a_full_store_evicts_in_order() {
        let store = MemoryStore::new(Duration::from_mins(1), SHARDS * 100, 1 << 20);
        let now = Instant::now();
        for key in 0..10_000u128 {
            assert_eq!(store.claim(key, 1, now), Claim::Run);
            store.release(key, 1);
        }
        let lines: usize = store
            .shards
            .iter()
            .map(|s| s.lock().unwrap().order.len())
            .sum();
        assert!(lines <= SHARDS * 129, "{lines} lines for no record");
        // Full of completed records: each new key evicts the oldest, in constant time.
        // Small keys: the shard is chosen by the top four bits, so all go to shard 0.
        for key in 0..300u128 {
            assert_eq!(store.claim(key << 8, 1, now), Claim::Run);
            store.complete(key << 8, 1, None, now);
        }
        assert_eq!(store.shards[0].lock().unwrap().entries.len(), 100);
        assert_eq!(
            store.claim(299 << 8, 1, now),
            Claim::NotReplayable,
            "the newest is kept"
        );
        assert_eq!(store.claim(0, 1, now), Claim::Run, "the oldest went");
    }

    #[test]
    fn responses_too_large_for_the_store_are_not_kept() {
        let store = MemoryStore::new(Duration::from_mins(1), 100, SHARDS * 100);
        let now = Instant::now();
        assert_eq!(store.claim(1, 1, now), Claim::Run);
        let big: &'static str = "x".repeat(500).leak();
        store.complete(1, 1, Some(response(big)), now);
        assert_eq!(store.claim(1, 1, now), Claim::NotReplayable);
    }
}
