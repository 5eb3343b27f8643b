//! Sinks: where results leave apiscope. Every output is a [`Sink`], built from the configuration
//! into one list ([`Sinks`]) and fed the same [`ApiRequest`]s, plus a periodic tick with the
//! requests still open (for the gauges).
//!
//! - `stdout`: JSON lines or a table, on stdout or a file.
//! - `request_metrics`: the apiserver's request metrics and open-request gauges rebuilt from
//!   what was seen (Prometheus, mirrored into OTLP metrics).
//! - `otlp`: spans and log records over OTLP (`attributes`: the registry both share).
//! - `prometheus`: the `/metrics` endpoint serving every registered metric.
//! - `live`: the live view's bus (a sink) and its WebSocket server (`capture --serve-ui`).

pub mod attributes;
#[cfg(test)]
mod fixtures;
pub mod live;
pub mod otlp;
pub mod prometheus;
pub mod request_metrics;
mod sink;
pub mod stdout;

pub use sink::Sink;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use prometheus_client::registry::Registry;

use crate::k8s::ApiRequest;
use crate::k8s::open_requests::OpenRequest;
use crate::k8s::release::KubernetesRelease;
use otlp::{OtlpArgs, OtlpSink};
use request_metrics::RequestMetrics;
use stdout::{OutputFormat, RequestWriter};

/// What the sinks are built from (`capture` / `replay` flags).
pub struct SinkConfig<'a> {
    /// Where JSON lines or the table go ("-" for stdout).
    pub output: &'a str,
    pub format: OutputFormat,
    pub otlp: &'a OtlpArgs,
    /// `--kubernetes-version`: fixes the request metrics' labelling rules.
    pub kubernetes_version: Option<KubernetesRelease>,
    /// `--serve-ui`: the bus the live view reads.
    pub live: Option<Arc<live::LiveBus>>,
}

/// Every configured sink, in the order requests reach them.
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    request_metrics: Arc<RequestMetrics>,
}

impl Sinks {
    pub fn from_config(config: &SinkConfig) -> Result<Sinks> {
        let otlp = OtlpSink::new(config.otlp)?;
        let mut metrics = RequestMetrics::default();
        if let Some(sink) = otlp.as_ref() {
            metrics = metrics.with_otel(&sink.meter());
        }
        let request_metrics = Arc::new(metrics);
        if let Some(release) = config.kubernetes_version {
            request_metrics.set_release(release);
        }
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(request_metrics.clone())];
        if let Some(otlp) = otlp {
            sinks.push(Box::new(otlp));
        }
        if let Some(bus) = &config.live {
            sinks.push(Box::new(live::LiveSink::new(bus.clone())));
        }
        // The raw chunk format prints chunks, not requests (the caller writes those).
        if config.format != OutputFormat::Chunks {
            sinks.push(Box::new(RequestWriter::open(config.output, config.format)?));
        }
        Ok(Sinks {
            sinks,
            request_metrics,
        })
    }

    /// The request metrics, shared: the capture sets the labelling rules' release once it has
    /// read the traced binary's build info.
    pub fn request_metrics(&self) -> &Arc<RequestMetrics> {
        &self.request_metrics
    }

    pub fn register(&self, registry: &mut Registry) {
        for sink in &self.sinks {
            sink.register(registry);
        }
    }

    pub fn send(&mut self, request: &ApiRequest) -> Result<()> {
        for sink in &mut self.sinks {
            sink.send(request)?;
        }
        Ok(())
    }

    pub fn tick(&mut self, open: &[OpenRequest]) {
        for sink in &mut self.sinks {
            sink.tick(open);
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        for sink in &mut self.sinks {
            sink.flush()?;
        }
        Ok(())
    }

    /// Finishes every sink, each within `deadline`; the first error is returned after all ran.
    pub fn finish(self, deadline: Duration) -> Result<()> {
        let mut first_error = None;
        for sink in self.sinks {
            if let Err(e) = sink.finish(deadline) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Sink for Arc<RequestMetrics> {
    fn send(&mut self, request: &ApiRequest) -> Result<()> {
        self.observe(request);
        Ok(())
    }

    fn tick(&mut self, open: &[OpenRequest]) {
        self.set_open_requests(open);
    }

    fn register(&self, registry: &mut Registry) {
        RequestMetrics::register(self, registry);
    }
}

impl Sink for OtlpSink {
    fn send(&mut self, request: &ApiRequest) -> Result<()> {
        OtlpSink::send(self, request);
        Ok(())
    }

    fn register(&self, registry: &mut Registry) {
        self.metrics().register(registry);
    }

    fn finish(self: Box<Self>, deadline: Duration) -> Result<()> {
        if !self.shutdown(deadline) {
            tracing::warn!(
                ?deadline,
                "OTLP export did not finish before the deadline; unsent telemetry is lost"
            );
        }
        Ok(())
    }
}
