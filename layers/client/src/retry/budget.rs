//! `RetryBudget`: how many retries the recent calls have paid for.
//!
//! The rule is finagle's and tower's `TpsBudget`'s: every call deposits, every retry withdraws
//! `1 / ratio` calls' worth, deposits and withdrawals count for the last 10 s, and a reserve of
//! `floor` retries a second is always there. tower's budget takes a mutex and reads the precise
//! clock on every deposit; this one books a call with one compare-and-swap on the word of the
//! current second's slot (found on the coarse clock), no lock — callers in many threads still
//! share that word, as they shared tower's.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::CoarseClock;

/// The window, 10 s, as this many slots of a second each: a deposit or a withdrawal counts
/// for 10 s.
const SLOTS: u32 = 10;

/// A call's deposit, in the budget's units (a withdrawal is `DEPOSIT / ratio` of them,
/// rounded: the ratio is kept to a twentieth of a percent up to 1, to whole units above).
const DEPOSIT: i64 = 1000;

/// The largest withdrawal (a ratio under one in a million counts as that).
const MAX_WITHDRAWAL: i64 = 1_000_000_000;

/// A slot's second: its low 24 bits (194 days), compared by wrapping difference.
const SECOND_BITS: u32 = 24;
const SECOND_MASK: u32 = (1 << SECOND_BITS) - 1;

/// A slot's balance: 40 bits, signed (±5.5·10¹¹ units: half a billion calls in one second).
const BALANCE_BITS: u32 = 40;
const BALANCE_MAX: i64 = (1 << (BALANCE_BITS - 1)) - 1;
const BALANCE_MIN: i64 = -(1 << (BALANCE_BITS - 1));

/// The retries the calls of the last 10 s allow, shared by every clone of one layer.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    clock: CoarseClock,
    /// A slot per second of the window: its second (high 24 bits) and its balance in units
    /// (low 40 bits, signed), updated together by one compare-and-swap.
    slots: [AtomicU64; SLOTS as usize],
    deposit: i64,
    withdrawal: i64,
    reserve: i64,
}

/// A slot's second and balance in one word.
fn pack(second: u32, balance: i64) -> u64 {
    (u64::from(second & SECOND_MASK) << BALANCE_BITS)
        | (balance.cast_unsigned() & ((1 << BALANCE_BITS) - 1))
}

fn unpack(slot: u64) -> (u32, i64) {
    let second = u32::try_from(slot >> BALANCE_BITS).unwrap_or(SECOND_MASK) & SECOND_MASK;
    // The low 40 bits, sign-extended.
    let balance = (slot << (64 - BALANCE_BITS)).cast_signed() >> (64 - BALANCE_BITS);
    (second, balance)
}

/// How many seconds `held` is before `second`, on the 24-bit wrapping count; a slot ahead of
/// `second` (booked by a caller that read the clock later) is more than half the range "before".
fn age(second: u32, held: u32) -> u32 {
    second.wrapping_sub(held) & SECOND_MASK
}

/// Whether a slot `age` seconds old is ahead of the current second.
fn ahead(age: u32) -> bool {
    age >= 1 << (SECOND_BITS - 1)
}

/// The balance of the window ending in `second`: the reserve and the slots (second, balance)
/// of that second and the nine before it.
fn window_balance(slots: impl Iterator<Item = (u32, i64)>, second: u32, reserve: i64) -> i64 {
    slots
        .filter(|&(held, _)| age(second, held) < SLOTS)
        .fold(reserve, |sum, (_, balance)| sum.saturating_add(balance))
}

/// The units a deposit and a withdrawal are worth for `ratio` retries per call (`0` to `1000`),
/// and the reserve of `floor` retries a second over the window.
fn units(ratio: f32, floor: u32) -> (i64, i64, i64) {
    let ratio = f64::from(ratio);
    let (deposit, withdrawal) = if ratio > 0.0 && ratio.is_finite() {
        #[allow(clippy::cast_possible_truncation)]
        let withdrawal = (1000.0 / ratio).round().clamp(1.0, MAX_WITHDRAWAL as f64) as i64;
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

    /// The second of the window it is now (counted from the budget's start, 24 bits).
    fn second(&self) -> u32 {
        u32::try_from(self.clock.elapsed().as_secs() & u64::from(SECOND_MASK)).unwrap_or(0)
    }

    /// Adds `amount` to the slot of `second`, starting the slot afresh when it held an older
    /// second (a slot already on a later second, booked by a caller that read the clock later,
    /// is added to, not wiped). A deposit past the slot's range is capped; a withdrawal that
    /// would pass it is not booked: `false`.
    fn book(&self, second: u32, amount: i64) -> bool {
        let slot = &self.slots[(second % SLOTS) as usize];
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (held, balance) = unpack(current);
            let held_age = age(second, held);
            let (onto, balance) = if held_age == 0 || ahead(held_age) {
                (held, balance)
            } else {
                (second, 0)
            };
            let booked = balance.saturating_add(amount);
            if booked < BALANCE_MIN {
                return false;
            }
            match slot.compare_exchange_weak(
                current,
                pack(onto, booked.min(BALANCE_MAX)),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
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
        window_balance(slots, second, self.reserve) >= self.withdrawal
            && self.book(second, -self.withdrawal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_packs_its_second_and_a_signed_balance() {
        for (second, balance) in [
            (0, 0),
            (7, -5000),
            (SECOND_MASK, BALANCE_MIN),
            (3, BALANCE_MAX),
            (1, -1),
        ] {
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
        assert_eq!(units(1e-12, 1).1, MAX_WITHDRAWAL);
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
        // Across the 24-bit wrap.
        let wrapped = [(SECOND_MASK, 400), (1, 30)];
        assert_eq!(window_balance(wrapped.into_iter(), 2, 0), 430);
    }

    #[test]
    fn a_slot_of_an_older_second_starts_afresh_and_a_newer_one_is_kept() {
        let budget = RetryBudget::new(1.0, 0);
        assert!(budget.book(0, 5 * DEPOSIT));
        assert!(budget.book(0, DEPOSIT));
        assert_eq!(unpack(budget.slots[0].load(Ordering::Relaxed)), (0, 6000));
        assert!(budget.book(10, -DEPOSIT));
        assert_eq!(unpack(budget.slots[0].load(Ordering::Relaxed)), (10, -1000));
        // A caller that read second 0 before a pause books late: second 10's slot stays.
        assert!(budget.book(0, DEPOSIT));
        assert_eq!(unpack(budget.slots[0].load(Ordering::Relaxed)), (10, 0));
    }

    #[test]
    fn a_withdrawal_past_the_slots_range_is_refused() {
        let budget = RetryBudget::new(1.0, 0);
        assert!(budget.book(0, BALANCE_MIN + 10));
        assert!(!budget.book(0, -11));
        assert_eq!(
            unpack(budget.slots[0].load(Ordering::Relaxed)),
            (0, BALANCE_MIN + 10)
        );
        // A deposit past the top is capped.
        assert!(budget.book(1, BALANCE_MAX));
        assert!(budget.book(1, 5));
        assert_eq!(
            unpack(budget.slots[1].load(Ordering::Relaxed)),
            (1, BALANCE_MAX)
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
