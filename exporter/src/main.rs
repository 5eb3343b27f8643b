//! `apiscope`: see every API call inside a kube-apiserver.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use apiscope::app::config_file::{file_arguments, with_file_arguments};
use apiscope::app::doctor::{Verdict, doctor};
use apiscope::app::{CAPTURE_SINK_DEADLINE, Output, capture, relay, replay};
use apiscope::capture::config::CaptureConfig;
use apiscope::filter::Filter;
use apiscope::pipeline::DecodeConfig;
use apiscope::record::realtime_minus_monotonic_ns;
use apiscope::relay::RelayArgs;
use apiscope::sinks::live::args::LiveUiArgs;
use apiscope::sinks::otlp::OtlpArgs;
use apiscope::sinks::stdout::OutputFormat;
use apiscope::vocabulary::parse_duration;
use clap::{CommandFactory, Parser, Subcommand};

/// Decoding allocates per header field, chunk and body: glibc's malloc and free were ~20% of
/// apiscope's CPU at saturation (perf). With mimalloc, side by side in one `make bench` run:
/// replay 1.13x faster, capture CPU per LIST 9-27% lower; the price is heap, 7.8 -> 14.6 MiB
/// idle and 15.6 -> 28.4 MiB with 1000 watches open (BENCHMARKS.md, "allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

// One value, parsed once at start: the size of the capture variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Attach to kube-apiserver processes and print every API request they serve.
    // A flag given twice (once from --config's file, once on the command line): the last wins.
    #[command(args_override_self = true)]
    Capture {
        /// Read these flags from a YAML file (keys: the flag names with `_` for `-`, e.g.
        /// `otlp_endpoint: http://collector:4317`); flags on the command line override it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        capture: CaptureConfig,
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
    /// Serve the live view for the whole cluster from the collector's Kafka traces topic (what
    /// every exporter sent), to any number of browsers; run several behind one Service.
    Relay {
        #[command(flatten)]
        relay: RelayArgs,
        /// Serve Prometheus metrics on this address (`/metrics`); "off" disables it.
        #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_address)]
        metrics_address: MetricsAddress,
    },
}

fn main() -> Result<()> {
    let cli = parse_command_line(std::env::args_os().collect())?;
    init_logging(&cli.log, cli.log_json);
    match cli.command {
        Command::Capture {
            config: _,
            capture: config,
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
            let runtime = runtime()?;
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
        Command::Relay {
            relay: args,
            metrics_address,
        } => runtime()?.block_on(relay(args, metrics_address.0)),
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

/// The runtime of the long-running commands: two workers are plenty for their servers and timers
/// (decoding runs on its own thread).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A filter expression, checked before anything starts; the error shows where it is wrong.
fn parse_filter(text: &str) -> Result<Filter, String> {
    Filter::parse(text).map_err(|e| e.render(text))
}

/// The command line, with the flags of `capture --config FILE` inserted before the command
/// line's own (which therefore override them). A bad file stops the start with its key and line.
fn parse_command_line(args: Vec<OsString>) -> Result<Cli> {
    let cli = Cli::parse_from(&args);
    let Command::Capture {
        config: Some(path), ..
    } = &cli.command
    else {
        return Ok(cli);
    };
    let mut command = Cli::command();
    command.build();
    let capture = command
        .find_subcommand("capture")
        .expect("capture is a subcommand");
    let from_file = file_arguments(capture, path)?;
    Ok(Cli::parse_from(with_file_arguments(
        args, "capture", from_file,
    )))
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
    use std::ffi::OsString;

    use clap::Parser;

    use super::{Cli, Command, parse_command_line};

    fn capture_with_config(file: &str, flags: &[&str]) -> anyhow::Result<Cli> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("apiscope.yaml");
        std::fs::write(&path, file)?;
        let mut args: Vec<OsString> = vec!["apiscope".into(), "capture".into()];
        args.push(format!("--config={}", path.display()).into());
        args.extend(flags.iter().map(OsString::from));
        parse_command_line(args)
    }

    #[test]
    fn config_file_sets_the_flags_and_the_command_line_overrides_it() {
        let file = "\
process_name: my-apiserver
queue_capacity: 128
include_outgoing: true
otlp_endpoint: http://collector:4317
otlp_timeout: 3s
format: table
metrics_address: 0.0.0.0:9464
log: debug
";
        let cli = capture_with_config(file, &["--queue-capacity", "256", "--format=json"]).unwrap();
        assert_eq!(cli.log, "debug");
        let Command::Capture {
            capture,
            decode,
            otlp,
            format,
            metrics_address,
            ..
        } = cli.command
        else {
            panic!("not capture");
        };
        assert_eq!(capture.process_name, "my-apiserver");
        assert_eq!(capture.queue_capacity, 256, "the flag overrides the file");
        assert!(decode.include_outgoing);
        assert_eq!(otlp.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(otlp.otlp_timeout, std::time::Duration::from_secs(3));
        assert_eq!(format, apiscope::sinks::stdout::OutputFormat::Json);
        assert_eq!(metrics_address.0, Some("0.0.0.0:9464".parse().unwrap()));
    }

    #[test]
    fn config_file_with_an_unknown_key_or_a_bad_value_is_refused() {
        let error = capture_with_config("pid: 1\nprocess_nmae: x\n", &[])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("apiscope.yaml: line 2: process_nmae: unknown key"),
            "{error}"
        );
        let error = capture_with_config("ring_buffer_bytes: 65537\n", &[])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("line 1: ring_buffer_bytes: invalid value '65537'"),
            "{error}"
        );
        assert!(error.contains("not a power of two"), "{error}");
    }

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
