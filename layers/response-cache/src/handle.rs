//! `ResponseCacheHandle`: what a service (or its admin route) does to the cache from outside a
//! request — purge by key, route or tag — and what it reads of it.

use std::sync::Arc;

use http::Uri;

use crate::flight::Flights;
use crate::key::{primary_key, target};
use crate::store::MemoryStore;
use crate::tally::{CacheSnapshot, Tallies};

/// A handle to the store every copy of a [`ResponseCacheLayer`](crate::ResponseCacheLayer)
/// shares. Cheap to clone.
///
/// With [Redis](crate::ResponseCacheLayer::with_redis) behind the memory, a purge forgets
/// what this instance holds at once, and what the fleet shares in Redis in the background
/// (within the store's timeout, on the current runtime); other instances' memory drops its
/// copies within their local TTL.
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
    tallies: Arc<Tallies>,
    namespace: String,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisStore>,
}

impl ResponseCacheHandle {
    pub(crate) fn new(
        store: MemoryStore,
        flights: Arc<Flights>,
        tallies: Arc<Tallies>,
        namespace: String,
        #[cfg(feature = "redis")] redis: Option<crate::RedisStore>,
    ) -> Self {
        Self {
            store,
            flights,
            tallies,
            namespace,
            #[cfg(feature = "redis")]
            redis,
        }
    }

    /// Does `purge` on the shared store too, in the background.
    #[cfg(feature = "redis")]
    fn everywhere<F, Fut>(&self, purge: F)
    where
        F: FnOnce(crate::RedisStore, String) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        if let Some(redis) = self.redis.clone() {
            let namespace = self.namespace.clone();
            crate::redis_store::in_background(async move {
                let _ = purge(redis, namespace).await;
            });
        }
    }

    /// Forgets what is stored for one request target (path and query; the query's order does
    /// not matter). A target that is not a valid URI purges nothing, and `false` says so.
    pub fn purge(&self, path_and_query: &str) -> bool {
        let Ok(uri) = path_and_query.parse::<Uri>() else {
            return false;
        };
        let key = primary_key(&self.namespace, "", &target(&uri));
        self.store.remove(key);
        #[cfg(feature = "redis")]
        self.everywhere(move |redis, namespace| async move { redis.remove(&namespace, key).await });
        true
    }

    /// Forgets what is stored under one key of a route with its own key function
    /// ([`CacheSettings::with_key`](crate::CacheSettings::with_key)).
    pub fn purge_key(&self, route: &str, key: &str) {
        let key = primary_key(&self.namespace, route, key);
        self.store.remove(key);
        #[cfg(feature = "redis")]
        self.everywhere(move |redis, namespace| async move { redis.remove(&namespace, key).await });
    }

    /// Forgets everything stored for `route`.
    pub fn purge_route(&self, route: &str) {
        let route = route.to_owned();
        #[cfg(feature = "redis")]
        let shared = route.clone();
        #[cfg(feature = "redis")]
        self.everywhere(move |redis, namespace| async move {
            redis.remove_route(&namespace, &shared).await
        });
        self.store
            .remove_where(move |entry| entry.route.as_str() == route);
    }

    /// Forgets every response that named `tag` in the tag header.
    pub fn purge_tag(&self, tag: &str) {
        let tag = tag.to_owned();
        #[cfg(feature = "redis")]
        let shared = tag.clone();
        #[cfg(feature = "redis")]
        self.everywhere(move |redis, namespace| async move {
            redis.remove_tag(&namespace, &shared).await
        });
        self.store
            .remove_where(move |entry| entry.tags.iter().any(|named| **named == *tag));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.store.clear();
        #[cfg(feature = "redis")]
        self.everywhere(|redis, namespace| async move { redis.clear(&namespace).await });
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

    /// What the cache did for each route since the start (hits, stale answers, collapsed
    /// waits, misses…), sorted by route: the dashboard's "Response cache" panel.
    pub fn route_snapshots(&self) -> Vec<(String, CacheSnapshot)> {
        self.tallies.snapshots()
    }

    /// Keys being filled now (one handler call each, however many requests wait on them).
    pub fn filling(&self) -> usize {
        self.flights.len()
    }
}
