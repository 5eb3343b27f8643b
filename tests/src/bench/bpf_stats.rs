//! The kernel's own per-program statistics (run count, time inside the program), read with
//! `bpftool -j prog show` while `kernel.bpf_stats_enabled` is on. This is independent of
//! apiscope's counters: it cross-checks them, and works for builds that have none.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use anyhow::{Context, Result, bail};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns `kernel.bpf_stats_enabled` on and restores the previous value when dropped.
pub struct BpfStatsEnabled {
    previous: String,
}

impl BpfStatsEnabled {
    pub fn enable() -> Result<BpfStatsEnabled> {
        let previous = std::fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("reading {STATS_SYSCTL}"))?;
        std::fs::write(STATS_SYSCTL, "1")
            .with_context(|| format!("writing 1 to {STATS_SYSCTL}"))?;
        Ok(BpfStatsEnabled {
            previous: previous.trim().to_string(),
        })
    }
}

impl Drop for BpfStatsEnabled {
    fn drop(&mut self) {
        let _ = std::fs::write(STATS_SYSCTL, &self.previous);
    }
}

/// One loaded program's cumulative statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub id: u64,
    /// The kernel keeps at most 15 characters of the name.
    pub name: String,
    pub run_count: u64,
    pub run_time_ns: u64,
}

/// Every loaded program, by id.
pub fn snapshot() -> Result<BTreeMap<u64, ProgramStats>> {
    let output = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .context("running bpftool (Debian package bpftool)")?;
    if !output.status.success() {
        bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_prog_show(&output.stdout)
}

/// `bpftool -j prog show`: an array of programs; `run_time_ns` and `run_cnt` are absent while a
/// program has not run with statistics on.
pub fn parse_prog_show(json: &[u8]) -> Result<BTreeMap<u64, ProgramStats>> {
    let programs: Vec<serde_json::Value> =
        serde_json::from_slice(json).context("parsing bpftool's JSON")?;
    let mut by_id = BTreeMap::new();
    for program in programs {
        let id = program["id"].as_u64().context("program without id")?;
        by_id.insert(
            id,
            ProgramStats {
                id,
                name: program["name"].as_str().unwrap_or_default().to_string(),
                run_count: program["run_cnt"].as_u64().unwrap_or(0),
                run_time_ns: program["run_time_ns"].as_u64().unwrap_or(0),
            },
        );
    }
    Ok(by_id)
}

/// The ids of the BPF programs a process holds open, from the `prog_id:` line of each of its
/// file descriptors' fdinfo (bpftool's own pid column needs a bpftool built with skeletons).
pub fn program_ids_of(pid: u32) -> Result<BTreeSet<u64>> {
    let mut ids = BTreeSet::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue; // closed meanwhile
        };
        ids.extend(parse_fdinfo_program_id(&text));
    }
    Ok(ids)
}

pub fn parse_fdinfo_program_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("prog_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// Runs and time per program name between two snapshots, for the programs in `ids`.
pub fn delta_by_name(
    before: &BTreeMap<u64, ProgramStats>,
    after: &BTreeMap<u64, ProgramStats>,
    ids: &BTreeSet<u64>,
) -> BTreeMap<String, (u64, u64)> {
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for id in ids {
        let Some(end) = after.get(id) else { continue };
        let (runs, time) = before
            .get(id)
            .map_or((0, 0), |start| (start.run_count, start.run_time_ns));
        let entry = by_name.entry(end.name.clone()).or_default();
        entry.0 += end.run_count.saturating_sub(runs);
        entry.1 += end.run_time_ns.saturating_sub(time);
    }
    by_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_real_programs() {
        let programs = parse_prog_show(include_bytes!("testdata/bpftool-prog-show.json")).unwrap();
        assert!(!programs.is_empty());
        assert!(
            programs
                .values()
                .any(|p| p.run_count > 0 && p.run_time_ns > 0)
        );
        assert!(programs.values().all(|p| !p.name.is_empty()));
    }

    #[test]
    fn missing_statistics_count_as_zero() {
        let json = br#"[{"id":7,"type":"kprobe","name":"tls_read_entry","tag":"ab"}]"#;
        let programs = parse_prog_show(json).unwrap();
        assert_eq!(programs[&7].run_count, 0);
        assert_eq!(programs[&7].run_time_ns, 0);
    }

    #[test]
    fn program_id_from_fdinfo() {
        let fdinfo = include_str!("testdata/fdinfo-bpf-prog.txt");
        assert!(parse_fdinfo_program_id(fdinfo).is_some());
        assert_eq!(parse_fdinfo_program_id("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn deltas_summed_by_name() {
        let stats = |id, runs, time| ProgramStats {
            id,
            name: if id == 3 { "other" } else { "probe" }.to_string(),
            run_count: runs,
            run_time_ns: time,
        };
        let before = BTreeMap::from([(1, stats(1, 10, 100)), (2, stats(2, 5, 50))]);
        let after = BTreeMap::from([
            (1, stats(1, 15, 160)),
            (2, stats(2, 9, 90)),
            (3, stats(3, 99, 999)),
        ]);
        let delta = delta_by_name(&before, &after, &BTreeSet::from([1, 2]));
        assert_eq!(delta, BTreeMap::from([("probe".to_string(), (9, 100))]));
    }
}
