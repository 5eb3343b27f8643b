//! The relay's own metrics (`apiscope_relay_*`): what it read from Kafka, what it could not use,
//! and how far behind the newest record it is.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct RelayMetrics {
    pub records: Counter,
    pub record_bytes: Counter,
    pub requests: Counter,
    pub undecodable_records: Counter,
    pub foreign_spans: Counter,
    pub kafka_errors: Counter,
    pub partitions: Gauge,
    pub last_record_timestamp: Gauge<f64, AtomicU64>,
}

impl RelayMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("apiscope_relay");
        r.register(
            "kafka_records",
            "Records read from the traces topic",
            self.records.clone(),
        );
        r.register(
            "kafka_record_bytes",
            "Payload bytes of the records read from the traces topic",
            self.record_bytes.clone(),
        );
        r.register(
            "requests",
            "Requests decoded from apiscope's spans and published to the live view",
            self.requests.clone(),
        );
        r.register(
            "undecodable_records",
            "Records that were not OTLP traces protobuf (skipped)",
            self.undecodable_records.clone(),
        );
        r.register(
            "foreign_spans",
            "Spans of another instrumentation scope or kind than apiscope's requests (skipped)",
            self.foreign_spans.clone(),
        );
        r.register(
            "kafka_errors",
            "Errors the Kafka client reported while consuming (it retries on its own)",
            self.kafka_errors.clone(),
        );
        r.register(
            "kafka_partitions",
            "Partitions of the traces topic this relay reads (all of them)",
            self.partitions.clone(),
        );
        r.register(
            "last_record_timestamp_seconds",
            "Kafka timestamp of the newest record read (Unix seconds): time() minus this is how far behind the relay is",
            self.last_record_timestamp.clone(),
        );
    }
}
