//! `apiscope`: see every API call inside a kube-apiserver.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use apiscope::capture::TlsChunk;
use apiscope::capture::config::CaptureConfig;
use apiscope::capture::metrics::CaptureMetrics;
use apiscope::capture::queue::chunk_queue;
use apiscope::capture::run::{FLUSH_GRACE, run_capture};
use apiscope::capture::tracer::ProbePoints;
use apiscope::k8s::ApiRequest;
use apiscope::k8s::release::KubernetesRelease;
use apiscope::pipeline::{DecodeConfig, DecodeMetrics, DecodePipeline};
use apiscope::policy::CapturePolicy;
use apiscope::record::{ChunkReader, PcapngWriter, realtime_minus_monotonic_ns};
use apiscope::sinks::Sinks;
use apiscope::sinks::otlp::OtlpArgs;
use apiscope::sinks::prometheus::serve_metrics;
use apiscope::sinks::stdout::{OutputFormat, table_header, write_chunk, write_request};
use apiscope::vocabulary::parse_duration;
use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;

use tracing::info;

#[derive(Parser)]
#[command(name = "apiscope", version, about)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax); also read from RUST_LOG.
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to kube-apiserver processes and print every API request they serve.
    Capture {
        #[command(flatten)]
        config: CaptureConfig,
        #[command(flatten)]
        decode: DecodeConfig,
        /// Where the output goes ("-" for stdout).
        #[arg(long, default_value = "-")]
        output: String,
        /// json: one ApiRequest per line; table: for people; chunks: the raw TLS chunks.
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
        /// Also write the plaintext as a pcapng file (synthetic TCP/IP with the real addresses)
        /// that Wireshark and tshark dissect as HTTP/2. Holds raw plaintext: created with mode 0600.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Serve Prometheus metrics on this address (`/metrics`); "off" disables it.
        #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_address)]
        metrics_address: MetricsAddress,
        /// Stop after this long (e.g. 30s); without it, run until SIGINT/SIGTERM.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        #[command(flatten)]
        otlp: OtlpArgs,
    },
    /// Decode a pcapng recording made by `capture --record`, exactly as `capture` decodes live.
    Replay {
        file: PathBuf,
        #[command(flatten)]
        decode: DecodeConfig,
        /// Where the output goes ("-" for stdout).
        #[arg(long, default_value = "-")]
        output: String,
        /// json: one ApiRequest per line; table: for people; chunks: the raw TLS chunks.
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
        // Replaying into a collector should send every request: replay sets block_when_full,
        // so a full export queue makes decoding wait (while exports succeed) instead of drop.
        #[command(flatten)]
        otlp: OtlpArgs,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    match cli.command {
        Command::Capture {
            config,
            decode,
            output,
            format,
            record,
            metrics_address,
            duration,
            otlp,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let output = Output::open(
                &output,
                format,
                decode,
                realtime_minus_monotonic_ns(),
                &otlp,
                CAPTURE_OTLP_FLUSH,
            )?;
            runtime.block_on(capture(config, output, record, metrics_address, duration))
        }
        Command::Replay {
            file,
            decode,
            output,
            format,
            mut otlp,
        } => {
            otlp.block_when_full = true;
            let flush = otlp.otlp_timeout;
            let mut output = Output::open(&output, format, decode, 0, &otlp, flush)?;
            // Streams: a recording can be far larger than memory.
            let mut reader = ChunkReader::open(&file)?;
            let mut offset_known = false;
            while let Some(chunk) = reader.next() {
                let chunk = chunk?;
                if !offset_known {
                    if let Some(offset) = reader.realtime_offset_ns() {
                        output.pipeline.set_realtime_offset(offset);
                        offset_known = true;
                    }
                }
                output.chunk(&chunk)?;
            }
            output.finish()
        }
    }
}

async fn capture(
    config: CaptureConfig,
    mut output: Output,
    record: Option<PathBuf>,
    metrics_address: MetricsAddress,
    duration: Option<std::time::Duration>,
) -> Result<()> {
    let metrics = Arc::new(CaptureMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    output.metrics.register(&mut registry);
    output.sinks.register(&mut registry);
    let metrics_server = match metrics_address.0 {
        Some(address) => Some(serve_metrics(address, Arc::new(registry)).await?.1),
        None => None,
    };
    let (sender, mut receiver) = chunk_queue(config.queue_capacity);
    let request_metrics = output.sinks.metrics.clone();
    let mut recording = record.as_deref().map(PcapngWriter::create).transpose()?;
    // Decoding and output run on their own thread: they must not stall the ring-buffer reader.
    let runtime = tokio::runtime::Handle::current();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        loop {
            // Waits at most a second, so the open-request gauges stay fresh on a quiet apiserver.
            let next = runtime.block_on(tokio::time::timeout(
                std::time::Duration::from_secs(1),
                receiver.recv(),
            ));
            match next {
                Ok(Some(batch)) => {
                    for chunk in &batch {
                        if let Some(recording) = recording.as_mut() {
                            recording.write_chunk(chunk)?;
                        }
                        output.chunk(chunk)?;
                    }
                    // Requests decoded from the batch become visible together: one write.
                    output.flush()?;
                }
                Ok(None) => break,
                Err(_quiet_second) => output.refresh_gauges(),
            }
        }
        if let Some(recording) = recording.as_mut() {
            recording.flush()?;
        }
        output.finish()
    });
    let stop = async move {
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let timeout = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
            _ = sigterm.recv() => info!("SIGTERM: stopping"),
            _ = timeout => info!("duration reached: stopping"),
        }
    };
    // The release's labelling rules, from the binary's build info unless --kubernetes-version
    // fixed them (and before the traffic's loopback User-Agent could tell).
    let on_attach = move |pid: u32, points: &ProbePoints| {
        if request_metrics.release_fixed() {
            return;
        }
        let version = |module: &str| points.module_versions.get(module).map(String::as_str);
        if let Some(release) = KubernetesRelease::from_build_info(version) {
            info!(pid, release = %release, "Kubernetes release from the build info");
            request_metrics.set_release(release);
        }
    };
    let result = run_capture(config, metrics.clone(), sender, on_attach, stop).await;
    tokio::time::timeout(FLUSH_GRACE, writer)
        .await
        .context("output did not finish in time")?
        .context("output task")??;
    info!(summary = %metrics.summary(), "capture finished");
    if let Some(server) = metrics_server {
        server.abort();
    }
    result
}

/// A socket address, or `None` for "off".
#[derive(Clone, Debug)]
struct MetricsAddress(Option<std::net::SocketAddr>);

fn parse_metrics_address(text: &str) -> Result<MetricsAddress, String> {
    if text == "off" {
        return Ok(MetricsAddress(None));
    }
    text.parse()
        .map(|a| MetricsAddress(Some(a)))
        .map_err(|e| format!("{text:?}: {e} (host:port or off)"))
}

/// How long `capture` waits for OTLP to flush at shutdown: within FLUSH_GRACE, which bounds the
/// whole output side.
const CAPTURE_OTLP_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);

/// Decodes chunks, writes what the format asks for, and hands every request to the sinks.
struct Output {
    out: Box<dyn Write + Send>,
    format: OutputFormat,
    pipeline: DecodePipeline,
    metrics: Arc<DecodeMetrics>,
    sinks: Sinks,
    otlp_flush: std::time::Duration,
    requests: Vec<ApiRequest>,
    /// Requests written to `out` but not flushed yet.
    unflushed: bool,
    last_idle_check_ns: u64,
    last_gauge_update_ns: u64,
}

impl Output {
    fn open(
        output: &str,
        format: OutputFormat,
        decode: DecodeConfig,
        realtime_offset_ns: i64,
        otlp: &OtlpArgs,
        otlp_flush: std::time::Duration,
    ) -> Result<Self> {
        // A bad policy file stops the start, before anything is created or captured.
        let policy = CapturePolicy::from_flag(decode.capture_policy.as_deref())?;
        let sinks = Sinks::new(otlp)?;
        if let Some(release) = decode.kubernetes_version {
            sinks.metrics.set_release(release);
        }
        let mut out: Box<dyn Write + Send> = if output == "-" {
            Box::new(BufWriter::new(std::io::stdout()))
        } else {
            Box::new(BufWriter::new(
                File::create(output).with_context(|| format!("creating {output}"))?,
            ))
        };
        if format == OutputFormat::Table {
            writeln!(out, "{}", table_header())?;
        }
        Ok(Output {
            out,
            format,
            pipeline: DecodePipeline::with_policy(decode, realtime_offset_ns, policy),
            metrics: Arc::new(DecodeMetrics::default()),
            sinks,
            otlp_flush,
            requests: Vec::new(),
            unflushed: false,
            last_idle_check_ns: 0,
            last_gauge_update_ns: 0,
        })
    }

    fn chunk(&mut self, chunk: &TlsChunk) -> Result<()> {
        if self.format == OutputFormat::Chunks {
            return write_chunk(&mut self.out, chunk);
        }
        self.pipeline.push(chunk, &self.metrics, &mut self.requests);
        // Idle connections are looked for once a (capture-clock) minute.
        // In-flight and long-running gauges: recomputed once a (capture-clock) second.
        if chunk.timestamp_ns.saturating_sub(self.last_gauge_update_ns) > 1_000_000_000 {
            self.last_gauge_update_ns = chunk.timestamp_ns;
            self.pipeline.update_open_request_gauges(&self.metrics);
        }
        if chunk.timestamp_ns.saturating_sub(self.last_idle_check_ns) > 60_000_000_000 {
            self.last_idle_check_ns = chunk.timestamp_ns;
            self.pipeline
                .evict_idle(chunk.timestamp_ns, &self.metrics, &mut self.requests);
        }
        if !self.requests.is_empty() {
            self.write_requests()?;
            self.unflushed = true;
        }
        Ok(())
    }

    /// Makes the requests written since the last flush visible (the writer is buffered).
    fn flush(&mut self) -> Result<()> {
        if std::mem::take(&mut self.unflushed) {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Recomputes the open-request gauges now (no chunk came for a while).
    fn refresh_gauges(&mut self) {
        self.pipeline.update_open_request_gauges(&self.metrics);
    }

    fn write_requests(&mut self) -> Result<()> {
        for request in self.requests.drain(..) {
            self.sinks.send(&request);
            write_request(&mut self.out, self.format, &request)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.pipeline.finish(&self.metrics, &mut self.requests);
        self.pipeline.update_open_request_gauges(&self.metrics);
        self.write_requests()?;
        self.out.flush()?;
        if !self.sinks.finish(self.otlp_flush) {
            tracing::warn!(
                deadline = ?self.otlp_flush,
                "OTLP export did not finish before the deadline; unsent telemetry is lost"
            );
        }
        Ok(())
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr so stdout stays a clean JSON-lines stream.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    #[test]
    fn every_default_value_parses() {
        for args in [
            &["apiscope", "capture"][..],
            &["apiscope", "replay", "api.pcapng"],
            &["apiscope", "replay", "api.pcapng", "--format", "table"],
            &[
                "apiscope",
                "capture",
                "--otlp-endpoint",
                "http://127.0.0.1:4317",
                "--otlp-headers",
                "authorization=Bearer x,x-tenant=a",
                "--cluster-name",
                "prod",
            ],
            &[
                "apiscope",
                "replay",
                "api.pcapng",
                "--otlp-endpoint",
                "http://collector:4318",
                "--otlp-protocol",
                "http-protobuf",
                "--otlp-timeout",
                "2s",
            ],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
