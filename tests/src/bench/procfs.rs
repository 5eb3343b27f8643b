//! A process's CPU time (`/proc/<pid>/stat`) and resident memory (`/proc/<pid>/smaps`), with the
//! BPF ring buffer's mapping counted apart from the heap.

use anyhow::{Context, Result};

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / ticks_per_second.max(1) as f64)
}

/// utime + stime in clock ticks. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After the comm come state (field 3) ... utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process, from `/proc/<pid>/smaps`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct MemoryUse {
    /// Every mapping's Rss.
    pub rss_bytes: u64,
    /// Rss of BPF map mappings (`anon_inode:bpf-map`): the ring buffer, whose data pages are
    /// mapped twice so that a record can wrap around.
    pub bpf_map_rss_bytes: u64,
    /// Virtual size of those mappings (about twice the ring buffer's size).
    pub bpf_map_size_bytes: u64,
    /// Anonymous resident memory outside BPF maps: the heap and thread stacks.
    pub anonymous_rss_bytes: u64,
}

pub fn memory_use(pid: u32) -> Result<MemoryUse> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .with_context(|| format!("reading /proc/{pid}/smaps"))?;
    Ok(parse_smaps(&smaps))
}

pub fn parse_smaps(smaps: &str) -> MemoryUse {
    let mut memory = MemoryUse::default();
    let mut in_bpf_map = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if is_mapping_header(first) {
            // address perms offset dev inode [pathname]
            in_bpf_map = words
                .nth(4)
                .is_some_and(|path| path == "anon_inode:bpf-map");
            continue;
        }
        let kib = || -> u64 {
            words
                .clone()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        match first {
            "Size:" if in_bpf_map => memory.bpf_map_size_bytes += kib() * 1024,
            "Rss:" => {
                let bytes = kib() * 1024;
                memory.rss_bytes += bytes;
                if in_bpf_map {
                    memory.bpf_map_rss_bytes += bytes;
                }
            }
            "Anonymous:" if !in_bpf_map => memory.anonymous_rss_bytes += kib() * 1024,
            _ => {}
        }
    }
    memory
}

/// A mapping's first line starts with its address range, `start-end` in hex.
fn is_mapping_header(word: &str) -> bool {
    word.split_once('-').is_some_and(|(start, end)| {
        !start.is_empty()
            && start.bytes().all(|b| b.is_ascii_hexdigit())
            && end.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_of_a_real_stat_line() {
        // /proc/self/stat of `cp`: utime 0, stime 0 (fields 14, 15).
        assert_eq!(
            parse_cpu_ticks(include_str!("testdata/stat-sample.txt")),
            Some(0)
        );
        let odd_comm = "42 (a) b (c)) S 1 1 1 0 -1 0 0 0 0 0 250 17 0 0 20 0 1 0 0 0 0";
        assert_eq!(parse_cpu_ticks(odd_comm), Some(267));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn ring_buffer_apart_from_heap() {
        let memory = parse_smaps(include_str!("testdata/smaps-apiscope.txt"));
        assert!(memory.rss_bytes > memory.bpf_map_rss_bytes);
        assert!(memory.bpf_map_size_bytes >= 2 * (32 << 20));
        assert!(memory.anonymous_rss_bytes > 0);
    }
}
