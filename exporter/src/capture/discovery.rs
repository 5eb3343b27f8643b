//! Finds the processes to trace by scanning /proc: by command name, by pid, or by binary path.
//! A process is identified by pid *and* start time, so a reused pid is seen as a new process.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Which processes to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetSelector {
    /// Processes whose executable's file name (or `comm`) equals this name.
    Name(String),
    /// Exactly this pid.
    Pid(u32),
    /// Processes whose `/proc/<pid>/exe` resolves to this path.
    Binary(PathBuf),
}

/// A live process to trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetProcess {
    pub pid: u32,
    /// Process start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// The executable as the process sees it; for containers too, the kernel resolves
    /// `/proc/<pid>/exe` to the right file.
    pub exe: PathBuf,
}

impl TargetProcess {
    /// The path uprobes attach through: valid for a containerized binary from the host.
    pub fn exe_link(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pid))
    }
}

/// Lists the processes the selector matches, keyed by pid. Processes that vanish or cannot be
/// read mid-scan are skipped.
pub fn find_targets(selector: &TargetSelector, proc_root: &Path) -> BTreeMap<u32, TargetProcess> {
    let mut found = BTreeMap::new();
    let pids: Vec<u32> = match selector {
        TargetSelector::Pid(pid) => vec![*pid],
        _ => match fs::read_dir(proc_root) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
            Err(_) => Vec::new(),
        },
    };
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        let Some(start_ticks) = read_start_ticks(&dir) else {
            continue;
        };
        let Ok(exe) = fs::read_link(dir.join("exe")) else {
            continue;
        };
        let matches = match selector {
            TargetSelector::Pid(_) => true,
            TargetSelector::Name(name) => {
                exe.file_name().is_some_and(|f| f == name.as_str())
                    || fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == name)
            }
            TargetSelector::Binary(path) => {
                let wanted = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                exe == wanted
            }
        };
        if matches {
            found.insert(
                pid,
                TargetProcess {
                    pid,
                    start_ticks,
                    exe,
                },
            );
        }
    }
    found
}

/// Field 22 of /proc/<pid>/stat. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its closing parenthesis.
fn read_start_ticks(proc_dir: &Path) -> Option<u64> {
    let stat = fs::read_to_string(proc_dir.join("stat")).ok()?;
    parse_start_ticks(&stat)
}

fn parse_start_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After the comm come field 3 (state) onwards; start time is field 22.
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Difference between two scans: what to attach to and what to detach from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TargetChanges {
    pub started: Vec<TargetProcess>,
    pub ended: Vec<u32>,
}

pub fn diff_targets(
    attached: &BTreeMap<u32, TargetProcess>,
    current: &BTreeMap<u32, TargetProcess>,
) -> TargetChanges {
    let mut changes = TargetChanges::default();
    for (pid, old) in attached {
        match current.get(pid) {
            Some(new) if new.start_ticks == old.start_ticks => {}
            _ => changes.ended.push(*pid),
        }
    }
    for (pid, new) in current {
        match attached.get(pid) {
            Some(old) if old.start_ticks == new.start_ticks => {}
            _ => changes.started.push(new.clone()),
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_spaces_and_parens_in_comm() {
        let stat = "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 12 0 987654 1000 50";
        assert_eq!(parse_start_ticks(stat), Some(987654));
        assert_eq!(parse_start_ticks("garbage"), None);
        assert_eq!(parse_start_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn finds_this_test_process_by_pid_name_and_binary() {
        let me = std::process::id();
        let proc_root = Path::new("/proc");
        let by_pid = find_targets(&TargetSelector::Pid(me), proc_root);
        let target = by_pid.get(&me).expect("own pid found");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(target.exe, fs::canonicalize(&exe).unwrap());

        let by_binary = find_targets(&TargetSelector::Binary(exe.clone()), proc_root);
        assert!(by_binary.contains_key(&me));

        let name = exe.file_name().unwrap().to_str().unwrap().to_string();
        let by_name = find_targets(&TargetSelector::Name(name), proc_root);
        assert!(by_name.contains_key(&me));
        let none = find_targets(
            &TargetSelector::Name("no-such-process-name".into()),
            proc_root,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn restarted_process_with_reused_pid_is_detached_and_attached_again() {
        let target = |pid, start_ticks| TargetProcess {
            pid,
            start_ticks,
            exe: "/bin/x".into(),
        };
        let attached = BTreeMap::from([(10, target(10, 100)), (11, target(11, 100))]);
        let current = BTreeMap::from([(10, target(10, 200)), (12, target(12, 300))]);
        let changes = diff_targets(&attached, &current);
        assert_eq!(changes.ended, vec![10, 11]);
        assert_eq!(changes.started, vec![target(10, 200), target(12, 300)]);
        assert_eq!(diff_targets(&current, &current), TargetChanges::default());
    }
}
