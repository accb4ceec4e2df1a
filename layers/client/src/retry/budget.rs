//! `RetryBudget`: how many retries the recent calls have paid for.
//!
//! The rule is finagle's and tower's `TpsBudget`'s: every call deposits, every retry withdraws
//! `1 / ratio` calls' worth, deposits and withdrawals count for the last 10 s, and a reserve of
//! `floor` retries a second is always there. tower's budget takes a lock and reads the precise
//! clock on every deposit — one lock every call of every thread contends on; this one books a
//! call with one atomic update of a one-second slot found on the coarse clock.

use crate::clock::CoarseClock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The window, 10 s, as this many slots of a second each: a deposit or a withdrawal counts
/// for 10 s.
const SLOTS: u32 = 10;

/// A call's deposit, in the budget's units (a withdrawal is `DEPOSIT / ratio` of them). A
/// slot's balance is 32 bits: it saturates past two million calls in one second.
const DEPOSIT: i64 = 1000;

/// The retries the calls of the last [`WINDOW`] allow, shared by every clone of one layer.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    clock: CoarseClock,
    /// A slot per second of the window: its second (high 32 bits) and its balance in units
    /// (low 32 bits, signed), updated together by one compare-and-swap.
    slots: [AtomicU64; SLOTS as usize],
    deposit: i64,
    withdrawal: i64,
    reserve: i64,
}

/// A slot's second and balance in one word.
fn pack(second: u32, balance: i32) -> u64 {
    (u64::from(second) << 32) | u64::from(balance.cast_unsigned())
}

fn unpack(slot: u64) -> (u32, i32) {
    let second = u32::try_from(slot >> 32).unwrap_or(u32::MAX);
    let balance = u32::try_from(slot & u64::from(u32::MAX)).unwrap_or_default();
    (second, balance.cast_signed())
}

/// The balance of the window ending in `second`: the reserve and the slots (second, balance)
/// of that second and the nine before it.
fn window_balance(slots: impl Iterator<Item = (u32, i32)>, second: u32, reserve: i64) -> i64 {
    slots
        .filter(|&(held, _)| held <= second && held.saturating_add(SLOTS) > second)
        .fold(reserve, |sum, (_, balance)| {
            sum.saturating_add(i64::from(balance))
        })
}

/// The units a deposit and a withdrawal are worth for `ratio` retries per call (`0` to `1000`),
/// and the reserve of `floor` retries a second over the window.
fn units(ratio: f32, floor: u32) -> (i64, i64, i64) {
    let ratio = f64::from(ratio);
    let (deposit, withdrawal) = if ratio > 0.0 && ratio.is_finite() {
        // Rounded, at least one unit: the ratio is kept to a tenth of a percent or better.
        #[allow(clippy::cast_possible_truncation)]
        let withdrawal = (1000.0 / ratio).round().clamp(1.0, 1e12) as i64;
        (DEPOSIT, withdrawal)
    } else {
        // No share of the calls: only the reserve pays for retries.
        (0, 1)
    };
    let reserve = i64::from(floor)
        .saturating_mul(i64::from(SLOTS))
        .saturating_mul(withdrawal);
    (deposit, withdrawal, reserve)
}

impl RetryBudget {
    /// `ratio` retries per call made in the last 10 s, plus `floor` retries a second.
    pub(crate) fn new(ratio: f32, floor: u32) -> Self {
        let (deposit, withdrawal, reserve) = units(ratio, floor);
        Self {
            clock: CoarseClock::new(),
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            deposit,
            withdrawal,
            reserve,
        }
    }

    /// The second of the window it is now (counted from the budget's start).
    fn second(&self) -> u32 {
        u32::try_from(self.clock.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Adds `amount` to the slot of `second`, starting the slot afresh when it held an older
    /// second.
    fn book(&self, second: u32, amount: i64) {
        let slot = &self.slots[(second % SLOTS) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (held, balance) = unpack(current);
            let balance = if held == second {
                i64::from(balance)
            } else {
                0
            };
            let balance = i32::try_from(
                balance
                    .saturating_add(amount)
                    .clamp(i64::from(i32::MIN), i64::from(i32::MAX)),
            )
            .unwrap_or_default();
            match slot.compare_exchange_weak(
                current,
                pack(second, balance),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// A call was made.
    pub(crate) fn deposit(&self) {
        if self.deposit > 0 {
            self.book(self.second(), self.deposit);
        }
    }

    /// Whether a retry may be made now; if so, it is paid for.
    pub(crate) fn withdraw(&self) -> bool {
        let second = self.second();
        let slots = self
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Relaxed)));
        // Checked, then paid: two retries racing for the last one may both be made (tower's
        // budget has the same slack), never more than one per racing caller.
        if window_balance(slots, second, self.reserve) < self.withdrawal {
            return false;
        }
        self.book(second, -self.withdrawal);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_packs_its_second_and_a_signed_balance() {
        for (second, balance) in [(0, 0), (7, -5000), (u32::MAX, i32::MIN), (3, i32::MAX)] {
            assert_eq!(unpack(pack(second, balance)), (second, balance));
        }
    }

    #[test]
    fn units_follow_the_ratio() {
        assert_eq!(units(0.2, 10), (1000, 5000, 500_000));
        // A third: 3,333 units, not tower's truncation to every third call.
        assert_eq!(units(0.3, 0).1, 3333);
        assert_eq!(units(0.0, 2), (0, 1, 20));
        assert_eq!(units(f32::NAN, 0), (0, 1, 0));
        assert_eq!(units(1000.0, 0), (1000, 1, 0));
    }

    #[test]
    fn retries_are_a_share_of_the_calls_plus_the_reserve() {
        let budget = RetryBudget::new(0.2, 1);
        for _ in 0..100 {
            budget.deposit();
        }
        // 20 from 100 calls, 10 from the reserve (1 a second over 10 s).
        let allowed = (0..100).take_while(|_| budget.withdraw()).count();
        assert_eq!(allowed, 30);
        assert!(!budget.withdraw());
        budget.deposit();
        assert!(!budget.withdraw(), "one call is a fifth of a retry");
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.withdraw());
    }

    #[test]
    fn no_share_and_no_floor_allows_nothing() {
        let budget = RetryBudget::new(0.0, 0);
        for _ in 0..1000 {
            budget.deposit();
        }
        assert!(!budget.withdraw());
    }

    #[test]
    fn the_window_is_the_last_ten_seconds() {
        let slots = [(0, 5000), (3, -1000), (10, 700)];
        assert_eq!(window_balance(slots.into_iter(), 9, 1), 4001);
        // At second 10, second 0 has left the window; a slot ahead of `second` never counts.
        assert_eq!(window_balance(slots.into_iter(), 10, 0), -300);
        assert_eq!(window_balance(slots.into_iter(), 2, 0), 5000);
        assert_eq!(window_balance(slots.into_iter(), 13, 0), 700);
    }

    #[test]
    fn a_slot_of_an_older_second_starts_afresh() {
        let budget = RetryBudget::new(1.0, 0);
        budget.book(0, 5 * DEPOSIT);
        budget.book(0, DEPOSIT);
        assert_eq!(unpack(budget.slots[0].load(Ordering::Relaxed)), (0, 6000));
        budget.book(10, -DEPOSIT);
        assert_eq!(unpack(budget.slots[0].load(Ordering::Relaxed)), (10, -1000));
        budget.book(10, i64::MIN);
        assert_eq!(
            unpack(budget.slots[0].load(Ordering::Relaxed)),
            (10, i32::MIN),
            "saturates"
        );
    }

    #[test]
    fn concurrent_deposits_are_not_lost() {
        let budget = std::sync::Arc::new(RetryBudget::new(1.0, 0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = std::sync::Arc::clone(&budget);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        budget.deposit();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a depositing thread");
        }
        let allowed = (0..50_000).take_while(|_| budget.withdraw()).count();
        assert_eq!(allowed, 40_000);
    }
}
