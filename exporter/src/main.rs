//! `apiscope`: see every API call inside a kube-apiserver.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use apiscope::capture::TlsChunk;
use apiscope::capture::config::{CaptureConfig, parse_duration};
use apiscope::capture::metrics::CaptureMetrics;
use apiscope::capture::run::{FLUSH_GRACE, run_capture};
use apiscope::record::{ChunkReader, PcapngWriter};
use apiscope::sinks::prometheus::serve_metrics;
use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
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
    /// Attach to kube-apiserver processes and print the TLS plaintext chunks they read and write.
    Capture {
        #[command(flatten)]
        config: CaptureConfig,
        /// Where chunk JSON lines go ("-" for stdout).
        #[arg(long, default_value = "-")]
        output: String,
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
    },
    /// Read a pcapng recording made by `capture --record` and print its chunks.
    Replay {
        file: PathBuf,
        /// Where chunk JSON lines go ("-" for stdout).
        #[arg(long, default_value = "-")]
        output: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    match cli.command {
        Command::Capture {
            config,
            output,
            record,
            metrics_address,
            duration,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(capture(config, output, record, metrics_address, duration))
        }
        Command::Replay { file, output } => {
            let mut out = open_output(&output)?;
            // Streams: a recording can be far larger than memory.
            for chunk in ChunkReader::open(&file)? {
                write_json_line(&mut out, &chunk?)?;
            }
            out.flush()?;
            Ok(())
        }
    }
}

async fn capture(
    config: CaptureConfig,
    output: String,
    record: Option<PathBuf>,
    metrics_address: MetricsAddress,
    duration: Option<std::time::Duration>,
) -> Result<()> {
    let metrics = Arc::new(CaptureMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let metrics_server = match metrics_address.0 {
        Some(address) => Some(serve_metrics(address, Arc::new(registry)).await?.1),
        None => None,
    };
    let (sender, mut receiver) = mpsc::channel::<TlsChunk>(config.queue_capacity.max(1));
    let mut out = open_output(&output)?;
    let mut recording = record.as_deref().map(PcapngWriter::create).transpose()?;
    // Output runs on its own thread: slow disks must not stall the ring-buffer reader.
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        while let Some(chunk) = receiver.blocking_recv() {
            write_json_line(&mut out, &chunk)?;
            if let Some(recording) = recording.as_mut() {
                recording.write_chunk(&chunk)?;
            }
        }
        out.flush()?;
        if let Some(recording) = recording.as_mut() {
            recording.flush()?;
        }
        Ok(())
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
    let result = run_capture(config, metrics.clone(), sender, stop).await;
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

fn open_output(output: &str) -> Result<Box<dyn Write + Send>> {
    Ok(if output == "-" {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        Box::new(BufWriter::new(
            File::create(output).with_context(|| format!("creating {output}"))?,
        ))
    })
}

fn write_json_line(out: &mut dyn Write, chunk: &TlsChunk) -> Result<()> {
    serde_json::to_writer(&mut *out, chunk)?;
    out.write_all(b"\n")?;
    Ok(())
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
