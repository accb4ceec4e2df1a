//! `LatencyLayer`: the registry to record into and the route labeler.

use std::sync::Arc;
use tower_layer::Layer;
use vitals_core::route::RouteLabeler;

use crate::part::LatencyPart;
use crate::registry::LatencyRegistry;
use crate::service::Latency;

/// Records every request's duration, to the last byte of its body, into a
/// [`LatencyRegistry`]; see the [crate documentation](crate).
///
/// Cheap to clone: clones (axum makes one per route) record into the same registry.
#[derive(Clone, Debug)]
pub struct LatencyLayer {
    /// One reference count to bump per clone: tower services are cloned per request.
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) part: LatencyPart,
    pub(crate) labeler: RouteLabeler,
}

impl LatencyLayer {
    /// Records into `registry`, labelling requests by axum's `MatchedPath` (else `unmatched`).
    pub fn new(registry: LatencyRegistry) -> Self {
        Self {
            shared: Arc::new(Shared {
                part: LatencyPart { registry },
                labeler: RouteLabeler::new(),
            }),
        }
    }

    /// Labels requests with `labeler` (for routers other than axum, or gRPC methods).
    #[must_use]
    pub fn with_route_labeler(self, labeler: RouteLabeler) -> Self {
        Self {
            shared: Arc::new(Shared {
                part: self.shared.part.clone(),
                labeler,
            }),
        }
    }

    /// The registry this layer records into.
    pub fn registry(&self) -> &LatencyRegistry {
        &self.shared.part.registry
    }

    /// This layer's behaviour as a part, for a driver that runs several parts in one pass
    /// (the `vitals` stack).
    pub fn part(&self) -> LatencyPart {
        self.shared.part.clone()
    }

    /// The route labeler this layer uses.
    pub fn route_labeler(&self) -> &RouteLabeler {
        &self.shared.labeler
    }
}

impl LatencyLayer {
    /// What every clone shares: the part and the labeler.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Latency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Latency::new(inner, self.clone())
    }
}
