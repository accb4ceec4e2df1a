//! `ResponseCacheHandle`: what a service (or its admin route) does to the cache from outside a
//! request — purge by key, route or tag — and what it reads of it.

use std::sync::Arc;

use http::Uri;

use crate::flight::Flights;
use crate::key::{primary_key, target};
use crate::store::MemoryStore;

/// A handle to the store every copy of a [`ResponseCacheLayer`](crate::ResponseCacheLayer)
/// shares. Cheap to clone.
///
/// ```
/// use vitals_response_cache::ResponseCacheLayer;
///
/// let cache = ResponseCacheLayer::new();
/// let handle = cache.handle();
/// // After a product changed:
/// handle.purge("/products/42");
/// // After the catalogue was reloaded (responses named the tag in `Surrogate-Key`):
/// handle.purge_tag("catalogue");
/// assert_eq!(handle.keys(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct ResponseCacheHandle {
    store: MemoryStore,
    flights: Arc<Flights>,
    namespace: String,
}

impl ResponseCacheHandle {
    pub(crate) fn new(store: MemoryStore, flights: Arc<Flights>, namespace: String) -> Self {
        Self {
            store,
            flights,
            namespace,
        }
    }

    /// Forgets what is stored for one request target (path and query; the query's order does
    /// not matter). A target that is not a valid URI purges nothing, and `false` says so.
    pub fn purge(&self, path_and_query: &str) -> bool {
        let Ok(uri) = path_and_query.parse::<Uri>() else {
            return false;
        };
        self.store
            .remove(primary_key(&self.namespace, "", &target(&uri)));
        true
    }

    /// Forgets what is stored under one key of a route with its own key function
    /// ([`CacheSettings::with_key`](crate::CacheSettings::with_key)).
    pub fn purge_key(&self, route: &str, key: &str) {
        self.store.remove(primary_key(&self.namespace, route, key));
    }

    /// Forgets everything stored for `route`.
    pub fn purge_route(&self, route: &str) {
        let route = route.to_owned();
        self.store
            .remove_where(move |entry| entry.route.as_str() == route);
    }

    /// Forgets every response that named `tag` in the tag header.
    pub fn purge_tag(&self, tag: &str) {
        let tag = tag.to_owned();
        self.store
            .remove_where(move |entry| entry.tags.iter().any(|named| **named == *tag));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.store.clear();
    }

    /// Keys stored (after the store's pending work, so purges are counted).
    pub fn keys(&self) -> u64 {
        self.store.sync();
        self.store.len()
    }

    /// Bytes stored, as the bound weighs them (after the store's pending work).
    pub fn bytes(&self) -> u64 {
        self.store.sync();
        self.store.bytes()
    }

    /// Keys being filled now (one handler call each, however many requests wait on them).
    pub fn filling(&self) -> usize {
        self.flights.len()
    }
}
