//! `make bench`: what apiscope costs a kube-apiserver, measured side by side in one run.
//!
//! One local control plane (the test harness's newest apiserver), a static bearer token, h2load
//! on loopback. Every phase alternates its rounds between no apiscope and each apiscope build
//! given (`--apiscope NAME=PATH`), so drift on a shared machine lands on all of them alike; the
//! tables show medians over rounds and ratios to the rounds without apiscope. Nothing here is
//! asserted: the output is a table (`target/bench/table.md`), the rounds as JSON and CSV, and an
//! SVG plot of the latency overhead against the request rate.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apiscope_e2e::bench::bpf_stats::{self, BpfStatsEnabled};
use apiscope_e2e::bench::h2load::{H2loadResult, H2loadRun};
use apiscope_e2e::bench::metrics_text::{
    self, HEADER_BLOCKS_FAILED, PROBE_HITS, RINGBUF_FULL_DROPS,
};
use apiscope_e2e::bench::report::{
    self, BenchReport, DecodeRow, FreshnessRow, LoadRound, LossRow, LossTry, Machine, MemoryRow,
    RingSizeTry, Settings, WITHOUT,
};
use apiscope_e2e::bench::stats::{median, quantile};
use apiscope_e2e::bench::watches::OpenWatches;
use apiscope_e2e::bench::{probe_cost, procfs, relay_memory};
use apiscope_e2e::cluster::process::Spawner;
use apiscope_e2e::cluster::{ClusterOptions, TestCluster};
use apiscope_e2e::kafka::{self, KafkaBroker};
use apiscope_e2e::otelcol::Collector;
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

#[derive(Parser)]
#[command(about = "Measures apiscope's cost to a kube-apiserver, side by side (make bench)")]
struct Args {
    /// An apiscope build to compare, as NAME=PATH; repeat it to compare several in one run.
    /// Default: current=target/release/apiscope.
    #[arg(long = "apiscope", value_name = "NAME=PATH", value_parser = parse_build)]
    builds: Vec<(String, PathBuf)>,
    /// Where table.md, results.json, rounds.csv and overhead-vs-rate.svg go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// A few seconds per round and fewer rounds (a few minutes in all); also `BENCH_QUICK=1`.
    #[arg(long)]
    quick: bool,
    /// Alternating rounds per phase (default: 3, quick: 2).
    #[arg(long)]
    rounds: Option<usize>,
    /// Phases to leave out: probes, load, rates, memory, loss, ring, decode, freshness, relay.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
}

fn parse_build(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=PATH, got {text:?}"))?;
    if name.is_empty() || name == WITHOUT {
        return Err(format!("a build needs a name other than {WITHOUT:?}"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// Durations and counts of one mode.
struct Plan {
    rounds: usize,
    warm_up: Duration,
    saturation: Duration,
    rate: Duration,
    rate_fractions: &'static [f64],
    loss_window: Duration,
    ring_window: Duration,
    watches: usize,
    recording_per_workload: Duration,
    freshness: Duration,
    relay_records: usize,
}

impl Plan {
    fn new(quick: bool, rounds: Option<usize>) -> Plan {
        if quick {
            Plan {
                rounds: rounds.unwrap_or(2),
                warm_up: Duration::from_secs(1),
                saturation: Duration::from_secs(4),
                rate: Duration::from_secs(3),
                rate_fractions: &[0.5],
                loss_window: Duration::from_secs(10),
                ring_window: Duration::from_secs(5),
                watches: 1000,
                recording_per_workload: Duration::from_secs(3),
                freshness: Duration::from_secs(12),
                relay_records: 50_000,
            }
        } else {
            Plan {
                rounds: rounds.unwrap_or(3),
                warm_up: Duration::from_secs(1),
                saturation: Duration::from_secs(10),
                rate: Duration::from_secs(5),
                rate_fractions: &[0.25, 0.5, 0.75],
                loss_window: Duration::from_secs(60),
                ring_window: Duration::from_secs(15),
                watches: 1000,
                recording_per_workload: Duration::from_secs(5),
                freshness: Duration::from_secs(30),
                relay_records: 200_000,
            }
        }
    }
}

const CLIENTS: u32 = 8;
/// Ring-buffer sizes the ring phase attaches with, smallest first, up to twice the default
/// (`--ring-buffer-bytes`, which the loss phase checks over its longer window).
const RING_SIZES_MIB: [u64; 6] = [1, 2, 4, 8, 16, 32];
/// The steady rate of the freshness phase: a busy control plane's, and below what fills an
/// export batch (512 spans) within the default export interval, so the interval shows.
const FRESHNESS_RATE: f64 = 100.0;
/// Longer than the `--otlp-export-interval` of any build compared (the default was 5 s before
/// 1 s): spans leave on the exporter's own schedule, not in the flush at SIGTERM.
const FRESHNESS_LINGER: Duration = Duration::from_secs(6);
/// The relay phase's steady part: longer than the relay's 30 s write timeout.
const RELAY_STEADY_RATE: f64 = 2000.0;
const RELAY_STEADY: Duration = Duration::from_secs(40);
/// The production config's topic names.
const TRACES_TOPIC: &str = "apiscope-traces";
const LOGS_TOPIC: &str = "apiscope-logs";
const METRICS_TOPIC: &str = "apiscope-metrics";
/// Replays per build in the decode phase (at least).
const DECODE_ROUNDS: usize = 5;
/// Calls per probe-cost run: ~1 s with the costliest probe measured (~60 µs a hit).
const PROBE_COST_CALLS: u64 = 20_000;
const STREAMS_PER_CLIENT: u32 = 16;
const NAMESPACE: &str = "bench";
/// POSTs go to a namespace of their own, so the LIST keeps its ~20 objects.
const POST_NAMESPACE: &str = "bench-post";
/// Large enough LISTs (over the apiserver's 128 KiB compression threshold) to be gzipped.
const LARGE_NAMESPACE: &str = "bench-large";
const LIST_OBJECTS: usize = 20;
const LARGE_LIST_OBJECTS: usize = 200;
const BENCH_USER: &str = "apiscope-bench";

#[derive(Clone, Copy)]
enum Workload {
    Get,
    List,
    Post,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Get, Workload::List, Workload::Post];

    fn name(self) -> &'static str {
        match self {
            Workload::Get => "GET",
            Workload::List => "LIST",
            Workload::Post => "POST",
        }
    }

    fn path(self) -> String {
        match self {
            Workload::Get => format!("/api/v1/namespaces/{NAMESPACE}/configmaps/bench-0"),
            Workload::List => format!("/api/v1/namespaces/{NAMESPACE}/configmaps"),
            Workload::Post => format!("/api/v1/namespaces/{POST_NAMESPACE}/configmaps"),
        }
    }
}

/// The cluster and everything the phases share.
struct Bench {
    cluster: TestCluster,
    token: String,
    scratch: PathBuf,
    post_body: PathBuf,
    spawner: Spawner,
    plan: Plan,
    builds: Vec<(String, PathBuf)>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let quick = args.quick || std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let plan = Plan::new(quick, args.rounds);
    let builds = if args.builds.is_empty() {
        vec![(
            "current".to_string(),
            apiscope_e2e::apiscope::apiscope_binary(),
        )]
    } else {
        args.builds
    };
    check_prerequisites(&builds)?;
    let out_dir = workspace_relative(&args.out_dir);
    std::fs::create_dir_all(&out_dir)?;
    let out_dir = out_dir.canonicalize()?;
    let _lock = lock_out_dir(&out_dir)?;
    let scratch = out_dir.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;

    let token = random_token()?;
    let token_file = scratch.join("tokens.csv");
    std::fs::write(
        &token_file,
        format!("{token},{BENCH_USER},{BENCH_USER},\"system:masters\"\n"),
    )?;
    eprintln!("bench: starting the test cluster");
    let cluster = start_cluster(&token_file)?;
    let mut report = BenchReport {
        machine: machine(cluster.apiserver_binary()),
        settings: Settings {
            quick,
            rounds: plan.rounds,
            saturation_seconds: plan.saturation.as_secs_f64(),
            rate_seconds: plan.rate.as_secs_f64(),
            loss_window_seconds: plan.loss_window.as_secs_f64(),
            ring_window_seconds: plan.ring_window.as_secs_f64(),
            clients: CLIENTS,
            streams_per_client: STREAMS_PER_CLIENT,
            watches: plan.watches,
        },
        builds: std::iter::once(WITHOUT.to_string())
            .chain(builds.iter().map(|(name, _)| name.clone()))
            .collect(),
        ..BenchReport::default()
    };
    let post_body = scratch.join("post-configmap.json");
    std::fs::write(
        &post_body,
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"bench-"},"data":{"key":"value"}}"#,
    )?;
    let bench = Bench {
        cluster,
        token,
        scratch,
        post_body,
        spawner: Spawner::new()?,
        plan,
        builds,
    };
    bench.create_objects()?;
    let _stats = BpfStatsEnabled::enable()?;
    let started = Instant::now();
    let skip = |phase: &str| args.skip.iter().any(|s| s == phase);
    let mut failures = Vec::new();
    let write = |report: &BenchReport| write_outputs(report, &out_dir);
    let note_failure = |phase: &str, result: Result<()>, failures: &mut Vec<String>| {
        if let Err(error) = result {
            eprintln!("bench: {phase} failed: {error:#}");
            failures.push(format!("{phase}: {error:#}"));
        }
    };

    if !skip("probes") {
        let rounds = bench.plan.rounds.max(3);
        match probe_cost::measure(&bench.scratch, rounds, PROBE_COST_CALLS) {
            Ok(rows) => report.probe_cost = rows,
            Err(error) => note_failure("probe cost", Err(error), &mut failures),
        }
        write(&report)?;
    }
    if !skip("load") {
        note_failure(
            "saturation rounds",
            bench.saturation_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("rates") && !skip("load") {
        note_failure(
            "fixed-rate rounds",
            bench.rate_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("memory") {
        note_failure(
            "memory with open watches",
            bench.memory_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("loss") {
        note_failure(
            "ring-buffer loss",
            bench.loss_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("ring") {
        note_failure(
            "ring-buffer sizes",
            bench.ring_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("decode") {
        note_failure(
            "decode throughput",
            bench.decode_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("freshness") {
        note_failure(
            "freshness",
            bench.freshness_phase(&mut report),
            &mut failures,
        );
        write(&report)?;
    }
    if !skip("relay") {
        note_failure("relay", bench.relay_phase(&mut report), &mut failures);
    }
    for failure in &failures {
        report.not_measured.push(format!("failed: {failure}"));
    }
    write(&report)?;
    println!("{}", report::render_tables(&report));
    eprintln!(
        "bench: finished in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        out_dir.display()
    );
    bench.cluster.stop()?;
    if !failures.is_empty() {
        bail!(
            "{} phase(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}

fn check_prerequisites(builds: &[(String, PathBuf)]) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench attaches uprobes and reads BPF statistics: run it as root");
    }
    for (tool, package) in [
        ("h2load", "nghttp2-client"),
        ("bpftool", "bpftool"),
        ("curl", "curl"),
        ("tshark", "tshark"),
    ] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            bail!("{tool} not found: install the Debian package {package} (make setup)");
        }
    }
    for (name, path) in builds {
        if !path.is_file() {
            bail!(
                "apiscope build {name}: {} does not exist (make build)",
                path.display()
            );
        }
    }
    Ok(())
}

/// One bench at a time per output directory: a second would share its scratch files and its
/// machine, and spoil both runs.
fn lock_out_dir(out_dir: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let lock = std::fs::File::create(out_dir.join(".lock"))?;
    // SAFETY: flock on a descriptor we own; the lock ends when the file is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("another bench is running with {}", out_dir.display());
    }
    Ok(lock)
}

fn workspace_relative(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn start_cluster(token_file: &Path) -> Result<TestCluster> {
    TestCluster::start(ClusterOptions {
        extra_apiserver_args: vec![
            format!("--token-auth-file={}", token_file.display()),
            // The harness's blocking RequestResponse audit log is the tests' oracle; here it
            // would be most of the apiserver's cost, which no production setup pays per request.
            "--audit-policy-file=".to_string(),
            "--audit-log-path=".to_string(),
        ],
        ..ClusterOptions::default()
    })
}

fn machine(apiserver: &Path) -> Machine {
    let first_line = |mut command: Command| -> String {
        command
            .output()
            .map(|o| {
                let text = String::from_utf8_lossy(&o.stdout).to_string()
                    + &String::from_utf8_lossy(&o.stderr);
                text.lines().next().unwrap_or_default().trim().to_string()
            })
            .unwrap_or_default()
    };
    let mut apiserver_version = Command::new(apiserver);
    apiserver_version.arg("--version");
    let mut h2load_version = Command::new("h2load");
    h2load_version.arg("--version");
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mut uname = Command::new("uname");
    uname.arg("-r");
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: first_line(uname),
        cpu_model,
        apiserver: first_line(apiserver_version),
        h2load: first_line(h2load_version),
    }
}

fn write_outputs(report: &BenchReport, out_dir: &Path) -> Result<()> {
    std::fs::write(
        out_dir.join("results.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    std::fs::write(out_dir.join("rounds.csv"), report::rounds_csv(report))?;
    std::fs::write(out_dir.join("table.md"), report::render_tables(report))?;
    std::fs::write(
        out_dir.join("overhead-vs-rate.svg"),
        report::overhead_plot(report),
    )?;
    Ok(())
}

/// A running `apiscope capture` attached to the apiserver.
struct RunningApiscope {
    child: Child,
    log_lines: mpsc::Receiver<String>,
    metrics_address: String,
}

impl RunningApiscope {
    fn start(
        spawner: &Spawner,
        binary: &Path,
        pid: u32,
        extra_args: &[&OsStr],
    ) -> Result<RunningApiscope> {
        let mut command = Command::new(binary);
        command
            .args(["--log", "info", "--log-json", "capture"])
            .args(["--pid", &pid.to_string()])
            .args(["--output", "/dev/null", "--metrics-address", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.args(extra_args);
        let mut child = spawner
            .spawn(command)
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("apiscope stderr")?;
        let (sender, log_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut apiscope = RunningApiscope {
            child,
            log_lines,
            metrics_address: String::new(),
        };
        let mut attached = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        // The last lines it logged, for the error if it never attaches.
        let mut last_lines = std::collections::VecDeque::new();
        while !attached || apiscope.metrics_address.is_empty() {
            let failed = |why: &str, last_lines: &std::collections::VecDeque<String>| {
                let lines: Vec<&str> = last_lines.iter().map(String::as_str).collect();
                anyhow::anyhow!(
                    "apiscope {why} within 60 s; it logged:\n{}",
                    lines.join("\n")
                )
            };
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| failed("did not attach", &last_lines))?;
            let line = apiscope
                .log_lines
                .recv_timeout(left)
                .map_err(|_| failed("exited or did not attach", &last_lines))?;
            if last_lines.len() == 10 {
                last_lines.pop_front();
            }
            last_lines.push_back(line.clone());
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let message = json["fields"]["message"].as_str().unwrap_or_default();
            if message.contains("serving Prometheus metrics") {
                apiscope.metrics_address = json["fields"]["address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
            if message.starts_with("attached") && line.contains(&format!("\"pid\":{pid}")) {
                attached = true;
            }
        }
        Ok(apiscope)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> Result<Vec<metrics_text::Sample>> {
        Ok(metrics_text::parse(&metrics_text::scrape(
            &self.metrics_address,
        )?))
    }

    /// SIGTERM and a bounded wait (then SIGKILL).
    fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                self.child.wait()?;
                bail!("apiscope did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for RunningApiscope {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One run with a build attached afresh: what it served and what it lost
/// (`None`: the build does not export the counter).
struct AttachedRun {
    achieved_rps: f64,
    seconds: f64,
    ringbuf_full_drops: Option<f64>,
    header_blocks_failed: Option<f64>,
    memory: procfs::MemoryUse,
}

/// Counters read before and after a measured run.
struct Snapshot {
    at: Instant,
    apiserver_cpu: f64,
    apiscope_cpu: Option<f64>,
    programs: std::collections::BTreeMap<u64, bpf_stats::ProgramStats>,
    metrics: Option<Vec<metrics_text::Sample>>,
}

impl Snapshot {
    fn take(apiserver_pid: u32, apiscope: Option<&RunningApiscope>) -> Result<Snapshot> {
        let (apiscope_cpu, programs, metrics) = match apiscope {
            Some(apiscope) => (
                Some(procfs::cpu_seconds(apiscope.pid())?),
                bpf_stats::snapshot()?,
                Some(apiscope.metrics()?),
            ),
            None => (None, Default::default(), None),
        };
        Ok(Snapshot {
            at: Instant::now(),
            apiserver_cpu: procfs::cpu_seconds(apiserver_pid)?,
            apiscope_cpu,
            programs,
            metrics,
        })
    }
}

impl Bench {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cluster.apiserver_url())
    }

    fn h2load(&self, workload: Workload, duration: Duration, total_rate: Option<f64>) -> H2loadRun {
        H2loadRun {
            url: self.url(&workload.path()),
            bearer_token: self.token.clone(),
            clients: CLIENTS,
            streams_per_client: STREAMS_PER_CLIENT,
            duration,
            rate_per_client: total_rate.map(|rate| rate / f64::from(CLIENTS)),
            post_body: matches!(workload, Workload::Post).then(|| self.post_body.clone()),
            headers: Vec::new(),
        }
    }

    fn create_objects(&self) -> Result<()> {
        let mut items = Vec::new();
        for namespace in [NAMESPACE, POST_NAMESPACE, LARGE_NAMESPACE] {
            items.push(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}
            }));
        }
        // ~700 bytes of data each: a LIST of 20 is ~15 KB of JSON.
        let filler = "x".repeat(640);
        for (namespace, count) in [
            (NAMESPACE, LIST_OBJECTS),
            (LARGE_NAMESPACE, LARGE_LIST_OBJECTS),
        ] {
            for i in 0..count {
                items.push(serde_json::json!({
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("bench-{i}"), "namespace": namespace,
                                 "labels": {"app": "apiscope-bench"}},
                    "data": {"index": i.to_string(), "filler": filler},
                }));
            }
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let file = self.scratch.join("objects.json");
        std::fs::write(&file, serde_json::to_string(&list)?)?;
        self.cluster
            .kubectl_ok(&["apply", "-f", &file.display().to_string()])?;
        Ok(())
    }

    /// Deletes every ConfigMap the POSTs created (DELETE collection, outside any measured
    /// window): left in place, tens of thousands of them slow the apiserver round after round,
    /// a drift that alternating cannot cancel since it only grows. A large collection can outlast
    /// the apiserver's request timeout (HTTP 500, the deletion stops part way), so it is repeated
    /// until one call deletes the rest.
    fn delete_posted(&self) -> Result<()> {
        const ATTEMPTS: usize = 8;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let output = Command::new("curl")
                .args([
                    "-sSk",
                    "--max-time",
                    "90",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .args(["-X", "DELETE", "-H"])
                .arg(format!("Authorization: Bearer {}", self.token))
                .arg(self.url(&Workload::Post.path()))
                .output()
                .context("running curl")?;
            let status = String::from_utf8_lossy(&output.stdout).to_string();
            if status == "200" {
                return Ok(());
            }
            last = format!(
                "HTTP {status} {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        bail!("deleting the POSTed ConfigMaps: {ATTEMPTS} attempts, the last {last}")
    }

    /// Warm-up run (discarded), then one measured run with counters read around it.
    fn measure(
        &self,
        workload: Workload,
        load: &str,
        build: &str,
        round: usize,
        run: H2loadRun,
        apiscope: Option<&RunningApiscope>,
    ) -> Result<LoadRound> {
        let apiserver = self.cluster.apiserver_pid();
        let mut warm_up = run.clone();
        warm_up.duration = self.plan.warm_up;
        warm_up.run(&self.scratch)?;
        let program_ids = match apiscope {
            Some(apiscope) => bpf_stats::program_ids_of(apiscope.pid())?,
            None => Default::default(),
        };
        if matches!(workload, Workload::Post) {
            self.delete_posted()?;
        }
        let before = Snapshot::take(apiserver, apiscope)?;
        let H2loadResult { summary, latency } = run.run(&self.scratch)?;
        let after = Snapshot::take(apiserver, apiscope)?;
        if matches!(workload, Workload::Post) {
            self.delete_posted()?;
        }
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        let requests = summary.succeeded.max(1) as f64;
        let per_request = |value: f64| value / requests;
        let kernel = bpf_stats::delta_by_name(&before.programs, &after.programs, &program_ids);
        let counter_delta = |name: &str| -> Option<f64> {
            let (Some(b), Some(a)) = (&before.metrics, &after.metrics) else {
                return None;
            };
            Some(metrics_text::total(a, name)? - metrics_text::total(b, name).unwrap_or(0.0))
        };
        let mut apiscope_hits = std::collections::BTreeMap::new();
        if let (Some(b), Some(a)) = (&before.metrics, &after.metrics) {
            for sample in a.iter().filter(|s| s.name == PROBE_HITS) {
                let probe = sample.label("probe").unwrap_or("?").to_string();
                let start = b
                    .iter()
                    .find(|s| s.name == PROBE_HITS && s.label("probe") == sample.label("probe"))
                    .map_or(0.0, |s| s.value);
                *apiscope_hits.entry(probe).or_insert(0.0) += per_request(sample.value - start);
            }
        }
        let round = LoadRound {
            workload: workload.name().to_string(),
            load: load.to_string(),
            build: build.to_string(),
            round,
            offered_rps: run
                .rate_per_client
                .map(|rate| rate * f64::from(run.clients)),
            seconds,
            succeeded: summary.succeeded,
            failed: summary.failed,
            achieved_rps: summary.succeeded as f64 / run.duration.as_secs_f64(),
            p50_us: latency.p50_us,
            p99_us: latency.p99_us,
            apiserver_cpu_us_per_request: per_request(after.apiserver_cpu - before.apiserver_cpu)
                * 1e6,
            apiscope_cores_per_1000_rps: match (before.apiscope_cpu, after.apiscope_cpu) {
                (Some(b), Some(a)) => Some(per_request(a - b) * 1000.0),
                _ => None,
            },
            kernel_runs_per_request: kernel
                .iter()
                .map(|(name, (runs, _))| (name.clone(), per_request(*runs as f64)))
                .collect(),
            kernel_program_ns_per_request: kernel
                .iter()
                .map(|(name, (_, ns))| (name.clone(), per_request(*ns as f64)))
                .collect(),
            apiscope_hits_per_request: apiscope_hits,
            ringbuf_full_drops: counter_delta(RINGBUF_FULL_DROPS),
        };
        eprintln!(
            "bench: {:<5} {:<10} {:<10} round {}: {:>7.0} req/s, p99 {} ms, {} failed",
            round.workload,
            round.load,
            round.build,
            round.round,
            round.achieved_rps,
            round
                .p99_us
                .map_or("n/a".to_string(), |us| format!("{:.2}", us / 1e3)),
            round.failed
        );
        Ok(round)
    }

    /// Runs `each` for every build in turn (without apiscope first), `rounds` times, with a
    /// freshly attached apiscope per build and round. A failed block is reported and the rest
    /// goes on: one bad round should not cost the whole run.
    fn alternate(
        &self,
        report: &mut BenchReport,
        mut each: impl FnMut(&Bench, &str, usize, Option<&RunningApiscope>) -> Result<Vec<LoadRound>>,
    ) -> Result<()> {
        let variants: Vec<(&str, Option<&PathBuf>)> = std::iter::once((WITHOUT, None))
            .chain(
                self.builds
                    .iter()
                    .map(|(name, path)| (name.as_str(), Some(path))),
            )
            .collect();
        for round in 0..self.plan.rounds {
            for &(name, binary) in &variants {
                let mut block = || -> Result<Vec<LoadRound>> {
                    let Some(binary) = binary else {
                        return each(self, name, round, None);
                    };
                    let apiscope = RunningApiscope::start(
                        &self.spawner,
                        binary,
                        self.cluster.apiserver_pid(),
                        &[],
                    )?;
                    let rounds = each(self, name, round, Some(&apiscope))?;
                    apiscope.stop()?;
                    Ok(rounds)
                };
                match block() {
                    Ok(rounds) => report.load_rounds.extend(rounds),
                    Err(error) => {
                        let message = format!("{name}, round {round}: {error:#}");
                        eprintln!("bench: failed: {message}");
                        report.not_measured.push(format!("failed: {message}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn saturation_phase(&self, report: &mut BenchReport) -> Result<()> {
        self.alternate(report, |bench, build, round, apiscope| {
            Workload::ALL
                .iter()
                .map(|&workload| {
                    let run = bench.h2load(workload, bench.plan.saturation, None);
                    bench.measure(workload, "saturation", build, round, run, apiscope)
                })
                .collect()
        })
    }

    /// The median saturation throughput without apiscope, per workload.
    fn saturation_without(report: &BenchReport, workload: Workload) -> Option<f64> {
        let rates: Vec<f64> = report
            .load_rounds
            .iter()
            .filter(|r| {
                r.build == WITHOUT && r.load == "saturation" && r.workload == workload.name()
            })
            .map(|r| r.achieved_rps)
            .collect();
        median(&rates)
    }

    fn rate_phase(&self, report: &mut BenchReport) -> Result<()> {
        let saturation: Vec<(Workload, f64)> = Workload::ALL
            .iter()
            .filter_map(|&w| Some((w, Self::saturation_without(report, w)?)))
            .collect();
        self.alternate(report, |bench, build, round, apiscope| {
            let mut rounds = Vec::new();
            for &(workload, saturated) in &saturation {
                for fraction in bench.plan.rate_fractions {
                    let run = bench.h2load(workload, bench.plan.rate, Some(saturated * fraction));
                    let load = format!("{:.0}%", fraction * 100.0);
                    rounds.push(bench.measure(workload, &load, build, round, run, apiscope)?);
                }
            }
            Ok(rounds)
        })
    }

    fn list_rate(&self, report: &BenchReport, fraction: f64) -> f64 {
        // Without a saturation phase, a rate the 2-core machine serves easily.
        Self::saturation_without(report, Workload::List).unwrap_or(1000.0) * fraction
    }

    /// Memory and CPU of each build under a steady LIST load, then with open watches added.
    fn memory_phase(&self, report: &mut BenchReport) -> Result<()> {
        let rate = self.list_rate(report, 0.25);
        let watch_lifetime = Duration::from_secs(120);
        let mut failures = Vec::new();
        for (name, binary) in &self.builds {
            if let Err(error) = self.memory_of_build(report, name, binary, rate, watch_lifetime) {
                eprintln!("bench: memory of {name} failed: {error:#}");
                failures.push(format!("{name}: {error:#}"));
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(())
    }

    fn memory_of_build(
        &self,
        report: &mut BenchReport,
        name: &str,
        binary: &Path,
        rate: f64,
        watch_lifetime: Duration,
    ) -> Result<()> {
        let apiscope =
            RunningApiscope::start(&self.spawner, binary, self.cluster.apiserver_pid(), &[])?;
        let steady = self.measure(
            Workload::List,
            "25%",
            name,
            0,
            self.h2load(Workload::List, self.plan.rate, Some(rate)),
            Some(&apiscope),
        )?;
        report.memory.push(MemoryRow {
            build: name.to_string(),
            condition: format!("LIST at {rate:.0} req/s"),
            memory: procfs::memory_use(apiscope.pid())?,
            apiscope_cores_per_1000_rps: steady.apiscope_cores_per_1000_rps,
            achieved_rps: steady.achieved_rps,
        });
        let mut watches = OpenWatches::open(
            &self.url(&Workload::List.path()),
            &self.token,
            self.plan.watches,
            watch_lifetime,
            &self.scratch,
        )?;
        let open = self.wait_for_watches(self.plan.watches, Duration::from_secs(30))?;
        let loaded = self.measure(
            Workload::List,
            "25%",
            name,
            0,
            self.h2load(Workload::List, self.plan.rate, Some(rate)),
            Some(&apiscope),
        )?;
        watches.check_open()?;
        report.memory.push(MemoryRow {
            build: name.to_string(),
            condition: format!(
                "LIST at {rate:.0} req/s + {} watches (apiserver: {open:.0} configmap watches open)",
                self.plan.watches
            ),
            memory: procfs::memory_use(apiscope.pid())?,
            apiscope_cores_per_1000_rps: loaded.apiscope_cores_per_1000_rps,
            achieved_rps: loaded.achieved_rps,
        });
        drop(watches);
        apiscope.stop()
    }

    /// Waits (bounded) until the apiserver counts `count` open configmap watches, from its own
    /// `apiserver_longrunning_requests` gauge; returns the count it reached.
    fn wait_for_watches(&self, count: usize, timeout: Duration) -> Result<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let output = Command::new("curl")
                .args(["-sk", "--max-time", "10", "-H"])
                .arg(format!("Authorization: Bearer {}", self.token))
                .arg(self.url("/metrics"))
                .output()?;
            let samples = metrics_text::parse(&String::from_utf8_lossy(&output.stdout));
            let open: f64 = samples
                .iter()
                .filter(|s| {
                    s.name == "apiserver_longrunning_requests"
                        && s.label("verb") == Some("WATCH")
                        && s.label("resource") == Some("configmaps")
                })
                .map(|s| s.value)
                .sum();
            if open >= count as f64 || Instant::now() > deadline {
                return Ok(open);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Attaches `binary` (with `extra_args`) afresh, runs `run`, and reads what was lost
    /// meanwhile: the loss and ring phases' common step.
    fn attached_run(
        &self,
        binary: &Path,
        extra_args: &[&OsStr],
        run: H2loadRun,
    ) -> Result<AttachedRun> {
        let apiscope = RunningApiscope::start(
            &self.spawner,
            binary,
            self.cluster.apiserver_pid(),
            extra_args,
        )?;
        let before = apiscope.metrics()?;
        let result = run.run(&self.scratch)?;
        let after = apiscope.metrics()?;
        let memory = procfs::memory_use(apiscope.pid())?;
        apiscope.stop()?;
        let lost = |name: &str| {
            Some(metrics_text::total(&after, name)? - metrics_text::total(&before, name)?)
        };
        let seconds = run.duration.as_secs_f64();
        Ok(AttachedRun {
            achieved_rps: result.summary.succeeded as f64 / seconds,
            seconds,
            ringbuf_full_drops: lost(RINGBUF_FULL_DROPS),
            header_blocks_failed: lost(HEADER_BLOCKS_FAILED),
            memory,
        })
    }

    /// The highest LIST rate with no ring-buffer record lost over the loss window, default buffer
    /// size: saturation first, then lower fixed rates until one loses nothing.
    fn loss_phase(&self, report: &mut BenchReport) -> Result<()> {
        let saturation = self.list_rate(report, 1.0);
        for (name, binary) in &self.builds {
            let mut row = LossRow {
                build: name.clone(),
                ..LossRow::default()
            };
            for offered in [None, Some(0.75), Some(0.5), Some(0.25)] {
                let run = self.h2load(
                    Workload::List,
                    self.plan.loss_window,
                    offered.map(|f| saturation * f),
                );
                let measured = self.attached_run(binary, &[], run)?;
                let (achieved, drops) = (measured.achieved_rps, measured.ringbuf_full_drops);
                eprintln!(
                    "bench: loss {name}: {achieved:.0} req/s over {:.0} s, ring buffer full {drops:?}, header blocks failed {:?}",
                    measured.seconds, measured.header_blocks_failed
                );
                row.tries.push(LossTry {
                    offered_rps: offered.map(|f| saturation * f),
                    achieved_rps: achieved,
                    seconds: measured.seconds,
                    ringbuf_full_drops: drops,
                });
                if drops == Some(0.0) {
                    row.highest_lossless_rps = Some(achieved);
                    break;
                }
                if drops.is_none() {
                    break; // this build does not export the counter
                }
            }
            report.loss.push(row);
        }
        Ok(())
    }

    /// Which ring-buffer size loses nothing at saturation: the last build given, attached with
    /// each size of `RING_SIZES_MIB` in turn, under LISTs of 20 objects (many small records)
    /// and of 200 (~150 KB responses: long bursts per request), both at saturation.
    fn ring_phase(&self, report: &mut BenchReport) -> Result<()> {
        let (name, binary) = self.builds.last().context("no apiscope build")?;
        let large_list = format!("/api/v1/namespaces/{LARGE_NAMESPACE}/configmaps");
        for mib in RING_SIZES_MIB {
            let bytes = (mib << 20).to_string();
            for (workload, path) in [
                (format!("LIST {LIST_OBJECTS}"), None),
                (format!("LIST {LARGE_LIST_OBJECTS}"), Some(&large_list)),
            ] {
                let mut run = self.h2load(Workload::List, self.plan.ring_window, None);
                if let Some(path) = path {
                    run.url = self.url(path);
                }
                let measured = self.attached_run(
                    binary,
                    &["--ring-buffer-bytes".as_ref(), bytes.as_ref()],
                    run,
                )?;
                eprintln!(
                    "bench: ring {name} {mib} MiB, {workload}: {:.0} req/s, ring buffer full {:?}",
                    measured.achieved_rps, measured.ringbuf_full_drops
                );
                report.ring_sizes.push(RingSizeTry {
                    build: name.clone(),
                    ring_buffer_bytes: mib << 20,
                    workload,
                    achieved_rps: measured.achieved_rps,
                    seconds: measured.seconds,
                    ringbuf_full_drops: measured.ringbuf_full_drops,
                    memory: measured.memory,
                });
            }
        }
        Ok(())
    }

    /// Records real traffic with the last build (JSON, protobuf and gzipped LISTs, GETs, POSTs),
    /// then times `apiscope replay` of every build and `tshark -r` dissecting HTTP/2 on the same
    /// file.
    fn decode_phase(&self, report: &mut BenchReport) -> Result<()> {
        let (_, binary) = self.builds.last().context("no apiscope build")?;
        let recording = self.scratch.join("recording.pcapng");
        let _ = std::fs::remove_file(&recording);
        let apiscope = RunningApiscope::start(
            &self.spawner,
            binary,
            self.cluster.apiserver_pid(),
            &["--record".as_ref(), recording.as_os_str()],
        )?;
        let duration = self.plan.recording_per_workload;
        let large_list = format!("/api/v1/namespaces/{LARGE_NAMESPACE}/configmaps");
        let variants: [(Workload, Option<&str>, &[&str]); 5] = [
            (Workload::List, None, &[]),
            (
                Workload::List,
                None,
                &["accept: application/vnd.kubernetes.protobuf"],
            ),
            (
                Workload::List,
                Some(&large_list),
                &["accept-encoding: gzip"],
            ),
            (Workload::Get, None, &[]),
            (Workload::Post, None, &[]),
        ];
        for (workload, path, headers) in variants {
            let mut run = self.h2load(workload, duration, None);
            if let Some(path) = path {
                run.url = self.url(path);
            }
            run.headers = headers.iter().map(|h| h.to_string()).collect();
            run.run(&self.scratch)?;
        }
        apiscope.stop()?;
        self.delete_posted()?;
        let file_bytes = std::fs::metadata(&recording)?.len();
        let port = self.cluster.apiserver_port().to_string();
        let mut tshark = Command::new("tshark");
        tshark
            .arg("-r")
            .arg(&recording)
            .args([
                "-n",
                "-d",
                &format!("tcp.port=={port},http2"),
                "-Y",
                "http2",
            ])
            .args(["-T", "fields", "-e", "http2.streamid"]);
        // Every build replays the same file, alternating, so drift lands on all alike.
        let rounds = self.plan.rounds.max(DECODE_ROUNDS);
        let mut replay_seconds = vec![Vec::new(); self.builds.len()];
        for _ in 0..rounds {
            for ((_, binary), seconds) in self.builds.iter().zip(&mut replay_seconds) {
                let mut replay = Command::new(binary);
                replay
                    .args(["replay", "--output", "/dev/null"])
                    .arg(&recording);
                seconds.push(time_command(replay, Duration::from_secs(900))?);
            }
        }
        let row = |tool: String, build: Option<String>, round_seconds: Vec<f64>| {
            let seconds = median(&round_seconds).unwrap_or(f64::NAN);
            DecodeRow {
                tool,
                build,
                file_bytes,
                seconds,
                round_seconds,
                megabytes_per_second: file_bytes as f64 / 1e6 / seconds,
            }
        };
        for ((name, _), seconds) in self.builds.iter().zip(replay_seconds) {
            report.decode.push(row(
                format!("apiscope replay ({name})"),
                Some(name.clone()),
                seconds,
            ));
        }
        // tshark is ~25x slower: once is enough for a ratio of that size.
        let seconds = time_command(tshark, Duration::from_secs(900))?;
        report
            .decode
            .push(row("tshark -r (HTTP/2)".to_string(), None, vec![seconds]));
        Ok(())
    }

    /// Every build in turn sends OTLP to the real collector running the production config,
    /// which writes to a real Kafka broker, while h2load GETs at [`FRESHNESS_RATE`]; then the
    /// traces topic is read back and each span's end time compared with its record's
    /// LogAppendTime (same clock: one machine).
    /// Each build that has `apiscope relay` (older ones are noted as not measured).
    fn relay_phase(&self, report: &mut BenchReport) -> Result<()> {
        for (name, binary) in &self.builds {
            let has_relay = Command::new(binary)
                .args(["relay", "--help"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !has_relay {
                report
                    .not_measured
                    .push(format!("relay: build {name} has no `apiscope relay`"));
                continue;
            }
            let dir = self.scratch.join(format!("relay-{name}"));
            std::fs::create_dir_all(&dir)?;
            let row = relay_memory::measure(
                &dir,
                name,
                binary,
                self.plan.relay_records,
                RELAY_STEADY_RATE,
                RELAY_STEADY,
            )?;
            eprintln!(
                "bench: relay {name}: read {:.0} records/s, RSS {:.1} -> peak {:.1} MiB",
                row.burst_records_per_second, row.rss_idle_mib, row.rss_peak_mib
            );
            report.relay.push(row);
        }
        Ok(())
    }

    fn freshness_phase(&self, report: &mut BenchReport) -> Result<()> {
        let dir = self.scratch.join("freshness");
        let mut broker = KafkaBroker::start(&dir.join("kafka"))?;
        broker.create_topics_with(
            &[TRACES_TOPIC, LOGS_TOPIC, METRICS_TOPIC],
            &[("message.timestamp.type", "LogAppendTime")],
            Duration::from_secs(30),
        )?;
        let bootstrap = broker.bootstrap();
        let mut collector = Collector::start(
            &dir.join("otelcol"),
            &[
                ("KAFKA_BROKERS", bootstrap.as_str()),
                ("KAFKA_TRACES_TOPIC", TRACES_TOPIC),
                ("KAFKA_LOGS_TOPIC", LOGS_TOPIC),
                ("KAFKA_METRICS_TOPIC", METRICS_TOPIC),
            ],
        )?;
        let endpoint = format!("http://{}", collector.otlp_grpc_endpoint());
        // Which build was attached when: (build, first and last request time, wall clock).
        let mut windows: Vec<(String, u64, u64)> = Vec::new();
        for _ in 0..self.plan.rounds {
            for (name, binary) in &self.builds {
                let apiscope = RunningApiscope::start(
                    &self.spawner,
                    binary,
                    self.cluster.apiserver_pid(),
                    &["--otlp-endpoint".as_ref(), endpoint.as_ref()],
                )?;
                let from = unix_nanos();
                self.h2load(Workload::Get, self.plan.freshness, Some(FRESHNESS_RATE))
                    .run(&self.scratch)?;
                let to = unix_nanos();
                std::thread::sleep(FRESHNESS_LINGER);
                apiscope.stop()?;
                windows.push((name.clone(), from, to));
            }
            broker.ensure_running()?;
            collector.ensure_running()?;
        }
        let expected = (FRESHNESS_RATE * self.plan.freshness.as_secs_f64()) as usize;
        let records = kafka::consume_records(
            &bootstrap,
            TRACES_TOPIC,
            1,
            usize::MAX,
            Duration::from_secs(60),
        )?;
        collector.stop()?;
        broker.stop()?;
        let mut delays_ms: Vec<Vec<f64>> = vec![Vec::new(); self.builds.len()];
        for record in &records {
            let appended_ms = record
                .timestamp_ms
                .context("a Kafka record without a timestamp")?;
            let request = ExportTraceServiceRequest::decode(record.payload.as_slice())
                .context("decoding a traces record (otlp_proto)")?;
            let spans = request
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans);
            for span in spans {
                let end = span.end_time_unix_nano;
                let Some((build, ..)) = windows
                    .iter()
                    .find(|(_, from, to)| (*from..=*to).contains(&end))
                else {
                    continue;
                };
                let index = self.builds.iter().position(|(name, _)| name == build);
                if let Some(delays) = index.and_then(|i| delays_ms.get_mut(i)) {
                    delays.push(appended_ms as f64 - end as f64 / 1e6);
                }
            }
        }
        for ((name, _), delays) in self.builds.iter().zip(delays_ms) {
            eprintln!(
                "bench: freshness {name}: {} spans (about {} requests per round offered)",
                delays.len(),
                expected
            );
            report.freshness.push(FreshnessRow {
                build: name.clone(),
                offered_rps: FRESHNESS_RATE,
                seconds: self.plan.freshness.as_secs_f64() * self.plan.rounds as f64,
                spans: delays.len(),
                p50_ms: quantile(&delays, 0.5),
                p99_ms: quantile(&delays, 0.99),
                max_ms: quantile(&delays, 1.0),
            });
        }
        Ok(())
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Wall time of a command whose output is discarded, bounded by `limit`.
fn time_command(mut command: Command, limit: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("{command:?} failed: {status}");
            }
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            child.kill()?;
            child.wait()?;
            bail!("{command:?} took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
