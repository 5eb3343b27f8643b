//! The bench's results: every round as measured, the medians over rounds with ratios to the run
//! without apiscope, and their renderings (text table, JSON, CSV, SVG).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::procfs::MemoryUse;
use super::stats::median;

/// The name of the rounds that run without any apiscope attached.
pub const WITHOUT: &str = "without";

#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub settings: Settings,
    /// `without` first, then each apiscope build in the order given.
    pub builds: Vec<String>,
    pub load_rounds: Vec<LoadRound>,
    pub memory: Vec<MemoryRow>,
    pub loss: Vec<LossRow>,
    pub ring_sizes: Vec<RingSizeTry>,
    pub decode: Vec<DecodeRow>,
    pub freshness: Vec<FreshnessRow>,
    pub relay: Vec<super::relay_memory::RelayRow>,
    pub probe_cost: Vec<super::probe_cost::ProbeCostRow>,
    /// What this run did not measure, and why.
    pub not_measured: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub kernel: String,
    pub cpu_model: String,
    pub apiserver: String,
    pub h2load: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub rounds: usize,
    pub saturation_seconds: f64,
    pub rate_seconds: f64,
    pub loss_window_seconds: f64,
    pub ring_window_seconds: f64,
    pub clients: u32,
    pub streams_per_client: u32,
    pub watches: usize,
}

/// One h2load run of one workload with one build (or without), and what it cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadRound {
    pub workload: String,
    /// `saturation`, or the fraction of the saturation throughput offered, e.g. `50%`.
    pub load: String,
    pub build: String,
    pub round: usize,
    /// Offered rate for fixed-rate rounds (all clients together).
    pub offered_rps: Option<f64>,
    pub seconds: f64,
    pub succeeded: u64,
    pub failed: u64,
    pub achieved_rps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub apiserver_cpu_us_per_request: f64,
    /// apiscope's CPU (all threads) in cores, per 1000 requests per second served.
    pub apiscope_cores_per_1000_rps: Option<f64>,
    /// Kernel BPF statistics of apiscope's programs: runs and time inside the programs, by name.
    pub kernel_runs_per_request: BTreeMap<String, f64>,
    pub kernel_program_ns_per_request: BTreeMap<String, f64>,
    /// apiscope's own `apiscope_capture_probe_hits_total` by probe; empty when the build has none.
    pub apiscope_hits_per_request: BTreeMap<String, f64>,
    pub ringbuf_full_drops: Option<f64>,
}

impl LoadRound {
    pub fn kernel_runs_total(&self) -> Option<f64> {
        (!self.kernel_runs_per_request.is_empty())
            .then(|| self.kernel_runs_per_request.values().sum())
    }
    pub fn kernel_ns_total(&self) -> Option<f64> {
        (!self.kernel_program_ns_per_request.is_empty())
            .then(|| self.kernel_program_ns_per_request.values().sum())
    }
    pub fn apiscope_hits_total(&self) -> Option<f64> {
        (!self.apiscope_hits_per_request.is_empty())
            .then(|| self.apiscope_hits_per_request.values().sum())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryRow {
    pub build: String,
    /// e.g. `LIST at 25%` or `LIST at 25% + 1000 watches`.
    pub condition: String,
    pub memory: MemoryUse,
    pub apiscope_cores_per_1000_rps: Option<f64>,
    pub achieved_rps: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LossRow {
    pub build: String,
    /// Each rate tried (`None`: saturation) with what it reached and the records lost.
    pub tries: Vec<LossTry>,
    /// The highest achieved rate of a try that lost nothing.
    pub highest_lossless_rps: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LossTry {
    pub offered_rps: Option<f64>,
    pub achieved_rps: f64,
    pub seconds: f64,
    pub ringbuf_full_drops: Option<f64>,
}

/// One saturation run with the ring buffer at one size (the ring phase sizes the default).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RingSizeTry {
    pub build: String,
    pub ring_buffer_bytes: u64,
    pub workload: String,
    pub achieved_rps: f64,
    pub seconds: f64,
    pub ringbuf_full_drops: Option<f64>,
    /// apiscope's memory at the end of the run.
    pub memory: MemoryUse,
}

/// The smallest ring-buffer size that lost nothing in any workload, nor did any larger size
/// tried: one lossless size between lossy ones is luck, not a margin.
pub fn smallest_lossless_ring(tries: &[RingSizeTry]) -> Option<u64> {
    let mut sizes: Vec<u64> = tries.iter().map(|t| t.ring_buffer_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let lossless = |size: u64| {
        tries
            .iter()
            .filter(|t| t.ring_buffer_bytes == size)
            .all(|t| t.ringbuf_full_drops == Some(0.0))
    };
    let mut smallest = None;
    for size in sizes.into_iter().rev() {
        if !lossless(size) {
            break;
        }
        smallest = Some(size);
    }
    smallest
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DecodeRow {
    pub tool: String,
    /// The apiscope build replaying, `None` for the reference dissector.
    pub build: Option<String>,
    pub file_bytes: u64,
    /// Median over `round_seconds`.
    pub seconds: f64,
    pub round_seconds: Vec<f64>,
    pub megabytes_per_second: f64,
}

/// From a request's completion (its span's end time, as captured) to the broker appending the
/// Kafka record that carries the span (the topic's LogAppendTime), through the collector.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FreshnessRow {
    pub build: String,
    pub offered_rps: f64,
    pub seconds: f64,
    pub spans: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Medians over the rounds of one workload, load and build.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadSummary {
    pub workload: String,
    pub load: String,
    pub build: String,
    pub rounds: usize,
    pub offered_rps: Option<f64>,
    pub achieved_rps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub apiserver_cpu_us_per_request: f64,
    pub apiscope_cores_per_1000_rps: Option<f64>,
    pub kernel_runs_per_request: Option<f64>,
    pub kernel_program_us_per_request: Option<f64>,
    pub apiscope_hits_per_request: Option<f64>,
    /// Ratios of this build's medians to those without apiscope at the same workload and load.
    pub throughput_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
}

fn median_of(rounds: &[&LoadRound], value: impl Fn(&LoadRound) -> Option<f64>) -> Option<f64> {
    median(&rounds.iter().filter_map(|r| value(r)).collect::<Vec<_>>())
}

impl BenchReport {
    /// One summary per (workload, load, build), in the order the rounds ran.
    pub fn summaries(&self) -> Vec<LoadSummary> {
        let mut keys: Vec<(String, String, String)> = Vec::new();
        for round in &self.load_rounds {
            let key = (
                round.workload.clone(),
                round.load.clone(),
                round.build.clone(),
            );
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut summaries: Vec<LoadSummary> = keys
            .iter()
            .map(|(workload, load, build)| {
                let rounds: Vec<&LoadRound> = self
                    .load_rounds
                    .iter()
                    .filter(|r| &r.workload == workload && &r.load == load && &r.build == build)
                    .collect();
                LoadSummary {
                    workload: workload.clone(),
                    load: load.clone(),
                    build: build.clone(),
                    rounds: rounds.len(),
                    offered_rps: median_of(&rounds, |r| r.offered_rps),
                    achieved_rps: median_of(&rounds, |r| Some(r.achieved_rps)).unwrap_or(0.0),
                    p50_us: median_of(&rounds, |r| r.p50_us),
                    p99_us: median_of(&rounds, |r| r.p99_us),
                    apiserver_cpu_us_per_request: median_of(&rounds, |r| {
                        Some(r.apiserver_cpu_us_per_request)
                    })
                    .unwrap_or(0.0),
                    apiscope_cores_per_1000_rps: median_of(&rounds, |r| {
                        r.apiscope_cores_per_1000_rps
                    }),
                    kernel_runs_per_request: median_of(&rounds, LoadRound::kernel_runs_total),
                    kernel_program_us_per_request: median_of(&rounds, LoadRound::kernel_ns_total)
                        .map(|ns| ns / 1e3),
                    apiscope_hits_per_request: median_of(&rounds, LoadRound::apiscope_hits_total),
                    ..LoadSummary::default()
                }
            })
            .collect();
        let baselines: Vec<LoadSummary> = summaries
            .iter()
            .filter(|s| s.build == WITHOUT)
            .cloned()
            .collect();
        for summary in &mut summaries {
            let Some(without) = baselines
                .iter()
                .find(|b| b.workload == summary.workload && b.load == summary.load)
            else {
                continue;
            };
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            summary.throughput_ratio =
                ratio(Some(summary.achieved_rps), Some(without.achieved_rps));
            summary.p50_ratio = ratio(summary.p50_us, without.p50_us);
            summary.p99_ratio = ratio(summary.p99_us, without.p99_us);
        }
        summaries
    }

    /// Per-probe medians for the saturation rounds of each build: (workload, build) -> probe ->
    /// (kernel runs per request, kernel ns per run, apiscope hits per request).
    #[allow(clippy::type_complexity)]
    pub fn probe_breakdown(
        &self,
    ) -> Vec<((String, String), BTreeMap<String, (f64, f64, Option<f64>)>)> {
        let mut out: Vec<((String, String), BTreeMap<String, (f64, f64, Option<f64>)>)> =
            Vec::new();
        for round in self.load_rounds.iter().filter(|r| r.load == "saturation") {
            if round.build == WITHOUT {
                continue;
            }
            let key = (round.workload.clone(), round.build.clone());
            if out.iter().any(|(k, _)| k == &key) {
                continue;
            }
            let rounds: Vec<&LoadRound> = self
                .load_rounds
                .iter()
                .filter(|r| r.load == "saturation" && r.workload == key.0 && r.build == key.1)
                .collect();
            let mut probes = BTreeMap::new();
            let names: std::collections::BTreeSet<&String> = rounds
                .iter()
                .flat_map(|r| r.kernel_runs_per_request.keys())
                .collect();
            for name in names {
                let runs = median_of(&rounds, |r| r.kernel_runs_per_request.get(name).copied())
                    .unwrap_or(0.0);
                let ns = median_of(&rounds, |r| {
                    r.kernel_program_ns_per_request.get(name).copied()
                })
                .unwrap_or(0.0);
                let per_run = if runs > 0.0 { ns / runs } else { 0.0 };
                // apiscope labels probes by full program name; the kernel keeps 15 characters.
                let apiscope = median_of(&rounds, |r| {
                    let hits: f64 = r
                        .apiscope_hits_per_request
                        .iter()
                        .filter(|(probe, _)| probe.starts_with(name.as_str()))
                        .map(|(_, h)| h)
                        .sum();
                    (!r.apiscope_hits_per_request.is_empty()).then_some(hits)
                });
                probes.insert(name.clone(), (runs, per_run, apiscope));
            }
            out.push((key, probes));
        }
        out
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$}"))
}

fn ms(us: Option<f64>) -> String {
    opt(us.map(|us| us / 1e3), 2)
}

/// The tables for people (also written as `table.md`: they are Markdown tables).
pub fn render_tables(report: &BenchReport) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let s = &report.settings;
    let _ = writeln!(
        out,
        "Machine: {} cores, {}, kernel {}; {}; {}\n",
        m.nproc, m.cpu_model, m.kernel, m.apiserver, m.h2load
    );
    let _ = writeln!(
        out,
        "Mode: {}; {} alternating rounds; saturation rounds {} s, fixed-rate rounds {} s; h2load -c {} -m {}; medians over rounds, ratios to `{WITHOUT}`.\n",
        if s.quick {
            "quick (BENCH_QUICK=1)"
        } else {
            "default"
        },
        s.rounds,
        s.saturation_seconds,
        s.rate_seconds,
        s.clients,
        s.streams_per_client
    );
    if !report.probe_cost.is_empty() {
        out.push_str("### One uprobe hit, by the instruction probed\n\n");
        out.push_str("| instruction | the kernel | CPU µs per hit (median) | rounds |\n");
        out.push_str("|---|---|---:|---|\n");
        for row in &report.probe_cost {
            let rounds: Vec<String> = row.rounds.iter().map(|us| format!("{us:.2}")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.2} | {} |",
                row.instruction,
                if row.expected_emulated {
                    "emulates it"
                } else {
                    "single-steps it"
                },
                row.us_per_hit,
                rounds.join(", ")
            );
        }
        out.push('\n');
    }
    out.push_str("### Throughput, latency and CPU\n\n");
    out.push_str(
        "| workload | load | build | req/s | ratio | p50 ms | p50 ratio | p99 ms | p99 ratio | apiserver CPU µs/req | apiscope cores per 1000 req/s | BPF runs/req | BPF program µs/req | apiscope hits/req |\n",
    );
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in report.summaries() {
        let load = match row.offered_rps {
            Some(rate) => format!("{} ({rate:.0}/s)", row.load),
            None => row.load.clone(),
        };
        let without = row.build == WITHOUT;
        let dash = |text: String| if without { "–".to_string() } else { text };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            row.workload,
            load,
            row.build,
            row.achieved_rps,
            dash(opt(row.throughput_ratio, 2)),
            ms(row.p50_us),
            dash(opt(row.p50_ratio, 2)),
            ms(row.p99_us),
            dash(opt(row.p99_ratio, 2)),
            row.apiserver_cpu_us_per_request,
            dash(opt(row.apiscope_cores_per_1000_rps, 3)),
            dash(opt(row.kernel_runs_per_request, 1)),
            dash(opt(row.kernel_program_us_per_request, 1)),
            dash(opt(row.apiscope_hits_per_request, 1)),
        );
    }
    out.push_str("\n### Uprobe hits per request by program (saturation rounds)\n\n");
    out.push_str("| workload | build | program | kernel runs/req | ns per run (in program) | apiscope hits/req |\n|---|---|---|---:|---:|---:|\n");
    for ((workload, build), probes) in report.probe_breakdown() {
        for (name, (runs, per_run, apiscope)) in probes {
            let _ = writeln!(
                out,
                "| {workload} | {build} | {name} | {runs:.2} | {per_run:.0} | {} |",
                opt(apiscope, 2)
            );
        }
    }
    if !report.memory.is_empty() {
        out.push_str("\n### apiscope memory and CPU\n\n");
        out.push_str("| build | condition | req/s | RSS MiB | ring buffer RSS MiB (mapped MiB) | heap and stacks MiB | apiscope cores per 1000 req/s |\n|---|---|---:|---:|---:|---:|---:|\n");
        for row in &report.memory {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {:.1} ({:.1}) | {:.1} | {} |",
                row.build,
                row.condition,
                row.achieved_rps,
                mib(row.memory.rss_bytes),
                mib(row.memory.bpf_map_rss_bytes),
                mib(row.memory.bpf_map_size_bytes),
                mib(row.memory.anonymous_rss_bytes),
                opt(row.apiscope_cores_per_1000_rps, 3)
            );
        }
    }
    if !report.loss.is_empty() {
        out.push_str("\n### Ring-buffer loss at the default buffer size (LIST)\n\n");
        out.push_str("| build | tries (offered -> achieved req/s: records lost) | highest rate with zero loss |\n|---|---|---:|\n");
        for row in &report.loss {
            let tries: Vec<String> = row
                .tries
                .iter()
                .map(|t| {
                    format!(
                        "{} -> {:.0} over {:.0} s: {}",
                        t.offered_rps
                            .map_or_else(|| "saturation".to_string(), |r| format!("{r:.0}")),
                        t.achieved_rps,
                        t.seconds,
                        opt(t.ringbuf_full_drops, 0)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                row.build,
                tries.join("; "),
                opt(row.highest_lossless_rps, 0)
            );
        }
    }
    if !report.ring_sizes.is_empty() {
        out.push_str("\n### Ring-buffer size against loss at saturation\n\n");
        out.push_str("| build | ring buffer MiB | workload | req/s | seconds | records lost | RSS MiB | ring buffer RSS MiB |\n|---|---:|---|---:|---:|---:|---:|---:|\n");
        for t in &report.ring_sizes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {} | {:.1} | {:.1} |",
                t.build,
                t.ring_buffer_bytes >> 20,
                t.workload,
                t.achieved_rps,
                t.seconds,
                opt(t.ringbuf_full_drops, 0),
                mib(t.memory.rss_bytes),
                mib(t.memory.bpf_map_rss_bytes),
            );
        }
        let _ = writeln!(
            out,
            "\nSmallest size that lost nothing, nor did any larger one: {}",
            smallest_lossless_ring(&report.ring_sizes).map_or_else(
                || "none of those tried".to_string(),
                |b| format!("{} MiB", b >> 20)
            )
        );
    }
    if !report.decode.is_empty() {
        out.push_str("\n### Decoding a recording\n\n| tool | file MB | rounds | seconds (median) | spread | MB/s |\n|---|---:|---:|---:|---:|---:|\n");
        for row in &report.decode {
            let spread = match (
                row.round_seconds.iter().copied().reduce(f64::min),
                row.round_seconds.iter().copied().reduce(f64::max),
            ) {
                (Some(low), Some(high)) if row.round_seconds.len() > 1 => {
                    format!("{low:.2}–{high:.2}")
                }
                _ => "–".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {:.2} | {} | {:.1} |",
                row.tool,
                row.file_bytes as f64 / 1e6,
                row.round_seconds.len(),
                row.seconds,
                spread,
                row.megabytes_per_second
            );
        }
        out.push('\n');
        let replays: Vec<&DecodeRow> = report.decode.iter().filter(|r| r.build.is_some()).collect();
        let ratio = |a: &DecodeRow, b: &DecodeRow| {
            a.megabytes_per_second / b.megabytes_per_second.max(f64::MIN_POSITIVE)
        };
        for tshark in report.decode.iter().filter(|r| r.build.is_none()) {
            for replay in &replays {
                let _ = writeln!(
                    out,
                    "{} / {}: {:.1}×",
                    replay.tool,
                    tshark.tool,
                    ratio(replay, tshark)
                );
            }
        }
        if let [first, rest @ ..] = replays.as_slice() {
            for replay in rest {
                let _ = writeln!(
                    out,
                    "{} / {} (same file, rounds alternating): {:.2}",
                    replay.tool,
                    first.tool,
                    ratio(replay, first)
                );
            }
        }
    }
    if !report.freshness.is_empty() {
        out.push_str("\n### Freshness: request completion -> its span in Kafka\n\n| build | offered req/s | seconds | spans | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for row in &report.freshness {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {} | {} | {} | {} |",
                row.build,
                row.offered_rps,
                row.seconds,
                row.spans,
                opt(row.p50_ms, 0),
                opt(row.p99_ms, 0),
                opt(row.max_ms, 0)
            );
        }
    }
    if !report.relay.is_empty() {
        out.push_str("\n### The relay under slow clients\n\nA burst of records, then a steady rate for longer than the write timeout; three WebSocket clients: one reads everything, one a message a second, one never reads.\n\n| build | bytes per record | burst | burst read/s | steady | RSS idle MiB | RSS peak MiB | RSS end MiB | history rows | history MiB | fast client rows | slow client rows | slow client told dropped | server dropped slow_client | server dropped write_timeout |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for row in &report.relay {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0}/s for {:.0} s | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {:.0} | {:.0} |",
                row.build,
                row.record_bytes,
                row.burst_records,
                row.burst_records_per_second,
                row.steady_rate,
                row.steady_seconds,
                row.rss_idle_mib,
                row.rss_peak_mib,
                row.rss_end_mib,
                row.history_requests,
                row.history_mib,
                row.fast_client_rows,
                row.slow_client_rows,
                row.slow_client_told_dropped,
                row.server_dropped_slow_client,
                row.server_dropped_write_timeout
            );
        }
    }
    if !report.not_measured.is_empty() {
        out.push_str("\n### Not measured in this run\n\n");
        for item in &report.not_measured {
            let _ = writeln!(out, "- {item}");
        }
    }
    out
}

/// Every round as measured, one CSV row each.
pub fn rounds_csv(report: &BenchReport) -> String {
    let mut out = String::from(
        "workload,load,build,round,offered_rps,seconds,succeeded,failed,achieved_rps,p50_us,p99_us,apiserver_cpu_us_per_request,apiscope_cores_per_1000_rps,bpf_runs_per_request,bpf_program_ns_per_request,apiscope_hits_per_request,ringbuf_full_drops\n",
    );
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for r in &report.load_rounds {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.3},{},{},{:.3},{},{},{:.3},{},{},{},{},{}",
            r.workload,
            r.load,
            r.build,
            r.round,
            cell(r.offered_rps),
            r.seconds,
            r.succeeded,
            r.failed,
            r.achieved_rps,
            cell(r.p50_us),
            cell(r.p99_us),
            r.apiserver_cpu_us_per_request,
            cell(r.apiscope_cores_per_1000_rps),
            cell(r.kernel_runs_total()),
            cell(r.kernel_ns_total()),
            cell(r.apiscope_hits_total()),
            cell(r.ringbuf_full_drops),
        );
    }
    out
}

/// One line per series on a shared x axis.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

/// An SVG line chart: axes with ticks, one polyline and dots per series, a legend, and a dashed
/// reference line at `reference_y` (1.0 for ratios).
pub fn line_chart_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    reference_y: Option<f64>,
) -> String {
    let (width, height) = (720.0, 420.0);
    let (left, right, top, bottom) = (70.0, 200.0, 40.0, 60.0);
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (0.0f64, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if let Some(reference) = reference_y {
        y_min = y_min.min(reference);
        y_max = y_max.max(reference);
    }
    if y_min > y_max {
        (y_min, y_max) = (0.0, 1.0);
    }
    let y_min = (y_min * 0.9).min(y_min - 0.05);
    let y_max = (y_max * 1.1).max(y_max + 0.05);
    let x_max = nice_ceiling(x_max);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let sx = |x: f64| left + x / x_max * plot_w;
    let sy = |y: f64| top + (y_max - y) / (y_max - y_min) * plot_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        left + plot_w / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#444\"/>"
    );
    for i in 0..=5 {
        let x = x_max * f64::from(i) / 5.0;
        let y = y_min + (y_max - y_min) * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{1}\" x2=\"{0:.1}\" y2=\"{2}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{4:.0}</text>",
            sx(x),
            top,
            top + plot_h,
            top + plot_h + 16.0,
            x
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{0}\" y1=\"{1:.1}\" x2=\"{2}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{3}\" y=\"{4:.1}\" text-anchor=\"end\">{5:.2}</text>",
            left,
            sy(y),
            left + plot_w,
            left - 6.0,
            sy(y) + 4.0,
            y
        );
    }
    if let Some(reference) = reference_y {
        let _ = writeln!(
            svg,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#888\" stroke-dasharray=\"5,4\"/>",
            sy(reference),
            left + plot_w
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n<text transform=\"translate(18 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        left + plot_w / 2.0,
        height - 18.0,
        escape(x_label),
        top + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut sorted = s.points.clone();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = sorted
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for &(x, y) in &sorted {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                sx(x),
                sy(y)
            );
        }
        let legend_y = top + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{3}\" y=\"{4}\">{5}</text>",
            left + plot_w + 12.0,
            legend_y,
            left + plot_w + 32.0,
            left + plot_w + 38.0,
            legend_y + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value`, so that the axis's
/// five ticks are round numbers.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|step| step * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(10.0 * magnitude)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The plot of `make bench`: p99 latency with / without apiscope against the request rate served
/// (fixed-rate rounds and saturation), one line per workload and build.
pub fn overhead_plot(report: &BenchReport) -> String {
    let mut series: Vec<Series> = Vec::new();
    for summary in report.summaries() {
        if summary.build == WITHOUT {
            continue;
        }
        let Some(ratio) = summary.p99_ratio else {
            continue;
        };
        let name = format!("{} {}", summary.workload, summary.build);
        let point = (summary.achieved_rps, ratio);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name,
                points: vec![point],
            }),
        }
    }
    line_chart_svg(
        "kube-apiserver p99 latency with apiscope / without",
        "requests per second served (fixed rates and saturation)",
        "p99 latency ratio",
        &series,
        Some(1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_lossless_ring_has_no_lossy_size_above_it() {
        let tries = |sizes: &[(u64, f64)]| -> Vec<RingSizeTry> {
            sizes
                .iter()
                .flat_map(|&(mib, drops)| {
                    ["LIST 20", "LIST 200"].map(|workload| RingSizeTry {
                        ring_buffer_bytes: mib << 20,
                        workload: workload.into(),
                        // Only the second workload loses, to see both are looked at.
                        ringbuf_full_drops: Some(if workload == "LIST 200" { drops } else { 0.0 }),
                        ..RingSizeTry::default()
                    })
                })
                .collect()
        };
        let t = tries(&[(1, 9.0), (2, 0.0), (4, 3.0), (8, 0.0), (16, 0.0)]);
        assert_eq!(smallest_lossless_ring(&t), Some(8 << 20));
        assert_eq!(
            smallest_lossless_ring(&tries(&[(1, 0.0), (2, 0.0)])),
            Some(1 << 20)
        );
        assert_eq!(smallest_lossless_ring(&tries(&[(1, 0.0), (2, 1.0)])), None);
        // A build without the counter proves nothing.
        let mut unknown = tries(&[(4, 0.0)]);
        unknown[0].ringbuf_full_drops = None;
        assert_eq!(smallest_lossless_ring(&unknown), None);
    }

    fn round(build: &str, load: &str, rps: f64, p99: f64) -> LoadRound {
        LoadRound {
            workload: "LIST".into(),
            load: load.into(),
            build: build.into(),
            achieved_rps: rps,
            p50_us: Some(p99 / 2.0),
            p99_us: Some(p99),
            apiserver_cpu_us_per_request: 450.0,
            kernel_runs_per_request: if build == WITHOUT {
                BTreeMap::new()
            } else {
                BTreeMap::from([("tls_read_entry".to_string(), 4.0)])
            },
            ..LoadRound::default()
        }
    }

    fn sample_report() -> BenchReport {
        BenchReport {
            builds: vec![WITHOUT.into(), "current".into()],
            load_rounds: vec![
                round(WITHOUT, "saturation", 2800.0, 1000.0),
                round("current", "saturation", 1300.0, 3000.0),
                round(WITHOUT, "saturation", 2900.0, 1200.0),
                round("current", "saturation", 1400.0, 3000.0),
                round(WITHOUT, "50%", 1400.0, 800.0),
                round("current", "50%", 1390.0, 1600.0),
            ],
            ..BenchReport::default()
        }
    }

    #[test]
    fn medians_and_ratios_to_without() {
        let summaries = sample_report().summaries();
        assert_eq!(summaries.len(), 4);
        let current = summaries
            .iter()
            .find(|s| s.build == "current" && s.load == "saturation")
            .unwrap();
        assert_eq!(current.rounds, 2);
        assert_eq!(current.achieved_rps, 1350.0);
        assert!((current.throughput_ratio.unwrap() - 1350.0 / 2850.0).abs() < 1e-9);
        assert!((current.p99_ratio.unwrap() - 3000.0 / 1100.0).abs() < 1e-9);
        assert_eq!(current.kernel_runs_per_request, Some(4.0));
        let without = summaries.iter().find(|s| s.build == WITHOUT).unwrap();
        assert_eq!(without.throughput_ratio, Some(1.0));
    }

    #[test]
    fn round_axis_ends() {
        assert_eq!(nice_ceiling(957.0), 1000.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(3000.0), 5000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn table_csv_and_plot() {
        let report = sample_report();
        let table = render_tables(&report);
        assert!(table.contains("| LIST | saturation | current | 1350 | 0.47 |"));
        assert!(table.contains("| LIST | current | tls_read_entry | 4.00 |"));
        let csv = rounds_csv(&report);
        assert_eq!(csv.lines().count(), 7);
        assert!(csv.lines().all(|l| l.split(',').count() == 17));
        let svg = overhead_plot(&report);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("LIST current"));
        assert_eq!(svg.matches("<polyline").count(), 1);
    }
}
