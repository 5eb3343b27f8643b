//! The live capture loop: keeps probes attached to the target processes as they come and go,
//! drains the ring buffer, and hands chunks to the next stage through a bounded queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use super::chunk::{ChunkEventKind, TlsChunk};
use super::config::CaptureConfig;
use super::discovery::{diff_targets, find_targets};
use super::hook_switches::{HookState, HookSwitches};
use super::metrics::CaptureMetrics;
use super::queue::ChunkSender;
use super::tracer::{ConnectionTable, ProbePoints, Tracer, parse_record};

/// Runs until `stop` resolves, sending chunks to `chunks`, a batch per drain. When the receiver
/// lags, chunks are dropped and counted rather than letting the ring buffer fill. The decoder's
/// `hook_switches` reach the kernel side at each drain. `on_attach` hears of each process
/// attached, with what its binary told.
pub async fn run_capture(
    config: CaptureConfig,
    metrics: Arc<CaptureMetrics>,
    chunks: ChunkSender,
    hook_switches: Arc<HookSwitches>,
    mut on_attach: impl FnMut(u32, &ProbePoints),
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mut tracer = Tracer::load(&config, metrics.clone())?;
    let ring = tracer.take_ring_buffer()?;
    // aya's RingBuf owns its fd for as long as the AsyncFd lives, which is what `new` assumes.
    #[allow(deprecated)]
    let mut ring = AsyncFd::new(ring).context("polling the ring buffer")?;
    let mut connections = ConnectionTable::new(config.max_connections, metrics.clone());
    let selector = config.selector();
    let proc_root = std::path::Path::new("/proc");
    let mut rescan = tokio::time::interval(config.rescan_interval);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting_logged = false;
    // Most events are written without waking us (see --ring-wakeup-bytes): drain on a timer.
    let mut drain_tick = tokio::time::interval(config.ring_drain_interval);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);

    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = rescan.tick() => {
                let current = find_targets(&selector, proc_root);
                let changes = diff_targets(&tracer.attached_targets(), &current);
                for pid in changes.ended {
                    info!(pid, "target process ended; detaching");
                    tracer.detach(pid);
                    connections.forget_process(pid);
                }
                for target in changes.started {
                    match tracer.attach(&target) {
                        Ok(attached) => {
                            let points = &attached.points;
                            info!(
                                pid = target.pid, exe = %target.exe.display(), go = %points.go_version,
                                reads = %points.reads,
                                header_hooks = attached.header_hooks.is_ok(), "attached"
                            );
                            on_attach(target.pid, points);
                            match (&attached.header_hooks, &points.header_hooks) {
                                (Ok(()), Ok(hooks)) => info!(
                                    pid = target.pid,
                                    x_net = hooks.xnet_version.as_deref().unwrap_or("unknown (vendored)"),
                                    offsets = ?hooks.offsets_source,
                                    responses = if hooks.response_from_header_map { "header map (1 hit)" } else { "field by field" },
                                    "HTTP/2 header hooks attached"
                                ),
                                (Err(why), _) | (_, Err(why)) => warn!(
                                    pid = target.pid, reason = %why,
                                    "HTTP/2 header hooks unavailable; TLS capture continues"
                                ),
                            }
                        }
                        Err(e) => {
                            metrics.attach_failures.inc();
                            warn!(pid = target.pid, error = format!("{e:#}"), "cannot attach");
                        }
                    }
                }
                if tracer.attached_targets().is_empty() && !waiting_logged {
                    info!(selector = ?selector, "waiting for a target process");
                }
                waiting_logged = tracer.attached_targets().is_empty();
                sync_kernel_counters(&tracer, &metrics);
            }
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), &mut connections, &metrics, &chunks, &hook_switches);
                tracer.apply_hook_switches(hook_switches.take());
            }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut connections, &metrics, &chunks, &hook_switches);
                guard.clear_ready();
            }
        }
    }
    // Whatever is already in the ring buffer still belongs to the capture.
    drain(
        ring.get_mut(),
        &mut connections,
        &metrics,
        &chunks,
        &hook_switches,
    );
    sync_kernel_counters(&tracer, &metrics);
    for pid in tracer.attached_targets().into_keys() {
        tracer.detach(pid);
    }
    Ok(())
}

fn drain(
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    connections: &mut ConnectionTable,
    metrics: &CaptureMetrics,
    chunks: &ChunkSender,
    hook_switches: &HookSwitches,
) {
    let mut batch: Vec<TlsChunk> = Vec::new();
    let send = |batch: &mut Vec<TlsChunk>| {
        let dropped = chunks.send(std::mem::take(batch));
        metrics.queue_full_drops.inc_by(dropped.len() as u64);
        // The decoder will miss these bytes without noticing: their connections need the hooks.
        for chunk in &dropped {
            hook_switches.switch(&chunk.connection, HookState::On);
        }
    };
    while let Some(record) = ring.next() {
        let Ok((header, payload)) = parse_record(&record) else {
            metrics.malformed_events.inc();
            continue;
        };
        metrics.events.inc();
        let Some(chunk) = connections.chunk(&header, payload) else {
            metrics.malformed_events.inc();
            continue;
        };
        if let ChunkEventKind::Headers { dropped_fields, .. } = &chunk.kind {
            // Decoded header blocks are not TLS stream bytes: kept out of the byte counters.
            metrics.header_blocks.inc();
            metrics
                .header_fields_dropped
                .inc_by(u64::from(*dropped_fields));
        } else {
            metrics.bytes_captured.inc_by(payload.len() as u64);
            metrics
                .bytes_not_captured
                .inc_by(u64::from(header.len) - payload.len() as u64);
        }
        batch.push(chunk);
        if batch.len() >= MAX_BATCH_CHUNKS {
            send(&mut batch);
        }
    }
    send(&mut batch);
}

/// Most chunks handed over in one batch: a full ring buffer is drained in several, so the
/// decoder starts on the first while the rest are read.
const MAX_BATCH_CHUNKS: usize = 512;

fn sync_kernel_counters(tracer: &Tracer, metrics: &CaptureMetrics) {
    match tracer.kernel_counters() {
        Ok(totals) => metrics.sync_kernel_counters(&totals),
        Err(e) => warn!(error = %e, "cannot read kernel counters"),
    }
    match tracer.probe_hits() {
        Ok(hits) => metrics.sync_probe_hits(&hits),
        Err(e) => warn!(error = %e, "cannot read probe hit counters"),
    }
    match tracer.probe_run_time_ns() {
        Ok(run_time) => metrics.sync_probe_run_time(&run_time),
        Err(e) => warn!(error = %format!("{e:#}"), "cannot read probe run times"),
    }
}

/// How long the output side waits for the last chunks after capture stops.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);
