//! Sliding windows: a ring of 30-second slots, each a log-linear histogram of its own, so the
//! last minute and the last five minutes are sums of a few slots.

use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
    fence,
};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::histogram::BUCKETS;

/// The length of one slot.
pub(crate) const SLOT: Duration = Duration::from_secs(30);
/// Slots in the ring: the five-minute window's ten full slots and the current one.
pub(crate) const SLOTS: usize = 11;
/// The tag of a slot that never held samples.
const NEVER: u64 = u64::MAX;
/// The tag of a slot being recycled: readers skip it, recorders wait for the recycling.
const RECYCLING: u64 = u64::MAX - 1;

/// A window over which local quantiles are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "json", derive(serde::Serialize))]
pub enum Window {
    /// The last minute: the current 30-second slot and the two before it (60–90 s of data).
    #[cfg_attr(feature = "json", serde(rename = "1m"))]
    OneMinute,
    /// The last five minutes: the current slot and the ten before it (300–330 s of data).
    #[cfg_attr(feature = "json", serde(rename = "5m"))]
    FiveMinutes,
}

impl Window {
    /// The number of slots the window sums.
    pub(crate) const fn slots(self) -> u64 {
        match self {
            Self::OneMinute => 3,
            Self::FiveMinutes => 11,
        }
    }

    /// The short name: `1m` or `5m`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OneMinute => "1m",
            Self::FiveMinutes => "5m",
        }
    }

    /// Parses `1m` or `5m`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "1m" => Some(Self::OneMinute),
            "5m" => Some(Self::FiveMinutes),
            _ => None,
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One slot: the samples of one 30-second epoch.
struct Slot {
    /// The epoch whose samples the slot holds, or [`NEVER`].
    epoch: AtomicU64,
    /// Allocated on first use: a series that is seldom hit costs little.
    buckets: OnceLock<Box<[AtomicU32]>>,
    errors: AtomicU32,
    cancelled: AtomicU32,
    max_nanos: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(NEVER),
            buckets: OnceLock::new(),
            errors: AtomicU32::new(0),
            cancelled: AtomicU32::new(0),
            max_nanos: AtomicU64::new(0),
        }
    }

    fn buckets(&self) -> &[AtomicU32] {
        self.buckets
            .get_or_init(|| (0..BUCKETS).map(|_| AtomicU32::new(0)).collect())
    }
}

/// What a window holds for one series, summed over its slots.
#[derive(Clone, Debug)]
pub(crate) struct WindowCounts {
    pub(crate) buckets: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) errors: u64,
    pub(crate) cancelled: u64,
    pub(crate) max_nanos: u64,
}

impl WindowCounts {
    pub(crate) fn new() -> Self {
        Self {
            buckets: vec![0; BUCKETS],
            count: 0,
            errors: 0,
            cancelled: 0,
            max_nanos: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.fill(0);
        self.count = 0;
        self.errors = 0;
        self.cancelled = 0;
        self.max_nanos = 0;
    }
}

/// The ring of slots of one series.
pub(crate) struct SlidingWindows {
    slots: [Slot; SLOTS],
    /// Taken only to recycle a slot for a new epoch: once per slot per 30 s.
    recycle: Mutex<()>,
}

impl SlidingWindows {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot::new()),
            recycle: Mutex::new(()),
        }
    }

    /// The slot of `epoch`, recycled if it still holds an older epoch; `None` when a newer one
    /// has taken it already (a sample that finished over five minutes ago).
    fn slot(&self, epoch: u64) -> Option<&Slot> {
        #[allow(clippy::cast_possible_truncation)]
        let slot = &self.slots[(epoch % SLOTS as u64) as usize];
        let tag = slot.epoch.load(Acquire);
        if tag == epoch {
            return Some(slot);
        }
        if tag != NEVER && tag != RECYCLING && tag > epoch {
            return None;
        }
        let _recycling = self
            .recycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tag = slot.epoch.load(Acquire);
        if tag != epoch {
            if tag != NEVER && tag > epoch {
                return None;
            }
            // A seqlock's write: readers that saw the old tag see a change and drop the slot.
            slot.epoch.store(RECYCLING, Relaxed);
            fence(Release);
            if let Some(buckets) = slot.buckets.get() {
                for bucket in buckets {
                    bucket.store(0, Relaxed);
                }
            }
            slot.errors.store(0, Relaxed);
            slot.cancelled.store(0, Relaxed);
            slot.max_nanos.store(0, Relaxed);
            slot.epoch.store(epoch, Release);
        }
        Some(slot)
    }

    /// Counts one finished request.
    #[inline]
    pub(crate) fn record(&self, epoch: u64, bucket: usize, nanos: u64, error: bool) {
        let Some(slot) = self.slot(epoch) else {
            return;
        };
        slot.buckets()[bucket].fetch_add(1, Relaxed);
        if nanos > slot.max_nanos.load(Relaxed) {
            slot.max_nanos.fetch_max(nanos, Relaxed);
        }
        if error {
            slot.errors.fetch_add(1, Relaxed);
        }
    }

    /// Counts one cancelled request.
    pub(crate) fn record_cancelled(&self, epoch: u64) {
        if let Some(slot) = self.slot(epoch) {
            slot.cancelled.fetch_add(1, Relaxed);
        }
    }

    /// Adds the slots of the `window` ending in epoch `now` to `into`. A slot recycled while it
    /// is read is left out rather than half counted.
    pub(crate) fn read(&self, now: u64, window: Window, into: &mut WindowCounts) {
        let oldest = now.saturating_sub(window.slots() - 1);
        let mut scratch = vec![0u64; BUCKETS];
        for slot in &self.slots {
            let tag = slot.epoch.load(Acquire);
            if tag == NEVER || tag == RECYCLING || tag < oldest || tag > now {
                continue;
            }
            let mut count = 0;
            match slot.buckets.get() {
                Some(buckets) => {
                    for (out, bucket) in scratch.iter_mut().zip(buckets.iter()) {
                        *out = u64::from(bucket.load(Relaxed));
                        count += *out;
                    }
                }
                None => scratch.fill(0),
            }
            let errors = u64::from(slot.errors.load(Relaxed));
            let cancelled = u64::from(slot.cancelled.load(Relaxed));
            let max_nanos = slot.max_nanos.load(Relaxed);
            // A seqlock's read: the loads above happen before the tag is checked again.
            fence(Acquire);
            if slot.epoch.load(Relaxed) != tag {
                continue;
            }
            for (sum, add) in into.buckets.iter_mut().zip(&scratch) {
                *sum += add;
            }
            into.count += count;
            into.errors += errors;
            into.cancelled += cancelled;
            into.max_nanos = into.max_nanos.max(max_nanos);
        }
    }

    /// Bytes this ring holds now (slots allocate their buckets on first use).
    pub(crate) fn memory(&self) -> usize {
        let allocated = self
            .slots
            .iter()
            .filter(|slot| slot.buckets.get().is_some())
            .count();
        std::mem::size_of::<Self>() + allocated * BUCKETS * std::mem::size_of::<AtomicU32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::bucket_index;

    fn counts(windows: &SlidingWindows, now: u64, window: Window) -> WindowCounts {
        let mut counts = WindowCounts::new();
        windows.read(now, window, &mut counts);
        counts
    }

    #[test]
    fn windows_sum_the_slots_they_cover() {
        let windows = SlidingWindows::new();
        for epoch in 0..11 {
            windows.record(epoch, bucket_index(1_000), 1_000, epoch % 2 == 0);
        }
        windows.record_cancelled(10);
        let one = counts(&windows, 10, Window::OneMinute);
        assert_eq!((one.count, one.errors, one.cancelled), (3, 2, 1));
        let five = counts(&windows, 10, Window::FiveMinutes);
        assert_eq!((five.count, five.errors), (11, 6));
        assert_eq!(five.max_nanos, 1_000);
    }

    #[test]
    fn old_slots_are_recycled_and_stale_samples_dropped() {
        let windows = SlidingWindows::new();
        windows.record(0, bucket_index(5), 5, false);
        windows.record(11, bucket_index(7), 7, false);
        // Epoch 0's slot now holds epoch 11: a late sample of epoch 0 is dropped.
        windows.record(0, bucket_index(5), 5, false);
        let now = counts(&windows, 11, Window::FiveMinutes);
        assert_eq!(now.count, 1);
        assert_eq!(now.max_nanos, 7);
        assert_eq!(counts(&windows, 40, Window::FiveMinutes).count, 0);
    }

    #[test]
    fn an_idle_series_allocates_no_buckets() {
        let windows = SlidingWindows::new();
        let idle = windows.memory();
        windows.record_cancelled(0);
        assert_eq!(windows.memory(), idle);
        windows.record(0, 0, 0, false);
        assert_eq!(windows.memory(), idle + BUCKETS * 4);
    }
}
