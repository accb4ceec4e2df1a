//! `PerRoute`: a value made once per route label and kept — metric handles, mostly — so a
//! request neither builds label strings nor looks a key up in the recorder each time.

use hashbrown::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};

/// At most this many routes are kept; past it, values are made per use (a labeler producing
/// unbounded labels costs time, never memory).
pub const MAX_ROUTES: usize = 4096;

/// A map from route label text to a value made on first use. Reads take a shared lock and one
/// hash of the label; only a route's first request writes.
///
/// Cloning gives an empty map: the values are made again (in a layer's configuration, a clone
/// is a new configuration).
///
/// ```
/// use vitals_core::per_route::PerRoute;
///
/// let counts: PerRoute<std::sync::atomic::AtomicU64> = PerRoute::new();
/// for _ in 0..3 {
///     counts.with("/items/{id}", Default::default, |count| {
///         count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     });
/// }
/// assert_eq!(counts.with("/items/{id}", Default::default, |c| c.load(std::sync::atomic::Ordering::Relaxed)), 3);
/// ```
pub struct PerRoute<T> {
    map: RwLock<HashMap<Box<str>, T>>,
}

impl<T> PerRoute<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }

    /// Calls `use_value` with the value of `route`, made by `make` on the route's first use.
    pub fn with<R>(
        &self,
        route: &str,
        make: impl FnOnce() -> T,
        use_value: impl FnOnce(&T) -> R,
    ) -> R {
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(value) = map.get(route) {
                return use_value(value);
            }
        }
        let value = make();
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ROUTES && !map.contains_key(route) {
            drop(map);
            return use_value(&value);
        }
        use_value(map.entry(route.into()).or_insert(value))
    }

    /// Calls `visit` with each route and its value (under the shared lock: keep it short).
    pub fn for_each(&self, mut visit: impl FnMut(&str, &T)) {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        for (route, value) in map.iter() {
            visit(route, value);
        }
    }

    /// How many routes have a value.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no route has a value yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Default for PerRoute<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for PerRoute<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for PerRoute<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerRoute")
            .field("routes", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn makes_once_per_route_and_stays_bounded() {
        let calls = AtomicUsize::new(0);
        let map: PerRoute<usize> = PerRoute::new();
        let make = || calls.fetch_add(1, Ordering::Relaxed);
        for _ in 0..3 {
            map.with("/a", make, |_| ());
            map.with("/b", make, |_| ());
        }
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        for i in 0..MAX_ROUTES + 10 {
            map.with(&format!("/r{i}"), || i, |v| assert_eq!(*v, i));
        }
        assert_eq!(map.len(), MAX_ROUTES, "bounded");
        assert!(map.clone().is_empty(), "a clone starts empty");
    }
}
