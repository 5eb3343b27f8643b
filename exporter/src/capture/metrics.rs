//! The capture stage's own health: what arrived, what was lost and why, what is attached.

use std::sync::atomic::AtomicU64;

use apiscope_common::{KERNEL_COUNTER_SLOTS, KernelCounter, PROBE_SLOTS, Probe};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The eBPF program (`Probe::program`).
    pub probe: &'static str,
}

/// `state`: `off` when a connection's header hooks were switched off, `on` when back on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookSwitchLabels {
    pub state: &'static str,
}

#[derive(Default, Debug)]
pub struct CaptureMetrics {
    /// Ring-buffer records decoded into chunks.
    pub events: Counter,
    /// Payload bytes copied out of the traced processes.
    pub bytes_captured: Counter,
    /// Stream bytes reported but not copied (truncated calls): gaps of known size.
    pub bytes_not_captured: Counter,
    /// Ring-buffer records that failed validation.
    pub malformed_events: Counter,
    /// Kernel-side losses, mirrored from the COUNTERS map.
    pub ringbuf_full_drops: Counter,
    pub payload_read_failures: Counter,
    pub read_arguments_unreadable: Counter,
    pub read_records_unreadable: Counter,
    /// Chunks dropped because the next stage's queue was full.
    pub queue_full_drops: Counter,
    pub attached_processes: Gauge,
    pub attach_failures: Counter,
    pub connections_seen: Counter,
    pub connections_evicted: Counter,
    pub open_connections: Gauge,
    /// Decoded header blocks from the HTTP/2 header hooks.
    pub header_blocks: Counter,
    /// Header fields the hooks saw but could not copy (limits on count, length, block size).
    pub header_fields_dropped: Counter,
    /// Header blocks the kernel side lost (unreadable Go memory, ring buffer full).
    pub header_blocks_failed: Counter,
    /// Header hook hits that returned at once: the wire decoder knew the connection's HPACK table.
    pub header_hooks_skipped: Counter,
    /// Connections whose header hooks are off (the wire decoder knows their HPACK tables) or
    /// back on, as told to the kernel side.
    pub header_hook_switches: Family<HookSwitchLabels, Counter>,
    /// Processes attached without the header hooks (symbols or offsets missing).
    pub header_hooks_unavailable: Counter,
    /// Processes attached whose Go release is newer than the offsets table (TLS capture only).
    pub newer_than_offsets_table: Counter,
    /// Uprobe hits per probe, mirrored from the PROBE_HITS map: each is a trap inside the
    /// traced process, apiscope's cost to it.
    pub probe_hits: Family<ProbeLabels, Counter>,
    /// Seconds inside each probe's program, mirrored from the kernel's program statistics
    /// (counted only while BPF run-time statistics are on).
    pub probe_run_seconds: Family<ProbeLabels, Counter<f64, AtomicU64>>,
}

impl CaptureMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("apiscope_capture");
        r.register(
            "events",
            "Ring-buffer events decoded into TLS chunks",
            self.events.clone(),
        );
        r.register(
            "captured_bytes",
            "Plaintext bytes copied from traced processes",
            self.bytes_captured.clone(),
        );
        r.register(
            "not_captured_bytes",
            "TLS stream bytes seen but not copied (calls larger than the per-call capture limit)",
            self.bytes_not_captured.clone(),
        );
        r.register(
            "malformed_events",
            "Ring-buffer events that failed validation",
            self.malformed_events.clone(),
        );
        r.register(
            "ringbuf_full_drops",
            "Events lost because the ring buffer was full",
            self.ringbuf_full_drops.clone(),
        );
        r.register(
            "payload_read_failures",
            "Events lost because the kernel could not read the payload",
            self.payload_read_failures.clone(),
        );
        r.register(
            "read_arguments_unreadable",
            "Read probes that could not read the call's spilled arguments from the goroutine stack",
            self.read_arguments_unreadable.clone(),
        );
        r.register(
            "read_records_unreadable",
            "TLS records lost because tls.Conn.input was unreadable or inconsistent at the record probe",
            self.read_records_unreadable.clone(),
        );
        r.register(
            "queue_full_drops",
            "Chunks dropped because the next stage was full",
            self.queue_full_drops.clone(),
        );
        r.register(
            "attached_processes",
            "Processes with probes attached",
            self.attached_processes.clone(),
        );
        r.register(
            "attach_failures",
            "Failed attempts to attach to a process",
            self.attach_failures.clone(),
        );
        r.register(
            "connections",
            "TLS connections first seen",
            self.connections_seen.clone(),
        );
        r.register(
            "connections_evicted",
            "Connections forgotten because the connection table was full",
            self.connections_evicted.clone(),
        );
        r.register(
            "open_connections",
            "TLS connections currently tracked",
            self.open_connections.clone(),
        );
        r.register(
            "header_blocks",
            "Decoded HTTP/2 header blocks from the header-level hooks",
            self.header_blocks.clone(),
        );
        r.register(
            "header_fields_dropped",
            "Header fields the hooks saw but could not copy (count, length or block size limits)",
            self.header_fields_dropped.clone(),
        );
        r.register(
            "header_blocks_failed",
            "Header blocks lost in the kernel (unreadable Go memory or ring buffer full)",
            self.header_blocks_failed.clone(),
        );
        r.register(
            "header_hooks_skipped",
            "Header hook hits that returned at once because the wire decoder knew the connection's HPACK table",
            self.header_hooks_skipped.clone(),
        );
        r.register(
            "header_hook_switches",
            "Per-connection header hooks switched off (state=off: the wire decoder knows the HPACK tables) or back on",
            self.header_hook_switches.clone(),
        );
        r.register(
            "header_hooks_unavailable",
            "Processes attached without the HTTP/2 header hooks (TLS capture only)",
            self.header_hooks_unavailable.clone(),
        );
        r.register(
            "newer_go_release_attaches",
            "Processes attached whose Go release is newer than the offsets table (TLS capture only, no header hooks)",
            self.newer_than_offsets_table.clone(),
        );
        r.register(
            "probe_hits",
            "Uprobe hits by probe: each is a trap into the kernel inside a thread of the traced process",
            self.probe_hits.clone(),
        );
        r.register(
            "probe_run_seconds",
            "Time inside each probe's eBPF program, as the kernel accounts it: counted only while BPF run-time statistics are on (--probe-run-time or sysctl kernel.bpf_stats_enabled=1); the trap around each hit is not included",
            self.probe_run_seconds.clone(),
        );
    }

    /// Brings the kernel-side counters (monotonic sums) into the registry's counters.
    pub fn sync_kernel_counters(&self, totals: &[u64; KERNEL_COUNTER_SLOTS as usize]) {
        let total = |counter: KernelCounter| totals[counter as usize];
        raise(&self.ringbuf_full_drops, total(KernelCounter::RingbufFull));
        raise(
            &self.payload_read_failures,
            total(KernelCounter::PayloadReadFailed),
        );
        raise(
            &self.read_arguments_unreadable,
            total(KernelCounter::ReadArgumentsUnreadable),
        );
        raise(
            &self.read_records_unreadable,
            total(KernelCounter::ReadRecordUnreadable),
        );
        raise(
            &self.header_blocks_failed,
            total(KernelCounter::HeaderBlocksFailed),
        );
        raise(
            &self.header_hooks_skipped,
            total(KernelCounter::HeaderHooksSkipped),
        );
    }

    /// Brings the kernel's per-probe hit sums (in `Probe::ALL` order) into `probe_hits`.
    pub fn sync_probe_hits(&self, hits: &[u64; PROBE_SLOTS as usize]) {
        for (probe, total) in Probe::ALL.iter().zip(hits) {
            let labels = ProbeLabels {
                probe: probe.program(),
            };
            raise(&self.probe_hits.get_or_create(&labels), *total);
        }
    }

    /// Brings the kernel's per-program run time (ns since load, in `Probe::ALL` order) into
    /// `probe_run_seconds`.
    pub fn sync_probe_run_time(&self, run_time_ns: &[u64; PROBE_SLOTS as usize]) {
        for (probe, total_ns) in Probe::ALL.iter().zip(run_time_ns) {
            let counter = self.probe_run_seconds.get_or_create(&ProbeLabels {
                probe: probe.program(),
            });
            let total = *total_ns as f64 / 1e9;
            let current = counter.get();
            if total > current {
                counter.inc_by(total - current);
            }
        }
    }

    /// Total uprobe hits so far (all probes).
    pub fn total_probe_hits(&self) -> u64 {
        Probe::ALL
            .iter()
            .map(|probe| {
                self.probe_hits
                    .get_or_create(&ProbeLabels {
                        probe: probe.program(),
                    })
                    .get()
            })
            .sum()
    }

    /// One line for logs and for the end of a capture.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "events": self.events.get(),
            "captured_bytes": self.bytes_captured.get(),
            "not_captured_bytes": self.bytes_not_captured.get(),
            "malformed_events": self.malformed_events.get(),
            "ringbuf_full_drops": self.ringbuf_full_drops.get(),
            "payload_read_failures": self.payload_read_failures.get(),
            "read_arguments_unreadable": self.read_arguments_unreadable.get(),
            "read_records_unreadable": self.read_records_unreadable.get(),
            "probe_hits": self.total_probe_hits(),
            "queue_full_drops": self.queue_full_drops.get(),
            "attached_processes": self.attached_processes.get(),
            "attach_failures": self.attach_failures.get(),
            "connections": self.connections_seen.get(),
            "connections_evicted": self.connections_evicted.get(),
            "header_blocks": self.header_blocks.get(),
            "header_fields_dropped": self.header_fields_dropped.get(),
            "header_blocks_failed": self.header_blocks_failed.get(),
            "header_hooks_skipped": self.header_hooks_skipped.get(),
            "header_hooks_unavailable": self.header_hooks_unavailable.get(),
            "newer_go_release_attaches": self.newer_than_offsets_table.get(),
        })
    }
}

/// Raises a counter to a monotonic total kept elsewhere (a kernel map).
fn raise(counter: &Counter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_run_time_follows_the_kernel_in_seconds_and_never_falls() {
        let metrics = CaptureMetrics::default();
        let mut run_time = [0u64; PROBE_SLOTS as usize];
        run_time[0] = 1_500_000_000;
        metrics.sync_probe_run_time(&run_time);
        // A lower total (statistics reset by a reload) leaves the counter where it was.
        run_time[0] = 1_000;
        metrics.sync_probe_run_time(&run_time);
        let seconds = |probe: Probe| {
            metrics
                .probe_run_seconds
                .get_or_create(&ProbeLabels {
                    probe: probe.program(),
                })
                .get()
        };
        assert_eq!(seconds(Probe::ALL[0]), 1.5);
        assert_eq!(seconds(Probe::ALL[1]), 0.0);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(&format!(
                "apiscope_capture_probe_run_seconds_total{{probe=\"{}\"}} 1.5",
                Probe::ALL[0].program()
            )),
            "{text}"
        );
    }
}
