//! `TimeoutLayer`: a deadline for the handler, answered with a response, not an error — the
//! layer, its service and future, and the bodies it wraps, one file each.

mod body;
mod future;
mod layer;
mod service;

pub use body::{BodyDeadlineElapsed, BoxError, DeadlineBody, WatchedBody};
pub use future::TimeoutFuture;
pub use layer::{IgnoreRequestBody, TimeoutLayer, WatchRequestBody};
pub use service::Timeout;
