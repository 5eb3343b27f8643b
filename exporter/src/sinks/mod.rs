//! Sinks: where results leave apiscope.
//!
//! - `stdout`: JSON lines or a table.
//! - `prometheus`: the `/metrics` endpoint.
//! - `attributes`: the one attribute registry spans and log records share.
//! - `request_metrics`: the apiserver's request metrics rebuilt from what was seen.
//! - `otlp`: spans, log records and metrics over OTLP.

pub mod attributes;
#[cfg(test)]
mod fixtures;
pub mod otlp;
pub mod prometheus;
pub mod request_metrics;
pub mod stdout;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use prometheus_client::registry::Registry;

use crate::k8s::ApiRequest;
use otlp::{OtlpArgs, OtlpSink};
use request_metrics::RequestMetrics;

/// Every telemetry sink an [`ApiRequest`] goes to: the request metrics always, OTLP if
/// configured. Called on the decode thread; nothing here blocks on the network.
#[derive(Debug)]
pub struct Sinks {
    pub metrics: Arc<RequestMetrics>,
    otlp: Option<OtlpSink>,
}

impl Sinks {
    pub fn new(otlp: &OtlpArgs) -> Result<Sinks> {
        let otlp = OtlpSink::new(otlp)?;
        let mut metrics = RequestMetrics::default();
        if let Some(sink) = otlp.as_ref() {
            metrics = metrics.with_otel(&sink.meter());
        }
        Ok(Sinks {
            metrics: Arc::new(metrics),
            otlp,
        })
    }

    /// Registers the request metrics and, with OTLP on, the export accounting.
    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        if let Some(otlp) = self.otlp.as_ref() {
            otlp.metrics().register(registry);
        }
    }

    pub fn otlp(&self) -> Option<&OtlpSink> {
        self.otlp.as_ref()
    }

    pub fn send(&self, request: &ApiRequest) {
        self.metrics.observe(request);
        if let Some(otlp) = self.otlp.as_ref() {
            otlp.send(request);
        }
    }

    /// Flushes OTLP within `timeout`; false if the deadline passed with telemetry unsent.
    pub fn finish(self, timeout: Duration) -> bool {
        match self.otlp {
            Some(otlp) => otlp.shutdown(timeout),
            None => true,
        }
    }
}
