//! The real OpenTelemetry Collector (`otelcol-apiscope`, built by `scripts/install-otelcol.sh` from
//! `otel-collector/builder-config.yaml`) running the production config
//! `otel-collector/production.yaml` itself, with only its endpoint environment variables pointed
//! at this machine: OTLP in on free loopback ports, Kafka and the other back ends as the caller says.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cluster::cached_binary;
use crate::cluster::process::{
    ManagedProcess, Spawner, free_loopback_ports, poll_until, start_retrying_port_conflicts,
};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
const START_ATTEMPTS: usize = 3;

/// The production config, which the tests run unchanged.
pub fn production_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../otel-collector/production.yaml")
}

/// The built collector: `$OTELCOL_BIN`, else the path `scripts/install-otelcol.sh` recorded in
/// `$APISCOPE_CACHE/otelcol.env`. `None` if neither names an existing file.
pub fn collector_binary() -> Option<PathBuf> {
    cached_binary("OTELCOL_BIN", "otelcol.env")
}

/// A running collector. Stopped by [`Collector::stop`], or killed on drop.
pub struct Collector {
    // Field order: the process is killed (Drop) before the spawner thread is joined.
    process: ManagedProcess,
    _spawner: Spawner,
    grpc_port: u16,
    http_port: u16,
    health_port: u16,
}

impl Collector {
    /// Starts the collector with `--config otel-collector/production.yaml`. The OTLP receiver, the
    /// health check and the collector's own metrics get free loopback ports; `env` adds the back
    /// ends' variables (`KAFKA_BROKERS`, ...). Back ends not named in `env` (Tempo, Loki,
    /// Prometheus) are pointed at closed loopback ports rather than the production host names, so
    /// their exporters fail fast and retry in their own queues. Waits for the health check to say
    /// the collector is ready.
    pub fn start(workdir: &Path, env: &[(&str, &str)]) -> Result<Collector> {
        let Some(binary) = collector_binary() else {
            bail!(
                "otelcol-apiscope not found: run scripts/install-otelcol.sh (or `make setup`), \
                 or set OTELCOL_BIN"
            );
        };
        fs::create_dir_all(workdir)
            .with_context(|| format!("creating collector work directory {}", workdir.display()))?;
        let spawner = Spawner::new()?;
        let (process, [grpc_port, http_port, health_port]) =
            start_retrying_port_conflicts("otelcol", workdir, START_ATTEMPTS, |log_path| {
                start_once(&spawner, &binary, env, log_path)
            })?;
        Ok(Collector {
            process,
            _spawner: spawner,
            grpc_port,
            http_port,
            health_port,
        })
    }

    /// `127.0.0.1:<port>` of the OTLP/gRPC receiver.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:<port>` of the OTLP/HTTP receiver (append `/v1/traces` etc.).
    pub fn otlp_http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The OTLP/HTTP receiver's socket address, for [`http_post`].
    pub fn otlp_http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    pub fn health_port(&self) -> u16 {
        self.health_port
    }

    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Fails with the log's tail if the collector has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process.ensure_running()
    }

    /// SIGTERM (the collector drains its queues until its shutdown ends), bounded wait, SIGKILL.
    pub fn stop(mut self) -> Result<()> {
        self.process.terminate(STOP_GRACE)?;
        Ok(())
    }
}

fn start_once(
    spawner: &Spawner,
    binary: &Path,
    extra_env: &[(&str, &str)],
    log_path: PathBuf,
) -> Result<(ManagedProcess, [u16; 3])> {
    // OTLP gRPC, OTLP HTTP, health check, own metrics, and three closed ports for the back ends
    // the caller does not provide (nothing listens there once the probe listeners are dropped).
    let ports = free_loopback_ports(7)?;
    let [grpc, http, health, metrics] = [ports[0], ports[1], ports[2], ports[3]];
    let mut env: Vec<(String, String)> = vec![
        ("OTLP_GRPC_ENDPOINT".into(), format!("127.0.0.1:{grpc}")),
        ("OTLP_HTTP_ENDPOINT".into(), format!("127.0.0.1:{http}")),
        (
            "OTELCOL_HEALTH_ENDPOINT".into(),
            format!("127.0.0.1:{health}"),
        ),
        ("OTELCOL_METRICS_HOST".into(), "127.0.0.1".into()),
        ("OTELCOL_METRICS_PORT".into(), metrics.to_string()),
        (
            "TEMPO_OTLP_ENDPOINT".into(),
            format!("127.0.0.1:{}", ports[4]),
        ),
        (
            "LOKI_OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{}/otlp", ports[5]),
        ),
        (
            "PROMETHEUS_REMOTE_WRITE_ENDPOINT".into(),
            format!("http://127.0.0.1:{}/api/v1/write", ports[6]),
        ),
    ];
    for (key, value) in extra_env {
        env.retain(|(existing, _)| existing != key);
        env.push(((*key).into(), (*value).into()));
    }
    let config = production_config();
    let mut process = ManagedProcess::start_with_env(
        spawner,
        "otelcol",
        binary,
        vec!["--config".into(), config.display().to_string()],
        &env,
        log_path,
    )?;
    let ready = poll_until(
        "the collector's health check to report ready",
        START_TIMEOUT,
        Duration::from_millis(100),
        || {
            process.ensure_running()?;
            let addr = SocketAddr::from(([127, 0, 0, 1], health));
            Ok(match http_request(addr, "GET", "/", None, &[]) {
                Ok((200, _)) => Some(()),
                _ => None,
            })
        },
    );
    match ready {
        Ok(()) => Ok((process, [grpc, http, health])),
        Err(error) => {
            let _ = process.terminate(STOP_GRACE);
            Err(error.context(format!("collector log:\n{}", process.log_tail())))
        }
    }
}

/// POSTs `body` to `path` on `addr` over HTTP/1.1 and returns the status and response body.
pub fn http_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    http_request(addr, "POST", path, Some(content_type), body)
}

/// A minimal HTTP/1.1 client (one request per connection, `Connection: close`), bounded by socket
/// timeouts. Enough for OTLP/HTTP, health checks and the Prometheus API (chunked bodies decoded).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<u8>)> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_end(&mut response)
        .with_context(|| format!("reading the response of {method} {path} from {addr}"))?;
    let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("malformed HTTP response from {addr}: no end of headers");
    };
    let head = String::from_utf8_lossy(&response[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("malformed HTTP status line from {addr}: {head}"))?;
    let body = &response[head_end + 4..];
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).with_context(|| format!("malformed chunked body from {addr}"))?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).context("chunk cut short")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).context("chunk without its CRLF")?;
    }
}
