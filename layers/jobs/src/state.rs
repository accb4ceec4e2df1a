//! What a job's row means to its client, and when a failed run is tried again: rules as pure
//! functions over what the queue stores.

use std::time::Duration;

use serde::Serialize;

/// Where a job is, as its status route tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker: new, or failed and waiting for its next attempt.
    Pending,
    /// A worker is running it.
    Running,
    /// Done: its result is kept.
    Succeeded,
    /// Given up on: every attempt failed, or a run panicked (dead-lettered; never run again).
    Failed,
}

/// The state of a job whose queue row says `status` after `attempts` of at most
/// `max_attempts` runs (apalis' statuses: `Pending`, `Queued` — fetched, not started —,
/// `Running`, `Done`, `Failed`, `Killed`). A `Failed` row with attempts left is waiting for its
/// next run; without, it is dead-lettered, as a `Killed` one (a panic) is. A status this
/// crate does not know is `Pending`: the queue still holds the job.
pub fn state_of(status: &str, attempts: i64, max_attempts: i64) -> JobState {
    match status {
        "Running" => JobState::Running,
        "Done" => JobState::Succeeded,
        "Killed" => JobState::Failed,
        "Failed" if attempts >= max_attempts => JobState::Failed,
        _ => JobState::Pending,
    }
}

/// How long a job waits after failed attempt `attempt` (1 for the first run): exponential
/// from `base`, capped at `max`, with full jitter (`random` in `[0, 1)` picks the point in
/// `[0, ceiling]`), and never under `base` — the queue's clock counts whole seconds, and a
/// retry that comes at once hammers what just failed.
pub fn backoff(attempt: u32, base: Duration, max: Duration, random: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    let ceiling = base
        .checked_mul(1_u32 << doublings.min(31))
        .map_or(max, |delay| delay.min(max));
    let share = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(share).max(base.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_map_to_what_a_client_is_told() {
        assert_eq!(state_of("Pending", 0, 5), JobState::Pending);
        assert_eq!(state_of("Queued", 0, 5), JobState::Pending);
        assert_eq!(state_of("Running", 1, 5), JobState::Running);
        assert_eq!(state_of("Done", 1, 5), JobState::Succeeded);
        assert_eq!(state_of("Failed", 2, 5), JobState::Pending);
        assert_eq!(state_of("Failed", 5, 5), JobState::Failed);
        assert_eq!(state_of("Failed", 7, 5), JobState::Failed);
        assert_eq!(state_of("Killed", 1, 5), JobState::Failed);
        assert_eq!(state_of("Sideways", 1, 5), JobState::Pending);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_a_floor() {
        let (base, max) = (Duration::from_secs(1), Duration::from_mins(1));
        assert_eq!(backoff(1, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, base, max, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(3, base, max, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(30, base, max, 1.0), max);
        assert_eq!(backoff(u32::MAX, base, max, 1.0), max);
        assert_eq!(backoff(5, base, max, 0.0), base, "never under the floor");
        assert_eq!(backoff(5, base, max, f64::NAN), base);
        assert_eq!(backoff(5, base, Duration::ZERO, 1.0), Duration::ZERO);
    }
}
