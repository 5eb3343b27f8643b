//! `apiscope relay`: Kafka -> live bus -> WebSocket, plus `/metrics`; stops on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use super::signals::stop_signal;
use crate::relay::{KafkaSource, RelayArgs, RelayMetrics};
use crate::sinks::prometheus::serve_metrics;
use anyhow::Result;
use prometheus_client::registry::Registry;

pub async fn relay(args: RelayArgs, metrics_address: Option<SocketAddr>) -> Result<()> {
    let source_config = args.source_config()?;
    let bus = args.server.bus();
    let metrics = Arc::new(RelayMetrics::default());
    let mut registry = Registry::default();
    bus.metrics().register(&mut registry);
    metrics.register(&mut registry);
    let metrics_server = match metrics_address {
        Some(address) => Some(serve_metrics(address, Arc::new(registry)).await?.1),
        None => None,
    };
    let source = KafkaSource::start(source_config, bus.clone(), metrics)?;
    let (_, live_server) = args.server.serve(args.listen, "relay", &bus).await?;
    stop_signal().await;
    live_server.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    // Joins the Kafka thread (it polls with a short timeout).
    tokio::task::spawn_blocking(move || drop(source)).await?;
    Ok(())
}
