//! `ClientMetricsLayer`: each service it makes keeps its own table of histogram handles, shared
//! by the service's clones.

use tower_layer::Layer;

use super::service::ClientMetrics;

/// Records `http.client.request.duration` for every call through it (see the
/// [module docs](crate::metrics)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientMetricsLayer {
    _private: (),
}

impl ClientMetricsLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for ClientMetricsLayer {
    type Service = ClientMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientMetrics::new(inner)
    }
}
