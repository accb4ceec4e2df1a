//! `JobId`: a job's id — a ULID, unguessable (80 random bits) and sortable by creation.

use std::fmt;
use std::time::{Duration, SystemTime};

use ulid::Ulid;

/// A job's id: a ULID made when the job is enqueued. Its 80 random bits make it a capability
/// as well as a name (a status route open to anyone reveals only jobs whose id one was given);
/// its first 48 bits are the time it was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Ulid);

impl JobId {
    /// A new id, made now.
    pub(crate) fn generate() -> Self {
        Self(Ulid::generate())
    }

    /// The id in `text`: 26 Crockford base-32 characters, exactly as
    /// [`Display`](fmt::Display) writes them. `None` for anything else — another spelling of
    /// the same id, or a value past the largest ULID (a status route answers `404` without
    /// asking the store).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ulid::ULID_LEN {
            return None;
        }
        let id = Ulid::from_string(text).ok()?;
        (id.to_string() == text).then_some(Self(id))
    }

    /// When the job was enqueued (to the millisecond).
    pub fn created_at(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.0.timestamp_ms())
    }

    pub(crate) fn ulid(self) -> Ulid {
        self.0
    }

    pub(crate) fn from_ulid(ulid: Ulid) -> Self {
        Self(ulid)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_anything_else_is_refused() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(&id.to_string()), Some(id));
        assert_eq!(JobId::parse(&id.to_string().to_lowercase()), None);
        for bad in [
            "",
            "42",
            "../../etc/passwd",
            "01ARZ3NDEKTSV4RRFFQ69G5FA",
            "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01ARZ3NDEKTSV4RRFFQ69G5FA!",
        ] {
            assert_eq!(JobId::parse(bad), None, "{bad:?}");
        }
        let age = SystemTime::now()
            .duration_since(id.created_at())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(5));
    }
}
