//! Single flight: concurrent misses for one key make one handler call. The first request
//! leads (its [`FlightGuard`] travels with its response until the body is stored or given
//! up); the others follow, waiting for the flight to land, then look again.

use std::sync::{Arc, Mutex};

use hashbrown::HashMap;
use tokio::sync::watch;

/// How a flight ended, as its followers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Landing {
    /// Still filling.
    Filling,
    /// A response was stored: look again.
    Stored,
    /// The response could not be stored (private, too large, an error): go to the handler
    /// yourself, without waiting on each other.
    NotStored,
    /// The leader gave up (its client left, or the request was dropped): one follower leads
    /// next.
    Abandoned,
    /// The handler failed (an error, a 5xx): each follower answers stale where a stale
    /// response may answer for a failing handler, else goes to the handler itself.
    Failed,
}

/// A fill's hold on its key's lock in the fleet's store: the fencing token the lock was taken
/// with, and the nonce the lock holds (what lets it go, even when the lock's reply was lost).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // Made and read with Redis only.
pub(crate) struct Hold {
    pub(crate) token: u64,
    pub(crate) nonce: u128,
}

/// The flights in progress, by primary key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<u128, watch::Receiver<Landing>>>,
}

/// Leading or following a key's flight.
pub(crate) enum Join {
    /// No flight was in progress: this request makes the handler call.
    Lead(FlightGuard),
    /// Another request is filling the key.
    Follow(watch::Receiver<Landing>),
}

impl Flights {
    /// Leads `key`'s flight, or follows the one in progress.
    pub(crate) fn join(self: &Arc<Self>, key: u128) -> Join {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(flight) = map.get(&key)
            && *flight.borrow() == Landing::Filling
            && flight.has_changed().is_ok()
        {
            return Join::Follow(flight.clone());
        }
        let (sender, receiver) = watch::channel(Landing::Filling);
        map.insert(key, receiver);
        Join::Lead(FlightGuard {
            flights: Arc::clone(self),
            key,
            sender: Some(sender),
        })
    }

    /// Flights in progress.
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// The lead of one key's flight. Dropped without [`land`](Self::land), the flight is
/// abandoned and a follower leads the next.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: u128,
    sender: Option<watch::Sender<Landing>>,
}

impl FlightGuard {
    /// The flight ended: followers see `landing`.
    pub(crate) fn land(mut self, landing: Landing) {
        self.end(landing);
    }

    fn end(&mut self, landing: Landing) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        {
            let mut map = self
                .flights
                .map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map
                .get(&self.key)
                .is_some_and(|flight| flight.same_channel(&sender.subscribe()))
            {
                map.remove(&self.key);
            }
        }
        sender.send_replace(landing);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.end(Landing::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leads_the_rest_follow_until_it_lands() {
        let flights = Arc::new(Flights::default());
        let Join::Lead(guard) = flights.join(7) else {
            panic!("the first request leads");
        };
        let Join::Follow(follower) = flights.join(7) else {
            panic!("the second follows");
        };
        assert!(
            matches!(flights.join(8), Join::Lead(_)),
            "another key is its own flight"
        );
        guard.land(Landing::Stored);
        assert_eq!(*follower.borrow(), Landing::Stored);
        assert_eq!(flights.len(), 0);
        assert!(
            matches!(flights.join(7), Join::Lead(_)),
            "landed: the next leads"
        );
    }

    #[test]
    fn a_dropped_lead_abandons_and_frees_the_key() {
        let flights = Arc::new(Flights::default());
        let Join::Lead(guard) = flights.join(1) else {
            panic!("leads");
        };
        let Join::Follow(follower) = flights.join(1) else {
            panic!("follows");
        };
        drop(guard);
        assert_eq!(*follower.borrow(), Landing::Abandoned);
        assert!(matches!(flights.join(1), Join::Lead(_)));
    }
}
