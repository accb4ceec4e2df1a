//! A per-thread cache of the series a thread recorded into last, so the common case — the same
//! few routes again and again — skips the shared map's hashing and its reference counting.
//!
//! An entry is found by the identity of the route label's text (same pointer, same length):
//! axum hands every request of a route the same shared `MatchedPath` string, and static labels
//! never move. The entry keeps its own clone of the label, so the text it points to cannot be
//! freed and reused for another route while the entry lives.

use std::cell::RefCell;
use std::sync::Arc;

use vitals_core::route::RouteLabel;

use crate::series::Series;

const ENTRIES: usize = 8;

struct Entry {
    registry: u64,
    route: RouteLabel,
    method: &'static str,
    status: u16,
    series: Arc<Series>,
}

impl Entry {
    fn matches(&self, registry: u64, route: &str, method: &'static str, status: u16) -> bool {
        let cached = self.route.as_str();
        self.registry == registry
            && self.status == status
            && std::ptr::eq(cached.as_ptr(), route.as_ptr())
            && cached.len() == route.len()
            && std::ptr::eq(self.method, method)
    }
}

#[derive(Default)]
struct Cache {
    entries: [Option<Entry>; ENTRIES],
    /// The entry to replace next (round robin).
    next: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
}

/// What a cache miss found: the series, and whether it is the overflow series (never cached:
/// every request folded into it must be counted as such).
pub(crate) struct Found {
    pub(crate) series: Arc<Series>,
    pub(crate) overflow: bool,
}

/// Hands `record` the series of (`route`, `method`, `status`) in `registry`, from this thread's
/// cache or from `find`.
#[inline]
pub(crate) fn with_series(
    registry: u64,
    route: &RouteLabel,
    method: &'static str,
    status: u16,
    find: impl FnOnce() -> Found,
    record: impl FnOnce(&Series),
) {
    let text = route.as_str();
    // Recorded while the entry is borrowed: a hit touches no reference count.
    let mut record = Some(record);
    let hit = CACHE
        .try_with(|cache| {
            let Ok(cache) = cache.try_borrow() else {
                return false;
            };
            let Some(entry) = cache
                .entries
                .iter()
                .flatten()
                .find(|entry| entry.matches(registry, text, method, status))
            else {
                return false;
            };
            if let Some(record) = record.take() {
                record(&entry.series);
            }
            true
        })
        .unwrap_or(false);
    let Some(record) = record.filter(|_| !hit) else {
        return;
    };
    let found = find();
    record(&found.series);
    if !found.overflow {
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                let slot = cache.next;
                cache.next = (slot + 1) % ENTRIES;
                cache.entries[slot] = Some(Entry {
                    registry,
                    route: route.clone(),
                    method,
                    status,
                    series: found.series,
                });
            }
        });
    }
}
