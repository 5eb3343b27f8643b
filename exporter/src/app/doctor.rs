//! `apiscope doctor`: what to check when no events arrive. Every check prints one line: `ok`,
//! `warn` (capture works, with less) or `FAIL` (capture cannot work), what it found and, for a
//! failure, what to do. It runs the same code `capture` runs: it loads the eBPF object, finds the
//! target processes, reads their binaries and attaches every probe (then detaches again).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::capture::config::CaptureConfig;
use crate::capture::discovery::{TargetSelector, find_targets};
use crate::capture::metrics::CaptureMetrics;
use crate::capture::tracer::{ProbePoints, ReadProbes, Tracer};
use crate::k8s::release::KubernetesRelease;

/// Processes examined at most (a node runs one or a few apiservers).
const MAX_TARGETS: usize = 8;
/// The ring buffer map type arrived in Linux 5.8.
const RINGBUF_KERNEL: (u32, u32) = (5, 8);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        }
    }
}

/// The doctor's findings, in the order they were made.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<(Verdict, String)>,
}

impl Report {
    fn add(&mut self, verdict: Verdict, text: impl Into<String>) {
        self.lines.push((verdict, text.into()));
    }

    /// The worst verdict.
    pub fn verdict(&self) -> Verdict {
        self.lines
            .iter()
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (verdict, text) in &self.lines {
            let _ = writeln!(out, "{:<4}  {text}", verdict.label());
        }
        out
    }
}

/// Runs every check for the processes `config` selects.
pub fn doctor(config: &CaptureConfig) -> Report {
    let mut report = Report::default();
    check_kernel(&mut report, Path::new("/"));
    check_privileges(&mut report);
    let mut tracer = match Tracer::load(config, Arc::new(CaptureMetrics::default())) {
        Ok(tracer) => {
            report.add(
                Verdict::Ok,
                format!(
                    "eBPF object loaded: every program passed the verifier, ring buffer {} MiB",
                    config.ring_buffer_bytes >> 20
                ),
            );
            Some(tracer)
        }
        Err(error) => {
            report.add(
                Verdict::Fail,
                format!(
                    "eBPF object: {error:#} (run as root, or with CAP_BPF, CAP_PERFMON and \
                     CAP_SYS_PTRACE)"
                ),
            );
            None
        }
    };
    let selector = config.selector();
    let targets = find_targets(&selector, Path::new("/proc"));
    if targets.is_empty() {
        report.add(
            Verdict::Fail,
            format!(
                "no process matches {} (in a pod: hostPID: true; or name it with --pid / \
                 --binary)",
                describe(&selector)
            ),
        );
        return report;
    }
    report.add(
        Verdict::Ok,
        format!(
            "{} process(es) match {}",
            targets.len(),
            describe(&selector)
        ),
    );
    for target in targets.values().take(MAX_TARGETS) {
        let exe = target.exe_link();
        let name = format!("pid {} ({})", target.pid, target.exe.display());
        let points = match ProbePoints::find(&exe, config.read_probe) {
            Ok(points) => points,
            Err(error) => {
                report.add(Verdict::Fail, format!("{name}: {error:#}"));
                continue;
            }
        };
        describe_binary(&mut report, &name, &points);
        if let Some(tracer) = tracer.as_mut() {
            match tracer.attach(target) {
                Ok(attached) => {
                    let probes = tracer.attached_probes(target.pid);
                    // A program attached at several sites is listed once (its sites are adjacent).
                    let mut programs = probes.clone();
                    programs.dedup();
                    report.add(
                        Verdict::Ok,
                        format!(
                            "  attached {} uprobes ({}), detached again",
                            probes.len(),
                            programs.join(", ")
                        ),
                    );
                    // Unavailable hooks were reported with the binary; here only a failed attach.
                    if let (Err(why), Ok(_)) = (attached.header_hooks, &points.header_hooks) {
                        report.add(Verdict::Warn, format!("  header hooks not attached: {why}"));
                    }
                    tracer.detach(target.pid);
                }
                Err(error) => report.add(Verdict::Fail, format!("  attach: {error:#}")),
            }
        }
    }
    if targets.len() > MAX_TARGETS {
        report.add(
            Verdict::Warn,
            format!(
                "{} more processes match and were not examined",
                targets.len() - MAX_TARGETS
            ),
        );
    }
    report
}

fn describe(selector: &TargetSelector) -> String {
    match selector {
        TargetSelector::Name(name) => format!("--process-name {name}"),
        TargetSelector::Pid(pid) => format!("--pid {pid}"),
        TargetSelector::Binary(path) => format!("--binary {}", path.display()),
    }
}

/// What the binary's build info and code say: Go release, Kubernetes release, probe sites.
fn describe_binary(report: &mut Report, name: &str, points: &ProbePoints) {
    let version = |module: &str| points.module_versions.get(module).map(String::as_str);
    let kubernetes = KubernetesRelease::from_build_info(version)
        .map(|release| format!(", Kubernetes {release}"))
        .unwrap_or_else(|| ", Kubernetes release not in the build info".to_string());
    if points.newer_than_offsets_table {
        report.add(
            Verdict::Warn,
            format!(
                "{name}: {} is newer than the offsets table: TLS capture with the newest \
                 row's offsets, no header hooks{kubernetes}",
                points.go_version
            ),
        );
    } else {
        report.add(
            Verdict::Ok,
            format!("{name}: {}{kubernetes}", points.go_version),
        );
    }
    let reads = match &points.reads {
        ReadProbes::Records { after_calls } => format!(
            "Read once per TLS record (after {} call(s) of readRecordOrCCS)",
            after_calls.len()
        ),
        ReadProbes::Returns { rets, why } => {
            format!(
                "Read at its {} RET(s) (record probe unavailable: {why})",
                rets.len()
            )
        }
    };
    report.add(
        Verdict::Ok,
        format!(
            "  TLS probes: Write at {:#x}, Close at {:#x}, {reads}",
            points.write_entry, points.close_entry
        ),
    );
    if points.single_stepped.is_empty() {
        report.add(
            Verdict::Ok,
            "  every probe site is an instruction the kernel emulates (one trap per hit)",
        );
    } else {
        let sites: Vec<String> = points
            .single_stepped
            .iter()
            .map(|(program, count)| format!("{program} ({count})"))
            .collect();
        report.add(
            Verdict::Warn,
            format!(
                "  single-stepped probe sites, a second trap per hit (costly on virtual \
                 machines): {}",
                sites.join(", ")
            ),
        );
    }
    match &points.header_hooks {
        Ok(hooks) => report.add(
            Verdict::Ok,
            format!(
                "  header hooks available (x/net {}, offsets {:?}); responses {}",
                hooks
                    .xnet_version
                    .as_deref()
                    .unwrap_or("of the standard library"),
                hooks.offsets_source,
                if hooks.response_from_header_map {
                    "read in one hit from the header map"
                } else {
                    "read field by field (hpack WriteField)"
                }
            ),
        ),
        Err(why) => report.add(
            Verdict::Warn,
            format!(
                "  header hooks unavailable: {why} (connections opened before the capture \
                 started lose their headers)"
            ),
        ),
    }
}

/// Kernel release (the ring buffer needs 5.8), uprobes, BTF; `root` is `/` outside tests.
fn check_kernel(report: &mut Report, root: &Path) {
    let release = std::fs::read_to_string(root.join("proc/sys/kernel/osrelease"))
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    match kernel_version(&release) {
        Some(version) if version >= RINGBUF_KERNEL => {
            report.add(Verdict::Ok, format!("kernel {release}"))
        }
        Some(_) => report.add(
            Verdict::Fail,
            format!(
                "kernel {release}: the BPF ring buffer needs Linux {}.{} or newer",
                RINGBUF_KERNEL.0, RINGBUF_KERNEL.1
            ),
        ),
        None => report.add(
            Verdict::Warn,
            format!("kernel release {release:?} not understood"),
        ),
    }
    if root.join("sys/bus/event_source/devices/uprobe").exists() {
        report.add(Verdict::Ok, "uprobes: the perf uprobe event source exists");
    } else {
        report.add(
            Verdict::Fail,
            "uprobes: no /sys/bus/event_source/devices/uprobe (kernel built without \
             CONFIG_UPROBE_EVENTS, or /sys not mounted)",
        );
    }
    if root.join("sys/kernel/btf/vmlinux").exists() {
        report.add(Verdict::Ok, "BTF: /sys/kernel/btf/vmlinux present");
    } else {
        report.add(
            Verdict::Warn,
            "BTF: /sys/kernel/btf/vmlinux absent (apiscope's programs do not need it; \
             bpftool and other tools may)",
        );
    }
}

/// (major, minor) of a kernel release such as `6.18.44-fc-v669`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Linux capability numbers (`linux/capability.h`).
const CAPABILITIES: [(u32, &str); 4] = [
    (21, "CAP_SYS_ADMIN"),
    (19, "CAP_SYS_PTRACE"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

fn check_privileges(report: &mut Report) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(effective) = effective_capabilities(&status) else {
        report.add(Verdict::Warn, "privileges: CapEff not readable");
        return;
    };
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    let held: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|(bit, _)| has(*bit))
        .map(|(_, name)| *name)
        .collect();
    let can_bpf = has(21) || (has(39) && has(38));
    let verdict = if can_bpf && has(19) {
        Verdict::Ok
    } else {
        Verdict::Fail
    };
    let mut text = format!(
        "privileges: effective capabilities {effective:#x} ({})",
        if held.is_empty() {
            "none of those apiscope uses".to_string()
        } else {
            held.join(", ")
        }
    );
    if !can_bpf {
        text.push_str("; loading BPF programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)");
    }
    if !has(19) {
        text.push_str(
            "; reading other processes' binaries through /proc/<pid>/exe needs CAP_SYS_PTRACE",
        );
    }
    report.add(verdict, text);
}

/// The `CapEff:` bit mask of a `/proc/<pid>/status` text.
fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_and_capabilities_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(kernel_version("garbage"), None);
        assert!((5, 4) < RINGBUF_KERNEL && (5, 8) >= RINGBUF_KERNEL);
        let status = "Name:\tapiscope\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1ff_ffff_ffff));
        assert_eq!(effective_capabilities("Name: x\n"), None);
    }

    #[test]
    fn a_machine_without_uprobes_fails_and_says_why() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(root.path().join("proc/sys/kernel/osrelease"), "5.4.0-old\n").unwrap();
        let mut report = Report::default();
        check_kernel(&mut report, root.path());
        assert_eq!(report.verdict(), Verdict::Fail);
        let text = report.render();
        assert!(
            text.contains("FAIL  kernel 5.4.0-old: the BPF ring buffer needs Linux 5.8"),
            "{text}"
        );
        assert!(text.contains("FAIL  uprobes"), "{text}");
        assert!(text.contains("warn  BTF"), "{text}");
    }
}
