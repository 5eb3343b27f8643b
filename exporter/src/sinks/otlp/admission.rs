//! Admission in front of the SDK's batch processors: at most `--otlp-max-queue-size` items per
//! signal in flight, the rest dropped and counted before the SDK queue (see the module comment of
//! `sinks::otlp`).

use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanProcessor};

use super::accounting::SignalCounters;

/// Admission in front of the SDK's batch span processor (see the module comment).
#[derive(Debug)]
pub(super) struct AdmittingSpanProcessor {
    pub(super) inner: BatchSpanProcessor,
    pub(super) counters: SignalCounters,
    pub(super) capacity: u64,
    pub(super) wait: Option<Duration>,
}

impl SpanProcessor for AdmittingSpanProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }
    fn on_end(&self, span: SpanData) {
        if self.counters.admit(self.capacity, self.wait) {
            self.inner.on_end(span);
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
pub(super) struct AdmittingLogProcessor {
    pub(super) inner: BatchLogProcessor,
    pub(super) counters: SignalCounters,
    pub(super) capacity: u64,
    pub(super) wait: Option<Duration>,
}

impl LogProcessor for AdmittingLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &opentelemetry::InstrumentationScope) {
        if self.counters.admit(self.capacity, self.wait) {
            self.inner.emit(record, scope);
        }
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
