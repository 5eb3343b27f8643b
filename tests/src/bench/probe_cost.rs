//! What one uprobe hit costs the probed process, by the kind of instruction probed.
//!
//! x86-64 uprobes trap on an `int3` and then either emulate the original instruction or
//! single-step a copy of it out of line (a second trap). apiscope places its probes on
//! emulated instructions where that observes the same state (`capture::gobinary::probe_site`);
//! this phase measures why: a C loop (`uprobe_loop.c`) calls a function starting with each kind
//! of instruction, without and then with a tracefs uprobe (no BPF program: the trap alone), in
//! alternating rounds, and reports the CPU time per hit.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use super::stats::median;

const SOURCE: &str = include_str!("uprobe_loop.c");
const TRACEFS: &str = "/sys/kernel/tracing";
const GROUP: &str = "apiscope_bench";

/// Each site of `uprobe_loop.c` and whether the kernel is expected to emulate it.
pub const SITES: [(&str, bool); 9] = [
    ("cmp_mem", false),
    ("test", false),
    ("mov", false),
    ("ret", false),
    ("push", true),
    ("jcc", true),
    ("call", true),
    ("jmp", true),
    ("nop", true),
];

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeCostRow {
    /// The probed instruction (`jcc`: the `jne` after a `test`, as apiscope probes Read).
    pub instruction: String,
    /// What apiscope's site rule expects: emulated (one trap) or single-stepped (two).
    pub expected_emulated: bool,
    /// Median over rounds of CPU µs per call with the probe, minus without.
    pub us_per_hit: f64,
    pub rounds: Vec<f64>,
}

/// Builds the loop in `scratch`, then `rounds` alternating rounds of `calls` calls per site.
pub fn measure(scratch: &Path, rounds: usize, calls: u64) -> Result<Vec<ProbeCostRow>> {
    let binary = build(scratch)?;
    ensure_tracefs()?;
    let text = executable_segment(&binary)?;
    let addresses = symbols(&binary)?;
    let mut per_site: Vec<Vec<f64>> = vec![Vec::new(); SITES.len()];
    let _cleanup = Events;
    for _ in 0..rounds {
        for (index, (site, _)) in SITES.iter().enumerate() {
            let address = addresses
                .iter()
                .find(|(name, _)| name == &format!("site_{site}"))
                .map(|&(_, address)| address)
                .ok_or_else(|| anyhow!("site_{site} not in {}", binary.display()))?;
            let offset = address
                .checked_sub(text.1)
                .map(|delta| delta + text.0)
                .ok_or_else(|| anyhow!("site_{site} below the text segment"))?;
            let without = run(&binary, site, calls)?;
            let event = format!("p:{GROUP}/{site} {}:{offset:#x}", binary.display());
            write_tracefs("uprobe_events", &event, true)?;
            write_tracefs(&format!("events/{GROUP}/{site}/enable"), "1", false)?;
            let with = run(&binary, site, calls);
            write_tracefs(&format!("events/{GROUP}/{site}/enable"), "0", false)?;
            write_tracefs("uprobe_events", &format!("-:{GROUP}/{site}"), true)?;
            per_site[index].push((with? - without) / 1000.0);
        }
    }
    Ok(SITES
        .iter()
        .zip(per_site)
        .map(|(&(site, emulated), rounds)| ProbeCostRow {
            instruction: site.to_string(),
            expected_emulated: emulated,
            us_per_hit: median(&rounds).unwrap_or(f64::NAN),
            rounds,
        })
        .collect())
}

/// Removes the bench's uprobe events, whatever happened.
struct Events;

impl Drop for Events {
    fn drop(&mut self) {
        for (site, _) in SITES {
            let _ = write_tracefs(&format!("events/{GROUP}/{site}/enable"), "0", false);
            let _ = write_tracefs("uprobe_events", &format!("-:{GROUP}/{site}"), true);
        }
    }
}

fn build(scratch: &Path) -> Result<PathBuf> {
    let source = scratch.join("uprobe_loop.c");
    let binary = scratch.join("uprobe_loop");
    std::fs::write(&source, SOURCE)?;
    let status = Command::new("gcc")
        .args(["-O1", "-no-pie", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .context("running gcc for the probe-cost loop")?;
    if !status.success() {
        bail!("gcc failed on uprobe_loop.c: {status}");
    }
    Ok(binary)
}

fn ensure_tracefs() -> Result<()> {
    if Path::new(TRACEFS).join("uprobe_events").exists() {
        return Ok(());
    }
    let status = Command::new("mount")
        .args(["-t", "tracefs", "nodev", TRACEFS])
        .status()?;
    if !status.success() || !Path::new(TRACEFS).join("uprobe_events").exists() {
        bail!("tracefs is not mounted at {TRACEFS} and mounting it failed");
    }
    Ok(())
}

fn write_tracefs(file: &str, text: &str, append: bool) -> Result<()> {
    use std::io::Write;
    let path = Path::new(TRACEFS).join(file);
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    handle
        .write_all(format!("{text}\n").as_bytes())
        .with_context(|| format!("writing {text:?} to {}", path.display()))
}

/// CPU ns per call, as the loop prints it.
fn run(binary: &Path, site: &str, calls: u64) -> Result<f64> {
    let output = Command::new(binary)
        .args([site, &calls.to_string()])
        .output()?;
    if !output.status.success() {
        bail!("{} {site}: {}", binary.display(), output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("{} printed {text:?}", binary.display()))
}

/// (file offset, virtual address) of the executable LOAD segment, from `readelf -lW`.
fn executable_segment(binary: &Path) -> Result<(u64, u64)> {
    let output = Command::new("readelf").arg("-lW").arg(binary).output()?;
    parse_executable_segment(&String::from_utf8_lossy(&output.stdout))
        .ok_or_else(|| anyhow!("no executable LOAD segment in {}", binary.display()))
}

fn parse_executable_segment(readelf: &str) -> Option<(u64, u64)> {
    readelf.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex = |text: &str| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok();
        (fields.first() == Some(&"LOAD") && fields.contains(&"E"))
            .then(|| Some((hex(fields.get(1)?)?, hex(fields.get(2)?)?)))
            .flatten()
    })
}

/// (name, address) of the loop's `site_*` symbols, from `nm`.
fn symbols(binary: &Path) -> Result<Vec<(String, u64)>> {
    let output = Command::new("nm").arg(binary).output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _kind = fields.next()?;
            let name = fields.next()?;
            name.starts_with("site_")
                .then(|| (name.to_string(), address))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_segment_in_readelf_output() {
        let readelf = "\
  LOAD           0x000000 0x0000000000400000 0x0000000000400000 0x000630 0x000630 R   0x1000
  LOAD           0x001000 0x0000000000401000 0x0000000000401000 0x0002dd 0x0002dd R E 0x1000
  LOAD           0x002000 0x0000000000402000 0x0000000000402000 0x00017c 0x00017c R   0x1000";
        assert_eq!(parse_executable_segment(readelf), Some((0x1000, 0x401000)));
        assert_eq!(parse_executable_segment("garbage\nLOAD x"), None);
    }
}
