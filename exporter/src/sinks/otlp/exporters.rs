//! The OTLP exporters for one endpoint (gRPC or HTTP/protobuf) and the resource they report.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use opentelemetry::KeyValue;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;

use super::config::{OtlpArgs, OtlpProtocol};

pub(super) struct Exporters {
    pub(super) spans: opentelemetry_otlp::SpanExporter,
    pub(super) logs: opentelemetry_otlp::LogExporter,
    pub(super) metrics: opentelemetry_otlp::MetricExporter,
}

impl Exporters {
    pub(super) fn build(args: &OtlpArgs, endpoint: &str) -> Result<Exporters> {
        let timeout = args.otlp_timeout;
        match args.otlp_protocol {
            OtlpProtocol::Grpc => {
                let mut headers = hyper::HeaderMap::new();
                for (key, value) in &args.otlp_headers.0 {
                    let name = hyper::header::HeaderName::from_bytes(key.as_bytes())
                        .with_context(|| format!("--otlp-headers: bad key {key:?}"))?;
                    let value = hyper::header::HeaderValue::from_str(value)
                        .with_context(|| format!("--otlp-headers: bad value for {key}"))?;
                    headers.insert(name, value);
                }
                let metadata =
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
                let tls = tls_config(args, endpoint)?;
                let mut spans = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(timeout)
                    .with_metadata(metadata.clone());
                let mut logs = opentelemetry_otlp::LogExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(timeout)
                    .with_metadata(metadata.clone());
                let mut metrics = opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(timeout)
                    .with_metadata(metadata);
                if let Some(tls) = tls {
                    spans = spans.with_tls_config(tls.clone());
                    logs = logs.with_tls_config(tls.clone());
                    metrics = metrics.with_tls_config(tls);
                }
                Ok(Exporters {
                    spans: spans.build()?,
                    logs: logs.build()?,
                    metrics: metrics.build()?,
                })
            }
            OtlpProtocol::HttpProtobuf => {
                if has_tls_files(args) {
                    bail!(
                        "--otlp-ca-file, --otlp-client-cert and --otlp-client-key apply to \
                         --otlp-protocol grpc only"
                    );
                }
                let base = endpoint.trim_end_matches('/');
                let headers: HashMap<String, String> =
                    args.otlp_headers.0.iter().cloned().collect();
                Ok(Exporters {
                    spans: opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/traces"))
                        .with_timeout(timeout)
                        .with_headers(headers.clone())
                        .build()?,
                    logs: opentelemetry_otlp::LogExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/logs"))
                        .with_timeout(timeout)
                        .with_headers(headers.clone())
                        .build()?,
                    metrics: opentelemetry_otlp::MetricExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/metrics"))
                        .with_timeout(timeout)
                        .with_headers(headers)
                        .build()?,
                })
            }
        }
    }
}

fn has_tls_files(args: &OtlpArgs) -> bool {
    args.otlp_ca_file.is_some() || args.otlp_client_cert.is_some() || args.otlp_client_key.is_some()
}

/// TLS of an `https://` gRPC endpoint: the CA file's certificates (else the system's trust store)
/// and the client identity for mutual TLS. Unreadable or empty PEM files stop the start here,
/// naming the flag and the file, rather than failing every export later.
fn tls_config(args: &OtlpArgs, endpoint: &str) -> Result<Option<ClientTlsConfig>> {
    if !endpoint.starts_with("https://") {
        if has_tls_files(args) {
            bail!(
                "--otlp-ca-file, --otlp-client-cert and --otlp-client-key need an https:// --otlp-endpoint (got {endpoint})"
            );
        }
        return Ok(None);
    }
    let read_pem = |flag: &str, path: &std::path::Path, marker: &str| -> Result<Vec<u8>> {
        let pem = std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))?;
        if !String::from_utf8_lossy(&pem).contains(marker) {
            bail!("{flag} {}: no PEM {marker} block", path.display());
        }
        Ok(pem)
    };
    let mut tls = ClientTlsConfig::new();
    tls = match &args.otlp_ca_file {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read_pem(
            "--otlp-ca-file",
            path,
            "CERTIFICATE-----",
        )?)),
        None => tls.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&args.otlp_client_cert, &args.otlp_client_key) {
        tls = tls.identity(Identity::from_pem(
            read_pem("--otlp-client-cert", cert, "CERTIFICATE-----")?,
            read_pem("--otlp-client-key", key, "PRIVATE KEY-----")?,
        ));
    }
    Ok(Some(tls))
}

/// `service.name=kube-apiserver` (the spans describe the apiserver's work, not apiscope's),
/// node and cluster names. `process.pid` is a span attribute instead: one exporter may trace
/// several apiserver processes, and their pids are only known once they are attached.
pub(super) fn resource(args: &OtlpArgs) -> Resource {
    let node = args
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(host_name);
    let mut attributes = vec![KeyValue::new("telemetry.distro.name", "apiscope")];
    if let Some(node) = node {
        attributes.push(KeyValue::new("host.name", node.clone()));
        attributes.push(KeyValue::new("k8s.node.name", node));
    }
    if let Some(cluster) = args.cluster_name.clone().filter(|c| !c.is_empty()) {
        attributes.push(KeyValue::new("k8s.cluster.name", cluster));
    }
    Resource::builder()
        .with_service_name("kube-apiserver")
        .with_attributes(attributes)
        .build()
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
