//! `apiscope relay`: the live view for a whole cluster, from Kafka. It reads the traces topic the
//! collector writes (OTLP protobuf), turns apiscope's spans back into requests, and serves them
//! with the same bus, server and UI as `capture --serve-ui` (docs/live-view.md), `hello.mode`
//! `relay`. Kafka is the source of truth: each relay reads all of it, so any number of relays
//! behind one Service show the same stream.
//!
//! - `decode`: a Kafka record -> the requests its spans describe.
//! - `consumer`: the topic -> the bus, on its own thread.

pub mod consumer;
pub mod decode;
pub mod metrics;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};

pub use consumer::{KafkaSource, KafkaSourceConfig};
pub use metrics::RelayMetrics;

use crate::sinks::live::args::LiveServerArgs;
use crate::sinks::live::server::DEFAULT_UI_ADDRESS;
use crate::vocabulary::parse_duration;

/// The traces topic of the shipped collector configuration.
pub const DEFAULT_TRACES_TOPIC: &str = "apiscope-traces";

#[derive(clap::Args, Clone, Debug)]
pub struct RelayArgs {
    /// Serve the live view (UI, WebSocket, request API) on this address.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_UI_ADDRESS)]
    pub listen: SocketAddr,
    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, value_name = "HOST:PORT[,...]")]
    pub kafka_brokers: String,
    /// The topic the collector writes spans to (otlp_proto encoding).
    #[arg(long, value_name = "TOPIC", default_value = DEFAULT_TRACES_TOPIC)]
    pub kafka_topic: String,
    /// At start, read the topic from this long ago, so the history is there at once; never more
    /// than --ui-max-history records back per partition (the history holds no more).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub history_window: Duration,
    /// A librdkafka consumer property, e.g. `fetch.wait.max.ms=100` or `client.rack=eu-1a`;
    /// repeat for more. (This build has no TLS or SASL to Kafka.)
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    #[command(flatten)]
    pub server: LiveServerArgs,
}

impl RelayArgs {
    pub fn source_config(&self) -> Result<KafkaSourceConfig> {
        if self.kafka_brokers.trim().is_empty() {
            bail!("--kafka-brokers is empty");
        }
        Ok(KafkaSourceConfig {
            brokers: self.kafka_brokers.clone(),
            topic: self.kafka_topic.clone(),
            history_window: self.history_window,
            max_history_records: self.server.ui_max_history.max(1),
            properties: self.kafka_properties.clone(),
        })
    }
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_key_equals_value() {
        assert_eq!(
            parse_property("sasl.password=a=b").unwrap(),
            ("sasl.password".to_string(), "a=b".to_string())
        );
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }
}
