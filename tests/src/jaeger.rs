//! A real Jaeger v2 (built by `scripts/install-jaeger.sh`, run by `make setup`): the trace store of
//! the end-to-end telemetry test, standing in for Tempo (the collector's `otlp_grpc/tempo` exporter
//! speaks the same OTLP/gRPC to either). Runs from a generated config: in-memory storage, the OTLP
//! gRPC receiver and the query HTTP API on free loopback ports, its own tracing and metrics off.
//! Queried through the query service's HTTP API (`/api/traces`, the one with tag search).

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::cached_binary;
use crate::cluster::process::{
    ManagedProcess, Spawner, free_loopback_ports, poll_until, start_retrying_port_conflicts,
};
use crate::otelcol::http_request;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 3;

/// The Jaeger binary: `$JAEGER_BIN`, else the path `scripts/install-jaeger.sh` recorded in
/// `$APISCOPE_CACHE/jaeger.env`. `None` if neither names an existing file.
pub fn jaeger_binary() -> Option<PathBuf> {
    cached_binary("JAEGER_BIN", "jaeger.env")
}

/// One span as Jaeger's query API returns it (times in microseconds, as the API has them).
#[derive(Debug, Clone)]
pub struct JaegerSpan {
    pub trace_id: String,
    pub span_id: String,
    pub operation: String,
    pub service: String,
    pub start_micros: u64,
    pub duration_micros: u64,
    /// The span's tags, values as JSON (strings, numbers, booleans).
    pub tags: Vec<(String, serde_json::Value)>,
}

impl JaegerSpan {
    pub fn tag(&self, key: &str) -> Option<&serde_json::Value> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// A running Jaeger. Stopped by [`Jaeger::stop`], or killed on drop.
pub struct Jaeger {
    // Field order: the process is killed (Drop) before the spawner thread is joined.
    process: ManagedProcess,
    _spawner: Spawner,
    otlp_grpc_port: u16,
    query_port: u16,
}

impl Jaeger {
    /// Starts Jaeger with a config written to `workdir` and waits until both its query API answers
    /// and its OTLP/gRPC receiver accepts connections.
    pub fn start(workdir: &Path) -> Result<Jaeger> {
        let Some(binary) = jaeger_binary() else {
            bail!(
                "jaeger not found: run scripts/install-jaeger.sh (or `make setup`), or set JAEGER_BIN"
            );
        };
        fs::create_dir_all(workdir)
            .with_context(|| format!("creating Jaeger work directory {}", workdir.display()))?;
        let spawner = Spawner::new()?;
        let (process, otlp_grpc_port, query_port) =
            start_retrying_port_conflicts("jaeger", workdir, START_ATTEMPTS, |log_path| {
                start_once(&spawner, &binary, workdir, log_path)
            })?;
        Ok(Jaeger {
            process,
            _spawner: spawner,
            otlp_grpc_port,
            query_port,
        })
    }

    /// `127.0.0.1:<port>` of the OTLP/gRPC receiver (what `TEMPO_OTLP_ENDPOINT` takes).
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.otlp_grpc_port)
    }

    /// `http://127.0.0.1:<port>` of the query service (its HTTP API; the UI is a placeholder).
    pub fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.query_port)
    }

    fn query_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.query_port))
    }

    /// `/api/services`: the services Jaeger has spans of.
    pub fn services(&self) -> Result<Vec<String>> {
        let body = self.get_json("/api/services")?;
        Ok(body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect())
    }

    /// `/api/traces` search: the spans of every trace matching `service`, `operation` (if given)
    /// and every `tags` pair. Only the matching traces' spans are returned, all of them (a trace
    /// may hold more spans than the one that matched).
    pub fn find_traces(
        &self,
        service: &str,
        operation: Option<&str>,
        tags: &[(&str, &str)],
    ) -> Result<Vec<JaegerSpan>> {
        let path = search_path(service, operation, tags);
        let body = self.get_json(&path)?;
        let mut spans = Vec::new();
        for trace in body["data"].as_array().into_iter().flatten() {
            let processes = &trace["processes"];
            for span in trace["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                let process = span["processID"].as_str().unwrap_or_default();
                spans.push(JaegerSpan {
                    trace_id: text("traceID"),
                    span_id: text("spanID"),
                    operation: text("operationName"),
                    service: processes[process]["serviceName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    start_micros: span["startTime"]
                        .as_u64()
                        .with_context(|| format!("startTime in {span}"))?,
                    duration_micros: span["duration"]
                        .as_u64()
                        .with_context(|| format!("duration in {span}"))?,
                    tags: span["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|tag| {
                            (
                                tag["key"].as_str().unwrap_or_default().to_owned(),
                                tag["value"].clone(),
                            )
                        })
                        .collect(),
                });
            }
        }
        Ok(spans)
    }

    fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = http_request(self.query_addr(), "GET", path, None, b"")?;
        let body: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path}: {}", String::from_utf8_lossy(&body)))?;
        if status != 200 || !body["errors"].is_null() {
            bail!("GET {path} failed ({status}): {body}");
        }
        Ok(body)
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Fails with the log's tail if Jaeger has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// SIGTERM, bounded wait, SIGKILL.
    pub fn stop(mut self) -> Result<()> {
        self.process.terminate(STOP_GRACE)?;
        Ok(())
    }
}

/// The `/api/traces` path (service, operation, tags as the JSON object the API takes).
pub fn search_path(service: &str, operation: Option<&str>, tags: &[(&str, &str)]) -> String {
    let mut path = format!("/api/traces?service={}", percent_encode(service));
    if let Some(operation) = operation {
        path.push_str(&format!("&operation={}", percent_encode(operation)));
    }
    if !tags.is_empty() {
        let object: serde_json::Map<String, serde_json::Value> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let json = serde_json::Value::Object(object).to_string();
        path.push_str(&format!("&tags={}", percent_encode(&json)));
    }
    path.push_str("&limit=20");
    path
}

fn config(otlp_grpc: u16, query_http: u16, query_grpc: u16) -> String {
    format!(
        r#"# Generated by tests/src/jaeger.rs: Jaeger v2 as the test's trace store.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    # Jaeger would trace its own queries and, at shutdown, stall exporting them.
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{query_http}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"#
    )
}

fn start_once(
    spawner: &Spawner,
    binary: &Path,
    workdir: &Path,
    log_path: PathBuf,
) -> Result<(ManagedProcess, u16, u16)> {
    let ports = free_loopback_ports(3)?;
    let [otlp_grpc, query_http, query_grpc] = [ports[0], ports[1], ports[2]];
    let config_path = workdir.join("jaeger.yaml");
    fs::write(&config_path, config(otlp_grpc, query_http, query_grpc))?;
    let mut process = ManagedProcess::start(
        spawner,
        "jaeger",
        binary,
        vec!["--config".into(), config_path.display().to_string()],
        log_path,
    )?;
    let query = SocketAddr::from(([127, 0, 0, 1], query_http));
    let otlp = SocketAddr::from(([127, 0, 0, 1], otlp_grpc));
    let ready = poll_until(
        "Jaeger's query API and OTLP receiver to accept requests",
        START_TIMEOUT,
        Duration::from_millis(100),
        || {
            process.ensure_running()?;
            let query_ready = matches!(
                http_request(query, "GET", "/api/services", None, &[]),
                Ok((200, _))
            );
            let otlp_ready = TcpStream::connect_timeout(&otlp, Duration::from_secs(1)).is_ok();
            Ok((query_ready && otlp_ready).then_some(()))
        },
    );
    match ready {
        Ok(()) => Ok((process, otlp_grpc, query_http)),
        Err(error) => {
            let _ = process.terminate(STOP_GRACE);
            Err(error.context(format!("jaeger log:\n{}", process.log_tail())))
        }
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_encodes_operation_and_tags() {
        assert_eq!(
            search_path(
                "kube-apiserver",
                Some("GET /api/v1/namespaces/{namespace}/configmaps"),
                &[("k8s.apiserver.audit_id", "a-1")]
            ),
            "/api/traces?service=kube-apiserver\
             &operation=GET%20%2Fapi%2Fv1%2Fnamespaces%2F%7Bnamespace%7D%2Fconfigmaps\
             &tags=%7B%22k8s.apiserver.audit_id%22%3A%22a-1%22%7D&limit=20"
        );
    }
}
