//! `http.server.active_requests`: up when a request starts, down when its response ends or it
//! is dropped — whichever way it ends, the guard's `Drop` takes it down exactly once.

/// A request being served, as the exporters see it.
pub(crate) struct Active {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
    #[cfg(feature = "opentelemetry")]
    otel: Option<(
        opentelemetry::metrics::UpDownCounter<i64>,
        [opentelemetry::KeyValue; 1],
    )>,
}

impl Active {
    pub(crate) fn start(
        method: &'static str,
        #[cfg(feature = "metrics")] gauges: &crate::metrics::ActiveGauges,
        #[cfg(feature = "opentelemetry")] otel: Option<&crate::otel::Instruments>,
    ) -> Self {
        let active = Self {
            #[cfg(feature = "metrics")]
            gauge: gauges.for_method(method),
            #[cfg(feature = "opentelemetry")]
            otel: otel.map(|instruments| instruments.active(method)),
        };
        #[cfg(feature = "metrics")]
        active.gauge.increment(1.0);
        #[cfg(feature = "opentelemetry")]
        if let Some((counter, attributes)) = &active.otel {
            counter.add(1, attributes);
        }
        active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        self.gauge.decrement(1.0);
        #[cfg(feature = "opentelemetry")]
        if let Some((counter, attributes)) = &self.otel {
            counter.add(-1, attributes);
        }
    }
}
