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
pub(crate) mod fixtures;
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

use crate::filter::{Filter, FilterMetrics};
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
    /// `--filter`: which requests reach the per-request outputs (the request metrics see all).
    pub filter: Option<Filter>,
    /// `--serve-ui`: the bus the live view reads.
    pub live: Option<Arc<live::LiveBus>>,
}

/// Every configured sink, in the order requests reach them: the request metrics see every
/// request; the per-request outputs (OTLP spans and logs, the JSON/table writer) only those the
/// filter keeps, so metrics stay complete whatever an operator chose to look at.
pub struct Sinks {
    request_metrics_sink: Box<dyn Sink>,
    per_request: Vec<Box<dyn Sink>>,
    request_metrics: Arc<RequestMetrics>,
    filter: Option<Filter>,
    filter_metrics: FilterMetrics,
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
        let mut per_request: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(otlp) = otlp {
            per_request.push(Box::new(otlp));
        }
        if let Some(bus) = &config.live {
            per_request.push(Box::new(live::LiveSink::new(bus.clone())));
        }
        // The raw chunk format prints chunks, not requests (the caller writes those).
        if config.format != OutputFormat::Chunks {
            per_request.push(Box::new(RequestWriter::open(config.output, config.format)?));
        }
        Ok(Sinks {
            request_metrics_sink: Box::new(request_metrics.clone()),
            per_request,
            request_metrics,
            // The empty filter keeps everything: no need to evaluate it per request.
            filter: config.filter.clone().filter(|f| !f.matches_all()),
            filter_metrics: FilterMetrics::default(),
        })
    }

    /// The request metrics, shared: the capture sets the labelling rules' release once it has
    /// read the traced binary's build info.
    pub fn request_metrics(&self) -> &Arc<RequestMetrics> {
        &self.request_metrics
    }

    pub fn register(&self, registry: &mut Registry) {
        self.filter_metrics.register(registry);
        self.request_metrics_sink.register(registry);
        for sink in &self.per_request {
            sink.register(registry);
        }
    }

    pub fn send(&mut self, request: &ApiRequest) -> Result<()> {
        self.request_metrics_sink.send(request)?;
        if let Some(filter) = &self.filter {
            if !filter.matches(request) {
                self.filter_metrics.requests_dropped.inc();
                return Ok(());
            }
        }
        for sink in &mut self.per_request {
            sink.send(request)?;
        }
        Ok(())
    }

    pub fn tick(&mut self, open: &[OpenRequest]) {
        self.request_metrics_sink.tick(open);
        for sink in &mut self.per_request {
            sink.tick(open);
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        self.request_metrics_sink.flush()?;
        for sink in &mut self.per_request {
            sink.flush()?;
        }
        Ok(())
    }

    /// Finishes every sink, each within `deadline`; the first error is returned after all ran.
    pub fn finish(self, deadline: Duration) -> Result<()> {
        let mut first_error = None;
        let sinks = std::iter::once(self.request_metrics_sink).chain(self.per_request);
        for sink in sinks {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter narrows the writer's output; the request metrics still count every request,
    /// and the requests kept out are counted.
    #[test]
    fn the_filter_narrows_the_writer_but_not_the_metrics() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("requests.jsonl");
        let output = path.to_str().expect("utf-8 path");
        let mut sinks = Sinks::from_config(&SinkConfig {
            output,
            format: OutputFormat::Json,
            otlp: &OtlpArgs::default(),
            kubernetes_version: None,
            filter: Some(Filter::parse("code >= 500").expect("filter")),
            live: None,
        })
        .expect("sinks");
        for code in [200, 500, 404] {
            let request = ApiRequest {
                verb: "get".into(),
                metric_verb: "GET".into(),
                method: "GET".into(),
                path: "/api/v1/namespaces/default/pods/a".into(),
                resource: "pods".into(),
                code: Some(code),
                ..ApiRequest::default()
            };
            sinks.send(&request).expect("send");
        }
        sinks.flush().expect("flush");
        let mut registry = Registry::default();
        sinks.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        sinks.finish(Duration::from_secs(1)).expect("finish");
        let written = std::fs::read_to_string(&path).expect("output");
        assert_eq!(written.lines().count(), 1, "{written}");
        assert!(written.contains(r#""code":500"#), "{written}");
        assert!(
            text.contains("apiscope_filter_requests_dropped_total 2"),
            "{text}"
        );
        let counted: f64 = text
            .lines()
            .filter(|l| l.starts_with("apiscope_nonresource_request_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(counted, 3.0, "{text}");
    }
}
