//! The decode side of `capture` and `replay`: chunks in, through the decode pipeline, to every
//! sink; the timers (open-request gauges once a second, idle eviction once a minute) run on the
//! capture clock, so a replay behaves as the live capture did.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use prometheus_client::registry::Registry;

use crate::capture::TlsChunk;
use crate::capture::hook_switches::HookSwitches;
use crate::filter::Filter;
use crate::k8s::ApiRequest;
use crate::pipeline::{DecodeConfig, DecodeMetrics, DecodePipeline};
use crate::policy::CapturePolicy;
use crate::sinks::live::LiveBus;
use crate::sinks::otlp::OtlpArgs;
use crate::sinks::request_metrics::RequestMetrics;
use crate::sinks::stdout::{OutputFormat, open_output, write_chunk};
use crate::sinks::{SinkConfig, Sinks};

const GAUGE_INTERVAL_NS: u64 = 1_000_000_000;
const IDLE_CHECK_INTERVAL_NS: u64 = 60_000_000_000;

pub struct Output {
    /// `--format chunks`: the raw chunks are written here and nothing is decoded.
    chunk_writer: Option<Box<dyn Write + Send>>,
    pipeline: DecodePipeline,
    metrics: Arc<DecodeMetrics>,
    sinks: Sinks,
    /// How long the sinks may take to deliver what is pending at shutdown.
    finish_deadline: Duration,
    requests: Vec<ApiRequest>,
    last_idle_check_ns: u64,
    last_gauge_update_ns: u64,
}

impl Output {
    pub fn open(
        output: &str,
        format: OutputFormat,
        decode: DecodeConfig,
        otlp: &OtlpArgs,
        finish_deadline: Duration,
        filter: Option<Filter>,
        live: Option<Arc<LiveBus>>,
    ) -> Result<Self> {
        // The capture clock's offset to the wall clock: set by the caller once known
        // (`set_realtime_offset`); a replay reads it from the recording.
        let realtime_offset_ns = 0;
        if filter.is_some() && format == OutputFormat::Chunks {
            anyhow::bail!("--filter selects requests; --format chunks writes undecoded chunks");
        }
        // A bad policy file stops the start, before anything is created or captured.
        let policy = CapturePolicy::from_flag(decode.capture_policy.as_deref())?;
        let sinks = Sinks::from_config(&SinkConfig {
            output,
            format,
            otlp,
            kubernetes_version: decode.kubernetes_version,
            filter,
            live,
        })?;
        let chunk_writer = match format {
            OutputFormat::Chunks => Some(open_output(output)?),
            OutputFormat::Json | OutputFormat::Table => None,
        };
        Ok(Output {
            chunk_writer,
            pipeline: DecodePipeline::with_policy(decode, realtime_offset_ns, policy),
            metrics: Arc::new(DecodeMetrics::default()),
            sinks,
            finish_deadline,
            requests: Vec::new(),
            last_idle_check_ns: 0,
            last_gauge_update_ns: 0,
        })
    }

    /// The decode stages' metrics and every sink's, for the `/metrics` endpoint.
    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        self.sinks.register(registry);
    }

    pub fn request_metrics(&self) -> Arc<RequestMetrics> {
        self.sinks.request_metrics().clone()
    }

    /// Live capture: the decoder tells `switches` which connections need the header hooks.
    /// `--format chunks` decodes nothing, so its hooks all stay on.
    pub fn report_hook_switches(&mut self, switches: Arc<HookSwitches>) {
        if self.chunk_writer.is_none() {
            self.pipeline.report_hook_switches(switches);
        }
    }

    pub fn set_realtime_offset(&mut self, realtime_offset_ns: i64) {
        self.pipeline.set_realtime_offset(realtime_offset_ns);
    }

    pub fn chunk(&mut self, chunk: &TlsChunk) -> Result<()> {
        if let Some(out) = self.chunk_writer.as_mut() {
            return write_chunk(out, chunk);
        }
        self.pipeline.push(chunk, &self.metrics, &mut self.requests);
        if chunk.timestamp_ns.saturating_sub(self.last_gauge_update_ns) > GAUGE_INTERVAL_NS {
            self.last_gauge_update_ns = chunk.timestamp_ns;
            self.refresh_gauges();
        }
        if chunk.timestamp_ns.saturating_sub(self.last_idle_check_ns) > IDLE_CHECK_INTERVAL_NS {
            self.last_idle_check_ns = chunk.timestamp_ns;
            self.pipeline
                .evict_idle(chunk.timestamp_ns, &self.metrics, &mut self.requests);
        }
        self.send_requests()
    }

    /// Makes what the sinks were sent since the last flush visible (end of a batch).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(out) = self.chunk_writer.as_mut() {
            out.flush()?;
        }
        self.sinks.flush()
    }

    /// Recomputes the open-request gauges now (also when no chunk came for a while).
    pub fn refresh_gauges(&mut self) {
        let open = self.pipeline.open_requests();
        self.sinks.tick(&open);
    }

    fn send_requests(&mut self) -> Result<()> {
        for request in self.requests.drain(..) {
            self.sinks.send(&request)?;
        }
        Ok(())
    }

    /// Ends every open exchange (reported incomplete) and shuts the sinks down.
    pub fn finish(mut self) -> Result<()> {
        self.pipeline.finish(&self.metrics, &mut self.requests);
        self.refresh_gauges();
        self.send_requests()?;
        if let Some(out) = self.chunk_writer.as_mut() {
            out.flush()?;
        }
        self.sinks.finish(self.finish_deadline)
    }
}
