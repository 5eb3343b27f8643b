//! Internal metrics of the filter stage.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct FilterMetrics {
    /// Requests `--filter` kept out of the per-request outputs (they still count in the
    /// request metrics).
    pub requests_dropped: Counter,
}

impl FilterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("apiscope_filter");
        r.register(
            "requests_dropped",
            "Requests --filter kept out of the per-request outputs (JSON/table writer, OTLP spans and logs); request metrics still count them",
            self.requests_dropped.clone(),
        );
    }
}
