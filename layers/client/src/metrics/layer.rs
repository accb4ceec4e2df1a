//! `ClientMetricsLayer`: each service it makes keeps its own table of histogram handles, shared
//! by the service's clones.

use tower_layer::Layer;

use super::service::ClientMetrics;

/// Records `http.client.request.duration` for every call through it (see the
/// [module docs](crate::metrics)).
#[derive(Clone, Debug, Default)]
pub struct ClientMetricsLayer {
    /// `server.address` and `server.port` of calls whose URI names no server.
    server: Option<(Box<str>, u16)>,
}

impl ClientMetricsLayer {
    /// The layer: `server.address` and `server.port` from each call's URI.
    pub fn new() -> Self {
        Self::default()
    }

    /// `server.address` and `server.port` for calls whose URI names no server — a tonic
    /// `Channel`'s requests carry only the path (the channel adds its origin below the layers
    /// around it). A URI with an authority still names its own.
    ///
    /// ```
    /// use vitals_client::ClientMetricsLayer;
    ///
    /// let layer = ClientMetricsLayer::new().with_server("payment.internal", 50051);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn with_server(mut self, host: impl Into<Box<str>>, port: u16) -> Self {
        self.server = Some((host.into(), port));
        self
    }
}

impl<S> Layer<S> for ClientMetricsLayer {
    type Service = ClientMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientMetrics::new(inner, self.server.clone())
    }
}
