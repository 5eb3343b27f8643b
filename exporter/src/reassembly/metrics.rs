//! Internal metrics of the reassembly stage.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Default)]
pub struct ReassemblyMetrics {
    pub out_of_order: Counter,
    pub evicted_idle: Counter,
    pub evicted_too_many: Counter,
    pub evicted_memory: Counter,
    pub gap_bytes: Counter,
    pub connections: Gauge,
    pub buffered_bytes: Gauge,
}

impl ReassemblyMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("apiscope_reassembly");
        r.register(
            "out_of_order_chunks",
            "Chunks whose timestamp was earlier than the previous chunk of the same connection and direction",
            self.out_of_order.clone(),
        );
        r.register(
            "evicted_idle_connections",
            "Connections dropped after the idle timeout",
            self.evicted_idle.clone(),
        );
        r.register(
            "evicted_excess_connections",
            "Connections dropped because the connection table was full",
            self.evicted_too_many.clone(),
        );
        r.register(
            "evicted_memory_connections",
            "Connections dropped because they (or all together) held more bytes than allowed",
            self.evicted_memory.clone(),
        );
        r.register_with_unit(
            "gap",
            "Stream bytes the capture did not copy, passed on as gaps of known length",
            Unit::Bytes,
            self.gap_bytes.clone(),
        );
        r.register(
            "connections",
            "Connections tracked by the decoder",
            self.connections.clone(),
        );
        r.register_with_unit(
            "buffered",
            "Bytes held by the decode stages (partial frames, bodies kept for decoding)",
            Unit::Bytes,
            self.buffered_bytes.clone(),
        );
    }
}
