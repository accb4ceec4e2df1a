//! `Permits`: the calls under way to one downstream, counted against its limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The calls under way, shared by every service of one layer. A bulkhead never waits for a
/// permit (a call past the limit fails at once), so a counter does what a semaphore would —
/// without the lock tokio's semaphore takes on every release to hand permits to waiters that a
/// bulkhead never has.
/// The downstream's name is kept with them: a clone of the layer's services then takes one
/// reference count, not two.
#[derive(Debug)]
pub(crate) struct Permits {
    name: Arc<str>,
    in_flight: AtomicUsize,
    limit: usize,
}

impl Permits {
    /// Room for `limit` calls at once (at least one) to the downstream named `name`.
    pub(crate) fn new(name: Arc<str>, limit: usize) -> Self {
        Self {
            name,
            in_flight: AtomicUsize::new(0),
            limit: limit.max(1),
        }
    }

    /// The downstream's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The most calls at once.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Calls under way now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// A permit for one more call, or `None` when `limit` are under way. (The count guards no
    /// other memory: relaxed updates keep it exact, as every update is one atomic step.)
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Permit> {
        let mut current = self.in_flight.load(Relaxed);
        loop {
            if current >= self.limit {
                return None;
            }
            match self
                .in_flight
                .compare_exchange_weak(current, current + 1, Relaxed, Relaxed)
            {
                Ok(_) => return Some(Permit(Arc::clone(self))),
                Err(now) => current = now,
            }
        }
    }
}

/// One call's place under the limit, given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit(Arc<Permits>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_are_taken_and_a_dropped_permit_frees_its_place() {
        let permits = Arc::new(Permits::new("test".into(), 2));
        let first = permits.try_take().expect("room for the first");
        let second = permits.try_take().expect("room for the second");
        assert!(permits.try_take().is_none(), "a third past the limit of 2");
        assert_eq!(permits.in_flight(), 2);
        drop(first);
        assert_eq!(permits.in_flight(), 1);
        let third = permits.try_take().expect("the freed place");
        drop((second, third));
        assert_eq!(permits.in_flight(), 0);
        // A limit of zero is one.
        assert_eq!(Permits::new("test".into(), 0).limit(), 1);
    }

    #[test]
    fn concurrent_takers_never_pass_the_limit() {
        let permits = Arc::new(Permits::new("test".into(), 3));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (permits, most) = (Arc::clone(&permits), Arc::clone(&most));
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(permit) = permits.try_take() {
                            most.fetch_max(permits.in_flight(), Relaxed);
                            drop(permit);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a taker");
        }
        assert!(
            most.load(Relaxed) <= 3,
            "{} under way at once",
            most.load(Relaxed)
        );
        assert_eq!(permits.in_flight(), 0, "every permit given back");
    }
}
