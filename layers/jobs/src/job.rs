//! `Job`: what a kind of work is — its queue's name, its arguments and what a run answers.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind of work that leaves the request: the job's arguments, stored as JSON in the queue.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct BuildReport {
///     since_days: u32,
/// }
///
/// impl vitals_jobs::Job for BuildReport {
///     const KIND: &'static str = "shop.report";
///     type Output = serde_json::Value;
/// }
/// ```
pub trait Job: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The queue's name (the `job_type` column, the metrics' `job.type` label): stable across
    /// renames of the Rust type, short, from a fixed set.
    const KIND: &'static str;

    /// What a successful run answers with, kept as the job's result and shown by its status.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;
}
