//! Capture settings (command-line flags of `apiscope capture`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use apiscope_common::{MAX_CHUNK_DATA, MAX_SEGMENTS_PER_CALL};

use super::discovery::TargetSelector;
use crate::vocabulary::parse_duration;

/// Most bytes one Read/Write call can have copied (the eBPF side splits a call into at most
/// this many chunks).
pub const MAX_BYTES_PER_CALL: u32 = MAX_CHUNK_DATA as u32 * MAX_SEGMENTS_PER_CALL;

#[derive(Args, Clone, Debug)]
pub struct CaptureConfig {
    /// Trace processes whose executable (or comm) has this name.
    #[arg(long, default_value = "kube-apiserver", conflicts_with_all = ["pid", "binary"])]
    pub process_name: String,
    /// Trace exactly this process.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Trace processes running this executable (compared with /proc/<pid>/exe).
    #[arg(long, conflicts_with = "pid")]
    pub binary: Option<PathBuf>,
    /// How often /proc is scanned for started and ended target processes.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub rescan_interval: Duration,
    /// Most plaintext bytes copied per Read/Write call; the rest is reported as a gap of known size.
    #[arg(long, default_value_t = MAX_BYTES_PER_CALL, value_parser = clap::value_parser!(u32).range(1..=MAX_BYTES_PER_CALL as i64))]
    pub capture_bytes_per_call: u32,
    /// Size of the kernel-to-user ring buffer (a power of two, at least one page).
    #[arg(long, default_value_t = 16 << 20, value_parser = parse_ring_buffer_bytes)]
    pub ring_buffer_bytes: u32,
    /// Unread ring-buffer bytes at which the kernel side wakes apiscope. Below it events are
    /// written without a wakeup (each one is an interrupt raised inside the traced thread) and
    /// apiscope picks them up every --ring-drain-interval.
    #[arg(long, default_value_t = 256 << 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ring_wakeup_bytes: u64,
    /// How often apiscope drains the ring buffer without being woken: the most a quiet
    /// request's events wait before decoding.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub ring_drain_interval: Duration,
    /// How Read is probed: `record` once per TLS record where Read's code is recognised (else
    /// at its RETs, logged), `return` at each of its RETs (about twice the hits).
    #[arg(long, value_enum, default_value_t = ReadProbeMode::Record)]
    pub read_probe: ReadProbeMode,
    /// Connections tracked at once before the oldest is forgotten (and counted).
    #[arg(long, default_value_t = 65536)]
    pub max_connections: usize,
    /// Chunks queued between capture and output before new ones are dropped (and counted).
    #[arg(long, default_value_t = 65536)]
    pub queue_capacity: usize,
    /// Bytes of chunks queued between capture and output before new ones are dropped (and
    /// counted): with --queue-capacity, what a decoder that falls behind can hold.
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub queue_bytes: u64,
    /// Turn on the kernel's BPF run-time statistics while capturing, so that
    /// apiscope_capture_probe_run_seconds_total counts the time spent inside each probe. They
    /// are global: while on, every BPF program on the node pays two clock reads per run.
    #[arg(long)]
    pub probe_run_time: bool,
    /// eBPF object to load instead of the one embedded at build time.
    #[arg(long)]
    pub ebpf_object: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadProbeMode {
    Record,
    Return,
}

impl CaptureConfig {
    pub fn selector(&self) -> TargetSelector {
        match (&self.pid, &self.binary) {
            (Some(pid), _) => TargetSelector::Pid(*pid),
            (None, Some(path)) => TargetSelector::Binary(path.clone()),
            (None, None) => TargetSelector::Name(self.process_name.clone()),
        }
    }

    pub fn capture_bytes_per_call(&self) -> u32 {
        self.capture_bytes_per_call.min(MAX_BYTES_PER_CALL)
    }
}

fn parse_ring_buffer_bytes(text: &str) -> Result<u32, String> {
    let bytes: u32 = text
        .parse()
        .map_err(|_| format!("not a byte count: {text:?}"))?;
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!("{bytes} is not a power of two of at least 4096"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_size_must_be_a_power_of_two() {
        assert_eq!(parse_ring_buffer_bytes("65536"), Ok(65536));
        assert!(parse_ring_buffer_bytes("65537").is_err());
        assert!(parse_ring_buffer_bytes("1024").is_err());
    }
}
