//! What happened to every item handed to the OTLP exporters: per-signal counters, shared by
//! the admission processors (in front of the SDK queues) and the counting exporters (behind them).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabel {
    signal: &'static str,
}

/// What happened to the telemetry apiscope handed to the OTLP exporters.
#[derive(Debug, Default)]
pub struct OtlpMetrics {
    exported: Family<SignalLabel, Counter>,
    failed: Family<SignalLabel, Counter>,
    dropped: Family<SignalLabel, Counter>,
    queued: Family<SignalLabel, Gauge>,
    pub(super) metric_export_failures: Counter,
}

impl OtlpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "apiscope_otlp_exported",
            "Spans / log records the collector accepted",
            self.exported.clone(),
        );
        registry.register(
            "apiscope_otlp_failed",
            "Spans / log records lost because the export failed after the exporter's retries (collector away, timeout, rejection)",
            self.failed.clone(),
        );
        registry.register(
            "apiscope_otlp_dropped",
            "Spans / log records dropped because the export queue was full (never sent)",
            self.dropped.clone(),
        );
        registry.register(
            "apiscope_otlp_queued",
            "Spans / log records queued or being exported",
            self.queued.clone(),
        );
        registry.register(
            "apiscope_otlp_metric_export_failures",
            "Metric exports that failed (metrics are cumulative: the next successful export carries the totals)",
            self.metric_export_failures.clone(),
        );
    }

    pub(super) fn signal(&self, signal: &'static str) -> SignalCounters {
        let label = SignalLabel { signal };
        SignalCounters {
            signal,
            exported: self.exported.get_or_create_owned(&label),
            failed: self.failed.get_or_create_owned(&label),
            dropped: self.dropped.get_or_create_owned(&label),
            queued: self.queued.get_or_create_owned(&label),
            in_flight: Arc::new(AtomicU64::new(0)),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn exported(&self, signal: &'static str) -> u64 {
        self.exported.get_or_create(&SignalLabel { signal }).get()
    }
    pub fn failed(&self, signal: &'static str) -> u64 {
        self.failed.get_or_create(&SignalLabel { signal }).get()
    }
    pub fn dropped(&self, signal: &'static str) -> u64 {
        self.dropped.get_or_create(&SignalLabel { signal }).get()
    }
    pub fn metric_export_failures(&self) -> u64 {
        self.metric_export_failures.get()
    }
}

/// One signal's counters, shared by its admission processor and its counting exporter.
#[derive(Clone, Debug)]
pub(super) struct SignalCounters {
    pub(super) signal: &'static str,
    pub(super) exported: Counter,
    pub(super) failed: Counter,
    pub(super) dropped: Counter,
    pub(super) queued: Gauge,
    /// Items handed to the SDK processor that the exporter has not returned yet.
    pub(super) in_flight: Arc<AtomicU64>,
    /// The last export failed: waiting for room would only wait for more failures.
    pub(super) failing: Arc<AtomicBool>,
}

impl SignalCounters {
    /// Admits one item if fewer than `capacity` are in flight; with `wait`, first waits that
    /// long for room, unless the collector is failing (then waiting cannot help).
    pub(super) fn admit(&self, capacity: u64, wait: Option<Duration>) -> bool {
        let deadline = wait.map(|w| std::time::Instant::now() + w);
        loop {
            let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
            if before < capacity {
                self.queued.inc();
                return true;
            }
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            match deadline {
                Some(deadline)
                    if std::time::Instant::now() < deadline
                        && !self.failing.load(Ordering::Acquire) =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => break,
            }
        }
        if self.dropped.inc() == 0 {
            warn!(
                signal = self.signal,
                "OTLP export queue full: dropping telemetry (see apiscope_otlp_dropped_total)"
            );
        }
        false
    }

    pub(super) fn done(&self, count: u64, ok: bool) {
        // Logged on state changes only: a collector that is away fails every export.
        let was_failing = self.failing.swap(!ok, Ordering::AcqRel);
        if !ok && !was_failing {
            warn!(
                signal = self.signal,
                "OTLP export failing (after retries); items are lost and counted in apiscope_otlp_failed_total"
            );
        } else if ok && was_failing {
            info!(signal = self.signal, "OTLP export recovered");
        }
        if ok {
            self.exported.inc_by(count);
        } else {
            self.failed.inc_by(count);
        }
        self.in_flight.fetch_sub(count, Ordering::AcqRel);
        self.queued.dec_by(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Counts what the wrapped span exporter returns.
#[derive(Debug)]
pub(super) struct CountingSpanExporter<E> {
    pub(super) inner: E,
    pub(super) counters: SignalCounters,
}

impl<E: SpanExporter> SpanExporter for CountingSpanExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len() as u64;
        let result = self.inner.export(batch).await;
        self.counters.done(count, result.is_ok());
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[derive(Debug)]
pub(super) struct CountingLogExporter<E> {
    pub(super) inner: E,
    pub(super) counters: SignalCounters,
}

impl<E: LogExporter> LogExporter for CountingLogExporter<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let count = batch.iter().count() as u64;
        let result = self.inner.export(batch).await;
        self.counters.done(count, result.is_ok());
        result
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

pub(super) struct CountingMetricExporter<E> {
    pub(super) inner: E,
    pub(super) failures: Counter,
}

impl<E> fmt::Debug for CountingMetricExporter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountingMetricExporter")
    }
}

impl<E: PushMetricExporter> PushMetricExporter for CountingMetricExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if result.is_err() {
            self.failures.inc();
        }
        result
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
