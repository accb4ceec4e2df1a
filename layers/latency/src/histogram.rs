//! The log-linear bucket layout shared by every window: 2,048 buckets over 0 ns – 137 s with a
//! relative error of at most 1/128 (0.78%) for any quantile.
//!
//! Values below 128 ns have a bucket each. Above, every power of two `[2^h, 2^(h+1))` is cut
//! into 64 buckets of equal width `2^(h-6)`: a bucket is at most 1/64 of its lower bound wide, so
//! its midpoint is within 1/128 of any value in it. Indexing is a leading-zero count and two
//! shifts: no floating point, no table.

/// Sub-buckets per power of two, as a power of two (64).
const SUB_BITS: u32 = 6;
/// Values below this have a bucket of their own.
const LINEAR: u64 = 2 << SUB_BITS;
/// The largest value with a bucket of its own precision, in nanoseconds (2^37 − 1, ~137 s);
/// larger values count in the last bucket.
pub(crate) const MAX_TRACKED_NANOS: u64 = (1 << 37) - 1;
/// The number of buckets.
pub(crate) const BUCKETS: usize = bucket_index(MAX_TRACKED_NANOS) + 1;

/// The bucket of a duration in nanoseconds. (Indexes are below 2,048: no truncation.)
#[inline]
#[allow(clippy::cast_possible_truncation)]
pub(crate) const fn bucket_index(nanos: u64) -> usize {
    let nanos = if nanos > MAX_TRACKED_NANOS {
        MAX_TRACKED_NANOS
    } else {
        nanos
    };
    if nanos < LINEAR {
        return nanos as usize;
    }
    let octave = nanos.ilog2(); // ≥ SUB_BITS + 1
    let shift = octave - SUB_BITS;
    let sub = (nanos >> shift) - (1 << SUB_BITS);
    (LINEAR + ((octave - SUB_BITS - 1) as u64) * (1 << SUB_BITS) + sub) as usize
}

/// The lowest value of a bucket and its width, in nanoseconds.
const fn bucket_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < LINEAR {
        return (index, 1);
    }
    let offset = index - LINEAR;
    let octave = offset / (1 << SUB_BITS) + SUB_BITS as u64 + 1;
    let sub = offset % (1 << SUB_BITS) + (1 << SUB_BITS);
    let shift = octave - SUB_BITS as u64;
    (sub << shift, 1 << shift)
}

/// The value a bucket stands for: its midpoint (exact below 128 ns).
pub(crate) const fn bucket_value(index: usize) -> u64 {
    let (low, width) = bucket_bounds(index);
    low + width / 2
}

/// The nearest-rank position of quantile `q` among `count` samples: the `ceil(q·count)`-th
/// smallest, at least the first. Products that are whole numbers up to floating-point noise
/// (0.99 × 100) count as whole.
pub(crate) fn rank(q: f64, count: u64) -> u64 {
    #[allow(clippy::cast_precision_loss)]
    let exact = q.clamp(0.0, 1.0) * count as f64;
    let nearest = exact.round();
    let rank = if (exact - nearest).abs() <= exact * 1e-12 {
        nearest
    } else {
        exact.ceil()
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = rank as u64;
    rank.clamp(1, count.max(1))
}

/// The value of quantile `q` from bucket counts, by nearest rank; `None` without samples.
#[cfg(test)] // The reference the one-pass `quantiles` is tested against.
pub(crate) fn quantile(counts: &[u64], total: u64, q: f64) -> Option<u64> {
    if total == 0 {
        return None;
    }
    let rank = rank(q, total);
    let mut seen = 0;
    for (index, &count) in counts.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(bucket_value(index));
        }
    }
    // Counts changed while read (a concurrent slot reset): the highest non-empty bucket.
    counts.iter().rposition(|&c| c > 0).map(bucket_value)
}

/// Several quantiles (`qs` in increasing order) in one pass over the buckets: a snapshot of
/// hundreds of routes reads each series' buckets once, not once per quantile.
pub(crate) fn quantiles<const N: usize>(
    counts: &[u64],
    total: u64,
    qs: [f64; N],
) -> [Option<u64>; N] {
    let mut found = [None; N];
    if total == 0 {
        return found;
    }
    let ranks = qs.map(|q| rank(q, total));
    let mut next = 0;
    let mut seen = 0;
    for (index, &count) in counts.iter().enumerate() {
        seen += count;
        while next < N && seen >= ranks[next] {
            found[next] = Some(bucket_value(index));
            next += 1;
        }
        if next == N {
            return found;
        }
    }
    // Counts changed while read (a concurrent slot reset): the highest non-empty bucket.
    let highest = counts.iter().rposition(|&c| c > 0).map(bucket_value);
    for slot in &mut found[next..] {
        *slot = highest;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_nearest_rank_with_float_noise_forgiven() {
        // 0.07 × 100 is 7.000000000000001 in floating point: still the 7th, not the 8th.
        assert_eq!(rank(0.07, 100), 7);
        // 0.99 × 100 is 98.99999999999999: the 99th.
        assert_eq!(rank(0.99, 100), 99);
        // A true fraction rounds up: 28.4 → the 29th (never down to the 28th).
        assert_eq!(rank(0.284, 100), 29);
        assert_eq!(rank(0.5, 3), 2);
        assert_eq!(rank(0.0, 10), 1, "at least the first");
        assert_eq!(rank(1.0, 10), 10);
        assert_eq!(rank(2.0, 10), 10, "q is clamped");
        assert_eq!(rank(0.5, 0), 1);
    }

    #[test]
    fn counts_read_mid_reset_fall_back_to_the_highest_non_empty_bucket() {
        let mut counts = vec![0u64; BUCKETS];
        counts[5] = 1;
        counts[10] = 1;
        // The total says ten samples, the buckets hold two (a slot was reset while read).
        let [p50, p99] = quantiles(&counts, 10, [0.5, 0.99]);
        assert_eq!(p50, Some(bucket_value(10)));
        assert_eq!(p99, Some(bucket_value(10)));
        assert_eq!(quantile(&counts, 10, 0.5), Some(bucket_value(10)));
        // The first quantiles found before the counts ran out are kept.
        let [p10, p90] = quantiles(&counts, 10, [0.1, 0.9]);
        assert_eq!((p10, p90), (Some(bucket_value(5)), Some(bucket_value(10))));
    }

    #[test]
    fn one_pass_quantiles_agree_with_one_at_a_time() {
        let mut counts = vec![0u64; BUCKETS];
        for (i, slot) in counts.iter_mut().enumerate().step_by(7) {
            *slot = (i % 13) as u64 + 1;
        }
        let total: u64 = counts.iter().sum();
        let qs = [0.5, 0.9, 0.95, 0.99, 0.999];
        let together = quantiles(&counts, total, qs);
        for (q, value) in qs.iter().zip(together) {
            assert_eq!(value, quantile(&counts, total, *q), "q = {q}");
        }
        assert_eq!(quantiles(&counts, 0, qs), [None; 5]);
    }

    #[test]
    fn layout_covers_the_tracked_range_in_2048_buckets() {
        assert_eq!(BUCKETS, 2048);
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(127), 127);
        assert_eq!(bucket_index(128), 128);
        assert_eq!(bucket_index(MAX_TRACKED_NANOS), BUCKETS - 1);
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn every_value_lies_in_its_bucket_and_indexes_grow_with_values() {
        let mut previous = 0;
        let mut value = 0u64;
        while value <= MAX_TRACKED_NANOS {
            let index = bucket_index(value);
            let (low, width) = bucket_bounds(index);
            assert!(
                low <= value && value < low + width,
                "{value} in bucket {index}"
            );
            assert!(index >= previous);
            previous = index;
            value = value * 17 / 16 + 1;
        }
    }

    #[test]
    fn bucket_bounds_tile_the_range_without_gaps() {
        let mut next = 0;
        for index in 0..BUCKETS {
            let (low, width) = bucket_bounds(index);
            assert_eq!(low, next, "bucket {index}");
            assert_eq!(bucket_index(low), index);
            assert_eq!(bucket_index(low + width - 1), index);
            next = low + width;
        }
        assert_eq!(next, MAX_TRACKED_NANOS + 1);
    }

    #[test]
    fn the_midpoint_is_within_one_128th_of_every_value_of_its_bucket() {
        for index in 0..BUCKETS {
            let (low, width) = bucket_bounds(index);
            let mid = bucket_value(index);
            for value in [low, low + width - 1] {
                let error = mid.abs_diff(value);
                assert!(
                    error * 128 <= value.max(1),
                    "bucket {index}: {mid} for {value}"
                );
            }
        }
    }

    #[test]
    fn rank_is_the_nearest_rank_without_floating_point_surprises() {
        assert_eq!(rank(0.99, 100), 99);
        assert_eq!(rank(0.999, 100_000), 99_900);
        assert_eq!(rank(0.5, 3), 2);
        assert_eq!(rank(0.5, 1), 1);
        assert_eq!(rank(0.0, 10), 1);
        assert_eq!(rank(1.0, 10), 10);
        assert_eq!(rank(0.95, 7), 7);
    }

    #[test]
    fn quantile_walks_the_counts() {
        let mut counts = vec![0; BUCKETS];
        counts[10] = 5;
        counts[20] = 5;
        assert_eq!(quantile(&counts, 10, 0.5), Some(10));
        assert_eq!(quantile(&counts, 10, 0.6), Some(20));
        assert_eq!(quantile(&counts, 0, 0.5), None);
    }
}
