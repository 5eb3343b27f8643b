//! The OTLP flags shared by `capture` and `replay`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::vocabulary::parse_duration;

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (collector port 4317); the endpoint is used as given.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (collector port 4318); `/v1/traces`, `/v1/logs` and
    /// `/v1/metrics` are appended to the endpoint.
    HttpProtobuf,
}

/// OTLP flags, shared by `capture` and `replay`.
#[derive(Args, Clone, Debug)]
pub struct OtlpArgs {
    /// Send spans, log records and metrics to this OTLP collector (e.g. http://127.0.0.1:4317).
    /// Off when not given.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "grpc")]
    pub otlp_protocol: OtlpProtocol,
    /// Deadline of one export, retries included (the exporter retries with backoff within it).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub otlp_timeout: Duration,
    /// Extra request headers / gRPC metadata: key=value,key2=value2.
    #[arg(long, value_parser = parse_headers, default_value = "")]
    pub otlp_headers: Headers,
    /// Spans (and, separately, log records) waiting for export at most; more are dropped and
    /// counted in apiscope_otlp_dropped_total.
    #[arg(long, default_value_t = 4096)]
    pub otlp_max_queue_size: usize,
    /// Largest batch sent in one export.
    #[arg(long, default_value_t = 512)]
    pub otlp_max_export_batch_size: usize,
    /// How often queued spans and log records are sent (sooner when a batch is full). 1 s keeps
    /// a request's span within ~1.5 s of the request in Kafka (BENCHMARKS.md, freshness); the
    /// SDK's usual 5 s put the p99 at 5 s.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub otlp_export_interval: Duration,
    /// How often the metrics are exported (cumulative: a longer interval loses nothing).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub otlp_metric_export_interval: Duration,
    /// PEM file of the CA(s) that sign the collector's certificate, for an `https://` gRPC
    /// endpoint (OTLP over TLS). Without it, the system's trust store.
    #[arg(long, value_name = "FILE")]
    pub otlp_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) apiscope presents to the collector (mutual TLS); needs
    /// --otlp-client-key.
    #[arg(long, value_name = "FILE", requires = "otlp_client_key")]
    pub otlp_client_cert: Option<PathBuf>,
    /// PEM private key of --otlp-client-cert.
    #[arg(long, value_name = "FILE", requires = "otlp_client_cert")]
    pub otlp_client_key: Option<PathBuf>,
    /// `k8s.cluster.name` resource attribute.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// `k8s.node.name` / `host.name` resource attributes (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Wait (up to `otlp_timeout` per item) for room in a full export queue instead of dropping.
    /// For `replay`, where the input can wait; live capture must never wait.
    #[arg(skip)]
    pub block_when_full: bool,
}

impl Default for OtlpArgs {
    fn default() -> Self {
        OtlpArgs {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Grpc,
            otlp_timeout: Duration::from_secs(10),
            otlp_headers: Headers::default(),
            otlp_max_queue_size: 4096,
            otlp_max_export_batch_size: 512,
            otlp_export_interval: Duration::from_secs(1),
            otlp_metric_export_interval: Duration::from_secs(5),
            otlp_ca_file: None,
            otlp_client_cert: None,
            otlp_client_key: None,
            cluster_name: None,
            node_name: None,
            block_when_full: false,
        }
    }
}

/// Parsed `--otlp-headers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

pub fn parse_headers(text: &str) -> Result<Headers, String> {
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{pair:?}: empty header name"));
        }
        out.push((key.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Headers(out))
}
