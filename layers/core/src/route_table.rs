//! `RouteTable`: what each route template declared, found by the request's route label.
//!
//! Every layer that takes per-route settings keeps them in one of these: `with_route(route,
//! settings)` inserts, the request path looks its label up once. A table with no routes costs
//! one branch per lookup, not a hash.

use hashbrown::HashMap;
use std::fmt;

use crate::route::RouteLabel;

/// Settings values by route template (`"/products/{id}"`, as the router knows it).
///
/// ```
/// use vitals_core::route::RouteLabel;
/// use vitals_core::route_table::RouteTable;
///
/// let mut budgets = RouteTable::new();
/// budgets.insert("/search", 20_u64);
/// assert_eq!(budgets.get(&RouteLabel::from_static("/search")), Some(&20));
/// assert_eq!(budgets.get(&RouteLabel::from_static("/items")), None);
/// ```
#[derive(Clone)]
pub struct RouteTable<T> {
    routes: HashMap<Box<str>, T>,
}

impl<T> RouteTable<T> {
    /// A table with no routes.
    pub fn new() -> Self {
        Self {
            routes: HashMap::new(),
        }
    }

    /// Gives `route` its value, replacing (and returning) one given before.
    pub fn insert(&mut self, route: &str, value: T) -> Option<T> {
        self.routes.insert(route.into(), value)
    }

    /// The value of the request's route, if it declared one.
    #[inline]
    pub fn get(&self, route: &RouteLabel) -> Option<&T> {
        self.get_str(route.as_str())
    }

    /// The value of the route template `route`, if it declared one.
    #[inline]
    pub fn get_str(&self, route: &str) -> Option<&T> {
        if self.routes.is_empty() {
            return None;
        }
        self.routes.get(route)
    }

    /// Each route and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.routes.iter().map(|(route, value)| (&**route, value))
    }

    /// The same routes with each value mapped by `f`.
    pub fn map<U>(&self, mut f: impl FnMut(&str, &T) -> U) -> RouteTable<U> {
        RouteTable {
            routes: self
                .routes
                .iter()
                .map(|(route, value)| (route.clone(), f(route, value)))
                .collect(),
        }
    }

    /// How many routes declared a value.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route declared a value.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for RouteTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.routes.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_value_replaces_the_earlier_one() {
        let mut table = RouteTable::new();
        assert!(table.is_empty());
        assert_eq!(table.insert("/a", 1), None);
        assert_eq!(table.insert("/a", 2), Some(1));
        assert_eq!(table.len(), 1);
        assert_eq!(table.get_str("/a"), Some(&2));
        let doubled = table.map(|_, v| v * 2);
        assert_eq!(doubled.get_str("/a"), Some(&4));
        assert_eq!(doubled.iter().collect::<Vec<_>>(), vec![("/a", &4)]);
    }
}
