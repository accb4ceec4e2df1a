//! Cumulative counters split into per-thread shards on separate cache lines, so two cores
//! recording into the same series do not fight over one line. Readers add the shards up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Shards per series: threads beyond this many share.
const SHARDS: usize = 8;
/// Counters per cache line (two 64-byte lines: adjacent-line prefetching pairs them).
const PER_LINE: usize = 16;

/// One 128-byte line of counters.
#[repr(align(128))]
struct Line([AtomicU64; PER_LINE]);

impl Line {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The shard of the current thread, fixed for its life.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// `width` cumulative counters, sharded.
pub(crate) struct ShardedCounters {
    lines: Box<[Line]>,
    lines_per_shard: usize,
    width: usize,
}

impl ShardedCounters {
    pub(crate) fn new(width: usize) -> Self {
        let lines_per_shard = width.div_ceil(PER_LINE).max(1);
        Self {
            lines: (0..SHARDS * lines_per_shard).map(|_| Line::new()).collect(),
            lines_per_shard,
            width,
        }
    }

    /// Adds `value` to counter `index` in this thread's shard.
    #[inline]
    pub(crate) fn add(&self, index: usize, value: u64) {
        let line = shard() * self.lines_per_shard + index / PER_LINE;
        self.lines[line].0[index % PER_LINE].fetch_add(value, Relaxed);
    }

    /// Adds two counters of this thread's shard (one shard lookup for both).
    #[inline]
    pub(crate) fn add_two(&self, first: (usize, u64), second: (usize, u64)) {
        let base = shard() * self.lines_per_shard;
        for (index, value) in [first, second] {
            self.lines[base + index / PER_LINE].0[index % PER_LINE].fetch_add(value, Relaxed);
        }
    }

    /// Every counter, summed over the shards.
    pub(crate) fn sum(&self) -> Vec<u64> {
        let mut totals = vec![0u64; self.width];
        for shard in self.lines.chunks(self.lines_per_shard) {
            for (index, total) in totals.iter_mut().enumerate() {
                let value = shard[index / PER_LINE].0[index % PER_LINE].load(Relaxed);
                *total = total.wrapping_add(value);
            }
        }
        totals
    }

    /// Bytes held.
    pub(crate) fn memory(&self) -> usize {
        self.lines.len() * std::mem::size_of::<Line>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_up_across_threads() {
        let counters = ShardedCounters::new(20);
        std::thread::scope(|scope| {
            for _ in 0..12 {
                scope.spawn(|| {
                    for i in 0..1_000 {
                        counters.add(i % 20, 1);
                        counters.add_two((0, 2), (19, 3));
                    }
                });
            }
        });
        let sum = counters.sum();
        assert_eq!(sum.len(), 20);
        assert_eq!(sum[0], 12 * (50 + 2_000));
        assert_eq!(sum[19], 12 * (50 + 3_000));
        assert_eq!(sum[1], 12 * 50);
        assert_eq!(counters.memory(), SHARDS * 2 * 128);
    }
}
