//! Fingerprints of statements seen before, by statement text.
//!
//! Applications run the same statement texts over and over (placeholders, not literals), so
//! most statements hit the cache and cost a hash and a lookup instead of a tokenization. The
//! cache is bounded: each of its shards is emptied when it fills, which a workload of ever-new
//! texts (literals inlined) would cause; such texts are tokenized every time, as without it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use crate::fingerprint::{SqlDialect, fingerprint_hash, fingerprint_in};

const SHARDS: usize = 16;
const ENTRIES_PER_SHARD: usize = 256;

type Entries = HashMap<Box<str>, (Arc<str>, u64), BuildHasherDefault<WordHasher>>;
type Shard = Mutex<Entries>;

/// One cache per dialect: the same text can have two fingerprints.
const DIALECTS: usize = 3;

static CACHE: LazyLock<[[Shard; SHARDS]; DIALECTS]> =
    LazyLock::new(|| std::array::from_fn(|_| std::array::from_fn(|_| Shard::default())));

/// The fingerprint of `statement` in `dialect` and its hash, from the cache when seen before.
pub(crate) fn fingerprint_of(statement: &str, dialect: SqlDialect) -> (Arc<str>, u64) {
    let mut hasher = WordHasher::default();
    hasher.write(statement.as_bytes());
    let shards = &CACHE[match dialect {
        SqlDialect::Standard => 0,
        SqlDialect::MySql => 1,
        SqlDialect::Sqlite => 2,
    }];
    let shard = &shards[usize::try_from(hasher.finish() >> 60).unwrap_or(0) % SHARDS];
    if let Some(hit) = lock(shard).get(statement) {
        return hit.clone();
    }
    let print = fingerprint_in(statement, dialect);
    let key = fingerprint_hash(&print);
    let entry = (Arc::<str>::from(print), key);
    let mut map = lock(shard);
    if map.len() >= ENTRIES_PER_SHARD {
        map.clear();
    }
    map.insert(statement.into(), entry.clone());
    entry
}

fn lock(shard: &Shard) -> std::sync::MutexGuard<'_, Entries> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fast, non-cryptographic hasher that eats eight bytes per step (Fx-style). The keys are
/// statement texts of a few hundred bytes; SipHash would cost more than the lookup saves.
#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_and_fresh_fingerprints_agree() {
        for sql in ["SELECT 1", "SELECT * FROM t WHERE id = $1", "SELECT 1"] {
            let (print, key) = fingerprint_of(sql, SqlDialect::Standard);
            assert_eq!(&*print, crate::fingerprint::fingerprint(sql));
            assert_eq!(key, fingerprint_hash(&print));
        }
        // The same text in two dialects: two fingerprints, each from its own cache.
        let sql = r#"SELECT a FROM t WHERE b = "x""#;
        let standard = fingerprint_of(sql, SqlDialect::Standard);
        let mysql = fingerprint_of(sql, SqlDialect::MySql);
        assert_eq!(&*standard.0, sql);
        assert_eq!(&*mysql.0, "SELECT a FROM t WHERE b = ?");
        assert_eq!(fingerprint_of(sql, SqlDialect::Standard), standard);
    }

    #[test]
    fn the_cache_stays_bounded() {
        for n in 0..SHARDS * ENTRIES_PER_SHARD * 2 {
            let _ = fingerprint_of(&format!("SELECT {n} FROM bounded"), SqlDialect::Standard);
        }
        for shard in CACHE.iter().flatten() {
            assert!(lock(shard).len() <= ENTRIES_PER_SHARD);
        }
    }
}
