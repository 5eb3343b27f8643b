//! `apiscope`: see every API call inside a kube-apiserver.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use apiscope::app::doctor::{Verdict, doctor};
use apiscope::app::{CAPTURE_SINK_DEADLINE, Output, capture, replay};
use apiscope::capture::config::CaptureConfig;
use apiscope::filter::Filter;
use apiscope::pipeline::DecodeConfig;
use apiscope::record::realtime_minus_monotonic_ns;
use apiscope::sinks::live::args::LiveUiArgs;
use apiscope::sinks::otlp::OtlpArgs;
use apiscope::sinks::stdout::OutputFormat;
use apiscope::vocabulary::parse_duration;
use clap::{Parser, Subcommand};

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

// Parsed once at start: the size of the capture variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        /// Keep only the requests matching this filter expression in the per-request outputs
        /// (JSON/table, OTLP spans and logs); request metrics count every request. See
        /// docs/filter.md, e.g. `--filter 'code >= 500 or latency > 1s'`.
        #[arg(long, value_name = "EXPR", value_parser = parse_filter)]
        filter: Option<Filter>,
        /// Serve Prometheus metrics on this address (`/metrics`); "off" disables it.
        #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_address)]
        metrics_address: MetricsAddress,
        /// Stop after this long (e.g. 30s); without it, run until SIGINT/SIGTERM.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<std::time::Duration>,
        #[command(flatten)]
        otlp: OtlpArgs,
        #[command(flatten)]
        ui: LiveUiArgs,
    },
    /// Check what capture needs (kernel, privileges, eBPF, target processes, their binaries and
    /// probes) and print one line per check; exits 1 if capture cannot work.
    Doctor {
        #[command(flatten)]
        config: CaptureConfig,
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
        /// Keep only the requests matching this filter expression in the per-request outputs
        /// (JSON/table, OTLP spans and logs); request metrics count every request. See
        /// docs/filter.md, e.g. `--filter 'code >= 500 or latency > 1s'`.
        #[arg(long, value_name = "EXPR", value_parser = parse_filter)]
        filter: Option<Filter>,
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
            filter,
            metrics_address,
            duration,
            otlp,
            ui,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let live = ui.bus();
            let decode = DecodeConfig {
                report_frames: live.is_some(),
                ..decode
            };
            let mut output = Output::open(
                &output,
                format,
                decode,
                &otlp,
                CAPTURE_SINK_DEADLINE,
                filter,
                live.clone(),
            )?;
            output.set_realtime_offset(realtime_minus_monotonic_ns());
            runtime.block_on(capture(
                config,
                output,
                record,
                metrics_address.0,
                duration,
                live.map(|bus| (ui, bus)),
            ))
        }
        Command::Doctor { config } => {
            let report = doctor(&config);
            print!("{}", report.render());
            if report.verdict() == Verdict::Fail {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Replay {
            file,
            decode,
            output,
            format,
            filter,
            mut otlp,
        } => {
            otlp.block_when_full = true;
            let deadline = otlp.otlp_timeout;
            replay(
                &file,
                Output::open(&output, format, decode, &otlp, deadline, filter, None)?,
            )
        }
    }
}

/// A filter expression, checked before anything starts; the error shows where it is wrong.
fn parse_filter(text: &str) -> Result<Filter, String> {
    Filter::parse(text).map_err(|e| e.render(text))
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

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr so stdout stays a clean JSON-lines stream.
    // Colour only for a terminal: a log file or pipe must not fill with escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
            &["apiscope", "doctor"],
            &["apiscope", "capture", "--serve-ui"],
            &[
                "apiscope",
                "capture",
                "--serve-ui",
                "0.0.0.0:9000",
                "--ui-token-file",
                "t",
            ],
            &["apiscope", "doctor", "--pid", "1"],
            &["apiscope", "replay", "api.pcapng"],
            &["apiscope", "replay", "api.pcapng", "--format", "table"],
            &[
                "apiscope",
                "replay",
                "api.pcapng",
                "--filter",
                "code >= 500",
            ],
            &["apiscope", "capture", "--filter", "latency > 1s"],
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
