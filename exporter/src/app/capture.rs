//! `apiscope capture`: attaches, hands ring-buffer batches to the decode thread, serves
//! `/metrics`, and stops on SIGINT, SIGTERM or `--duration`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use tracing::info;

use super::output::Output;
use super::signals::stop_signal;
use crate::capture::config::CaptureConfig;
use crate::capture::hook_switches::HookSwitches;
use crate::capture::metrics::CaptureMetrics;
use crate::capture::queue::chunk_queue;
use crate::capture::run::{FLUSH_GRACE, run_capture};
use crate::capture::tracer::ProbePoints;
use crate::k8s::release::KubernetesRelease;
use crate::record::PcapngWriter;
use crate::sinks::live::LiveBus;
use crate::sinks::live::args::LiveUiArgs;
use crate::sinks::prometheus::serve_metrics;

/// How long `capture` lets the sinks deliver at shutdown: within FLUSH_GRACE, which bounds the
/// whole output side.
pub const CAPTURE_SINK_DEADLINE: Duration = Duration::from_secs(3);

pub async fn capture(
    config: CaptureConfig,
    mut output: Output,
    record: Option<PathBuf>,
    metrics_address: Option<SocketAddr>,
    duration: Option<Duration>,
    live: Option<(LiveUiArgs, Arc<LiveBus>)>,
) -> Result<()> {
    let metrics = Arc::new(CaptureMetrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    output.register(&mut registry);
    let metrics_server = match metrics_address {
        Some(address) => Some(serve_metrics(address, Arc::new(registry)).await?.1),
        None => None,
    };
    let live_server = match &live {
        Some((args, bus)) => args.serve(bus).await?.map(|(_, task)| task),
        None => None,
    };
    let (sender, mut receiver) = chunk_queue(
        config.queue_capacity,
        usize::try_from(config.queue_bytes).unwrap_or(usize::MAX),
    );
    let hook_switches = Arc::new(HookSwitches::default());
    output.report_hook_switches(hook_switches.clone());
    let request_metrics = output.request_metrics();
    let mut recording = record.as_deref().map(PcapngWriter::create).transpose()?;
    // Decoding and output run on their own thread: they must not stall the ring-buffer reader.
    let runtime = tokio::runtime::Handle::current();
    let writer = tokio::task::spawn_blocking(move || -> Result<()> {
        loop {
            // Waits at most a second, so the open-request gauges stay fresh on a quiet apiserver.
            let next = runtime.block_on(tokio::time::timeout(
                Duration::from_secs(1),
                receiver.recv(),
            ));
            match next {
                Ok(Some(batch)) => {
                    for chunk in &batch {
                        if let Some(recording) = recording.as_mut() {
                            recording.write_chunk(chunk)?;
                        }
                        output.chunk(chunk)?;
                    }
                    // Requests decoded from the batch become visible together: one write.
                    output.flush()?;
                }
                Ok(None) => break,
                Err(_quiet_second) => output.refresh_gauges(),
            }
        }
        if let Some(recording) = recording.as_mut() {
            recording.flush()?;
        }
        output.finish()
    });
    let stop = async move {
        let timeout = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop_signal() => {}
            _ = timeout => info!("duration reached: stopping"),
        }
    };
    // The release's labelling rules, from the binary's build info unless --kubernetes-version
    // fixed them (and before the traffic's loopback User-Agent could tell).
    let on_attach = move |pid: u32, points: &ProbePoints| {
        if request_metrics.release_fixed() {
            return;
        }
        let version = |module: &str| points.module_versions.get(module).map(String::as_str);
        if let Some(release) = KubernetesRelease::from_build_info(version) {
            info!(pid, release = %release, "Kubernetes release from the build info");
            request_metrics.set_release(release);
        }
    };
    let result = run_capture(
        config,
        metrics.clone(),
        sender,
        hook_switches,
        on_attach,
        stop,
    )
    .await;
    tokio::time::timeout(FLUSH_GRACE, writer)
        .await
        .context("output did not finish in time")?
        .context("output task")??;
    info!(summary = %metrics.summary(), "capture finished");
    if let Some(server) = metrics_server {
        server.abort();
    }
    if let Some(server) = live_server {
        server.abort();
    }
    result
}
