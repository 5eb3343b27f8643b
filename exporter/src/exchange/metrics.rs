//! Internal metrics of the exchange stage.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct ExchangeMetrics {
    pub desyncs: Counter,
    pub hook_header_blocks: Counter,
    pub hook_header_blocks_used: Counter,
    pub streams_evicted: Counter,
    pub body_bytes_over_limit: Counter,
}

impl ExchangeMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("apiscope_exchange");
        r.register(
            "header_desyncs",
            "Times a connection direction lost its HPACK state (headers then come only from hooks)",
            self.desyncs.clone(),
        );
        r.register(
            "hook_header_blocks",
            "Header blocks received from the header-level hooks in Go's HTTP/2 code",
            self.hook_header_blocks.clone(),
        );
        r.register(
            "hook_header_blocks_used",
            "Hook header blocks that supplied headers the wire decoder could not",
            self.hook_header_blocks_used.clone(),
        );
        r.register(
            "streams_evicted",
            "Open streams ended early to keep the per-connection stream table bounded",
            self.streams_evicted.clone(),
        );
        r.register_with_unit(
            "body_over_limit",
            "Body bytes not kept for decoding because the message exceeded the keep limit",
            prometheus_client::registry::Unit::Bytes,
            self.body_bytes_over_limit.clone(),
        );
    }
}
