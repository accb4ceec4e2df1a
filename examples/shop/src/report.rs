//! The sales report: real CPU work, done right (`spawn_blocking`) and wrong (inline).
//!
//! The work is a revenue aggregation over every order followed by a scoring pass that mixes
//! the results through many rounds of a 64-bit hash. The number of rounds is calibrated once
//! at start so one report costs about [`TARGET`] of CPU on this machine, whatever the build
//! profile: debug builds are many times slower per round, and a fixed count would take
//! seconds there.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// CPU time one report aims for.
pub const TARGET: Duration = Duration::from_millis(100);

/// A calibrated amount of CPU work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    rounds: u64,
}

impl Workload {
    /// Measures this machine and build, and picks the rounds that take about `target` of CPU
    /// time. By the thread's CPU time where the kernel keeps it (Linux): on a busy machine the
    /// wall clock also counts the time other processes had the CPU, which would make the
    /// report too light to block anything.
    pub fn calibrate(target: Duration) -> Self {
        let cpu = vitals::timing::cpu::thread_cpu_time;
        let mut rounds: u64 = 1 << 12;
        loop {
            let (start, cpu_start) = (Instant::now(), cpu());
            black_box(mix_rounds(black_box(rounds), rounds));
            let elapsed = match (cpu_start, cpu()) {
                (Some(before), Some(after)) => after.saturating_sub(before),
                _ => start.elapsed(),
            };
            // Long enough that the CPU clock's ticks (a few ms) do not matter.
            if elapsed >= Duration::from_millis(40) || rounds >= 1 << 40 {
                let per_round = elapsed.as_secs_f64() / rounds as f64;
                let wanted = (target.as_secs_f64() / per_round.max(f64::MIN_POSITIVE)).round();
                // Bounded, so a wildly off measurement cannot make a report take minutes.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let wanted = wanted.clamp(1.0, (1u64 << 40) as f64) as u64;
                return Self { rounds: wanted };
            }
            rounds *= 2;
        }
    }

    /// A fixed number of rounds (tests).
    pub const fn with_rounds(rounds: u64) -> Self {
        Self { rounds }
    }

    /// The rounds of hashing one report does.
    pub const fn rounds(self) -> u64 {
        self.rounds
    }
}

/// One customer's line in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopCustomer {
    /// Customer id.
    pub customer_id: i64,
    /// Revenue from that customer, in cents.
    pub revenue_cents: i64,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Orders aggregated.
    pub orders: usize,
    /// Distinct customers.
    pub customers: usize,
    /// Total revenue in cents.
    pub revenue_cents: i64,
    /// The five customers with the most revenue.
    pub top_customers: Vec<TopCustomer>,
    /// The scoring pass's result (deterministic for the same data and rounds).
    pub score: String,
    /// Rounds of hashing done.
    pub work_rounds: u64,
}

/// Builds the report from `(customer_id, total_cents)` pairs. Pure CPU: call it from
/// `spawn_blocking`, not on the async executor.
pub fn build(order_totals: &[(i64, i64)], workload: Workload) -> Report {
    let mut by_customer: HashMap<i64, i64> = HashMap::new();
    for &(customer, total) in order_totals {
        *by_customer.entry(customer).or_default() += total;
    }
    let mut ranked: Vec<TopCustomer> = by_customer
        .iter()
        .map(|(&customer_id, &revenue_cents)| TopCustomer {
            customer_id,
            revenue_cents,
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.revenue_cents
            .cmp(&a.revenue_cents)
            .then(a.customer_id.cmp(&b.customer_id))
    });
    let revenue_cents = ranked.iter().map(|c| c.revenue_cents).sum();
    let seed = ranked.iter().fold(0u64, |acc, c| {
        acc.rotate_left(7) ^ c.customer_id.unsigned_abs() ^ c.revenue_cents.unsigned_abs()
    });
    let score = mix_rounds(seed, workload.rounds);
    ranked.truncate(5);
    Report {
        orders: order_totals.len(),
        customers: by_customer.len(),
        revenue_cents,
        top_customers: ranked,
        score: format!("{score:016x}"),
        work_rounds: workload.rounds,
    }
}

/// `rounds` rounds of the splitmix64 finaliser: cheap per round, impossible to skip.
fn mix_rounds(seed: u64, rounds: u64) -> u64 {
    let mut x = seed;
    for i in 0..rounds {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15 ^ i);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_revenue_and_ranks_customers() {
        let totals = [(1, 100), (2, 300), (1, 250), (3, 50)];
        let report = build(&totals, Workload::with_rounds(10));
        assert_eq!(report.orders, 4);
        assert_eq!(report.customers, 3);
        assert_eq!(report.revenue_cents, 700);
        assert_eq!(
            report.top_customers[0],
            TopCustomer {
                customer_id: 1,
                revenue_cents: 350
            }
        );
        assert_eq!(report.top_customers[1].customer_id, 2);
        assert_eq!(
            report,
            build(&totals, Workload::with_rounds(10)),
            "deterministic"
        );
        assert_ne!(
            report.score,
            build(&totals, Workload::with_rounds(11)).score
        );
    }

    #[test]
    fn calibration_is_bounded_below_and_measures_real_work() {
        // A zero target clamps to one round; a real one needs many rounds of 64-bit mixing.
        assert_eq!(Workload::calibrate(Duration::ZERO).rounds(), 1);
        assert!(Workload::calibrate(Duration::from_millis(5)).rounds() > 1_000);
    }
}
