//! One quota's in-process state: governor's GCRA over [`KeyStore`], and what a check tells
//! the headers (how many requests are left, when more come back).

use std::sync::Arc;
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::StateStore;

use crate::quota::Quota;
use crate::store::KeyStore;

/// The store, shared between the limiter and the layer's handle.
#[derive(Debug)]
pub(crate) struct SharedStore(pub(crate) Arc<KeyStore>);

impl StateStore for SharedStore {
    type Key = u128;

    fn measure_and_replace<T, F, E>(&self, key: &u128, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

/// What one quota said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed: `remaining` more requests may come at once; more quota comes back within
    /// `reset` (zero when the burst is whole).
    Allowed { remaining: u32, reset: Duration },
    /// Refused: the next request this quota allows is `wait` away.
    Refused { wait: Duration },
}

/// A quota and its keys' state.
#[derive(Debug)]
pub(crate) struct QuotaLimiter<C: Clock = DefaultClock> {
    pub(crate) quota: Quota,
    limiter: RateLimiter<u128, SharedStore, C, StateInformationMiddleware>,
    pub(crate) store: Arc<KeyStore>,
}

impl QuotaLimiter<DefaultClock> {
    pub(crate) fn new(quota: Quota, max_keys: usize) -> Self {
        Self::with_clock(quota, max_keys, DefaultClock::default())
    }
}

impl<C: Clock> QuotaLimiter<C> {
    pub(crate) fn with_clock(quota: Quota, max_keys: usize, clock: C) -> Self {
        let interval = u64::try_from(quota.interval().as_nanos()).unwrap_or(u64::MAX);
        let store = Arc::new(KeyStore::new(max_keys, interval, quota.name()));
        let limiter: RateLimiter<u128, SharedStore, C, NoOpMiddleware<C::Instant>> =
            RateLimiter::new(quota.to_governor(), SharedStore(Arc::clone(&store)), clock);
        let limiter = limiter.with_middleware::<StateInformationMiddleware>();
        Self {
            quota,
            limiter,
            store,
        }
    }

    /// Gives back the share [`check`](Self::check) took for `key`.
    pub(crate) fn refund(&self, key: u128) {
        self.store.refund(key);
    }

    /// Takes one request's share of `key`'s quota, or says how long until there is one.
    pub(crate) fn check(&self, key: u128) -> Verdict {
        match self.limiter.check_key(&key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // The exact arrival time is governor's own; one interval is when the next
                // share is back at the latest, which the draft's `t` allows.
                let reset = if remaining >= self.quota.burst() {
                    Duration::ZERO
                } else {
                    self.quota.interval()
                };
                Verdict::Allowed { remaining, reset }
            }
            Err(not_until) => Verdict::Refused {
                wait: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;

    use super::*;

    fn limiter(quota: Quota) -> (QuotaLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (QuotaLimiter::with_clock(quota, 1_000, clock.clone()), clock)
    }

    #[test]
    fn a_burst_then_the_rate() {
        let (limiter, clock) = limiter(Quota::per_second(5).with_burst(10));
        for left in (0..10).rev() {
            assert!(
                matches!(limiter.check(1), Verdict::Allowed { remaining, .. } if remaining == left)
            );
        }
        assert_eq!(
            limiter.check(1),
            Verdict::Refused {
                wait: Duration::from_millis(200)
            }
        );
        // Another key has its own quota.
        assert!(matches!(
            limiter.check(2),
            Verdict::Allowed { remaining: 9, .. }
        ));
        clock.advance(Duration::from_millis(200));
        assert!(matches!(
            limiter.check(1),
            Verdict::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(limiter.check(1), Verdict::Refused { .. }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Over any window of length T a key gets at most burst + T · rate requests, whatever
        /// the arrival pattern.
        #[test]
        fn never_more_than_burst_plus_rate(
            rate in 1_u32..50,
            burst in 1_u32..20,
            gaps in proptest::collection::vec(0_u64..400, 1..300),
        ) {
            let quota = Quota::per_second(rate).with_burst(burst);
            let interval = quota.interval();
            let (limiter, clock) = limiter(quota);
            let mut allowed_at = Vec::new();
            let mut now = Duration::ZERO;
            for gap in gaps {
                clock.advance(Duration::from_millis(gap));
                now += Duration::from_millis(gap);
                if matches!(limiter.check(7), Verdict::Allowed { .. }) {
                    allowed_at.push(now);
                }
            }
            // Every window that starts at an allowed request.
            for (i, start) in allowed_at.iter().enumerate() {
                for (j, end) in allowed_at.iter().enumerate().skip(i) {
                    let window = end.saturating_sub(*start);
                    let in_window = (j - i + 1) as u128;
                    let bound = u128::from(burst) + window.as_nanos() / interval.as_nanos();
                    prop_assert!(in_window <= bound, "{in_window} in {window:?} > {bound}");
                }
            }
        }

        /// A client keeping to the rate is never refused, whatever it did before (once its
        /// burst is back).
        #[test]
        fn a_steady_client_is_never_refused(
            rate in 1_u32..100,
            burst in 1_u32..20,
            requests in 1_usize..500,
        ) {
            let quota = Quota::per_second(rate).with_burst(burst);
            let interval = quota.interval();
            let (limiter, clock) = limiter(quota);
            for _ in 0..requests {
                let allowed = matches!(limiter.check(3), Verdict::Allowed { .. });
                prop_assert!(allowed, "refused at the rate");
                clock.advance(interval);
            }
        }
    }
}
