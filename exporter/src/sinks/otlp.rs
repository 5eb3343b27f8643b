//! OTLP sink: one SERVER span and one audit-event-shaped log record per [`ApiRequest`], plus the
//! request metrics' OTel mirror, sent with the OpenTelemetry SDK's batch processors and OTLP
//! exporters (gRPC or HTTP/protobuf).
//!
//! Never blocking the decode thread: spans and log records go into the SDK's bounded batch
//! queues with `try_send`. The SDK counts its own queue-full drops only in an internal log, so
//! apiscope admits at most `--otlp-max-queue-size` items per signal that have not yet come back
//! from the exporter (queued or being exported); anything past that is dropped *before* the SDK
//! queue and counted in `apiscope_otlp_dropped_total`. The SDK queue, which has the same
//! capacity, therefore never overflows, and every item is accounted for exactly once: exported,
//! failed (the exporter gave up after its retries) or dropped.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, Key, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord, SdkLogger,
    SdkLoggerProvider,
};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use super::attributes::{self, span_attributes, span_name};
use crate::k8s::ApiRequest;
use crate::k8s::api_request::{CaptureLevel, CapturedBody};
use crate::vocabulary::{Role, parse_duration};

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (collector port 4317); the endpoint is used as given.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (collector port 4318); `/v1/traces`, `/v1/logs` and
    /// `/v1/metrics` are appended to the endpoint.
    HttpProtobuf,
}

/// OTLP flags, shared by `capture` and `replay`.
#[derive(Args, Clone, Debug)]
pub struct OtlpArgs {
    /// Send spans, log records and metrics to this OTLP collector (e.g. http://127.0.0.1:4317).
    /// Off when not given.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    #[arg(long, value_enum, default_value = "grpc")]
    pub otlp_protocol: OtlpProtocol,
    /// Deadline of one export, retries included (the exporter retries with backoff within it).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub otlp_timeout: Duration,
    /// Extra request headers / gRPC metadata: key=value,key2=value2.
    #[arg(long, value_parser = parse_headers, default_value = "")]
    pub otlp_headers: Headers,
    /// Spans (and, separately, log records) waiting for export at most; more are dropped and
    /// counted in apiscope_otlp_dropped_total.
    #[arg(long, default_value_t = 4096)]
    pub otlp_max_queue_size: usize,
    /// Largest batch sent in one export.
    #[arg(long, default_value_t = 512)]
    pub otlp_max_export_batch_size: usize,
    /// How often queued spans/logs are sent, and how often metrics are exported.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub otlp_export_interval: Duration,
    /// `k8s.cluster.name` resource attribute.
    #[arg(long)]
    pub cluster_name: Option<String>,
    /// `k8s.node.name` / `host.name` resource attributes (default: the host name).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Wait (up to `otlp_timeout` per item) for room in a full export queue instead of dropping.
    /// For `replay`, where the input can wait; live capture must never wait.
    #[arg(skip)]
    pub block_when_full: bool,
}

impl Default for OtlpArgs {
    fn default() -> Self {
        OtlpArgs {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Grpc,
            otlp_timeout: Duration::from_secs(10),
            otlp_headers: Headers::default(),
            otlp_max_queue_size: 4096,
            otlp_max_export_batch_size: 512,
            otlp_export_interval: Duration::from_secs(5),
            cluster_name: None,
            node_name: None,
            block_when_full: false,
        }
    }
}

/// Parsed `--otlp-headers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

pub fn parse_headers(text: &str) -> Result<Headers, String> {
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{pair:?}: empty header name"));
        }
        out.push((key.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Headers(out))
}

/// The W3C `traceparent` a client sent, as a remote parent; `None` when absent or invalid
/// (version `ff`, wrong lengths, upper-case or non-hex digits, all-zero ids), as the W3C Trace
/// Context spec says a receiver must treat it.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more (forward
    // compatibility), but the first four keep their meaning.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !lower_hex(trace_id, 32) || !lower_hex(parent_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(parent_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::NONE,
    ))
}

/// Unix nanoseconds as a `SystemTime` (the captured wall-clock times, not export time).
pub fn system_time(unix_nano: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_nano)
}

// --- accounting --------------------------------------------------------------------------------

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
    metric_export_failures: Counter,
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

    fn signal(&self, signal: &'static str) -> SignalCounters {
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
struct SignalCounters {
    signal: &'static str,
    exported: Counter,
    failed: Counter,
    dropped: Counter,
    queued: Gauge,
    /// Items handed to the SDK processor that the exporter has not returned yet.
    in_flight: Arc<AtomicU64>,
    /// The last export failed: waiting for room would only wait for more failures.
    failing: Arc<AtomicBool>,
}

impl SignalCounters {
    /// Admits one item if fewer than `capacity` are in flight; with `wait`, first waits that
    /// long for room, unless the collector is failing (then waiting cannot help).
    fn admit(&self, capacity: u64, wait: Option<Duration>) -> bool {
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

    fn done(&self, count: u64, ok: bool) {
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
struct CountingSpanExporter<E> {
    inner: E,
    counters: SignalCounters,
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
struct CountingLogExporter<E> {
    inner: E,
    counters: SignalCounters,
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

struct CountingMetricExporter<E> {
    inner: E,
    failures: Counter,
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

/// Admission in front of the SDK's batch span processor (see the module comment).
#[derive(Debug)]
struct AdmittingSpanProcessor {
    inner: BatchSpanProcessor,
    counters: SignalCounters,
    capacity: u64,
    wait: Option<Duration>,
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
struct AdmittingLogProcessor {
    inner: BatchLogProcessor,
    counters: SignalCounters,
    capacity: u64,
    wait: Option<Duration>,
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

// --- the sink ----------------------------------------------------------------------------------

/// Spans, log records and the OTel metric pipeline of one OTLP destination.
pub struct OtlpSink {
    tracer: SdkTracer,
    logger: SdkLogger,
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
    meter_provider: SdkMeterProvider,
    metrics: Arc<OtlpMetrics>,
    /// tonic needs a Tokio reactor for its connections; the SDK's export threads are not Tokio
    /// threads, so gRPC export runs on this small runtime (kept alive as long as the sink).
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink").finish_non_exhaustive()
    }
}

const SCOPE: &str = "apiscope";

impl OtlpSink {
    /// Builds the exporters and providers for `args`; `None` when no endpoint is configured.
    pub fn new(args: &OtlpArgs) -> Result<Option<OtlpSink>> {
        let Some(endpoint) = args.otlp_endpoint.clone() else {
            return Ok(None);
        };
        let metrics = Arc::new(OtlpMetrics::default());
        let capacity = args.otlp_max_queue_size.max(1);
        let batch = args.otlp_max_export_batch_size.clamp(1, capacity);
        let resource = resource(args);
        let wait = args.block_when_full.then_some(args.otlp_timeout);

        let runtime = match args.otlp_protocol {
            OtlpProtocol::Grpc => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("apiscope-otlp")
                    .enable_all()
                    .build()
                    .context("starting the OTLP gRPC runtime")?,
            ),
            OtlpProtocol::HttpProtobuf => None,
        };
        let _guard = runtime.as_ref().map(|r| r.enter());
        let exporters = Exporters::build(args, &endpoint)?;

        let spans = metrics.signal("traces");
        let span_processor = AdmittingSpanProcessor {
            inner: BatchSpanProcessor::builder(CountingSpanExporter {
                inner: exporters.spans,
                counters: spans.clone(),
            })
            .with_batch_config(
                opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_max_queue_size(capacity)
                    .with_max_export_batch_size(batch)
                    .with_scheduled_delay(args.otlp_export_interval)
                    .build(),
            )
            .build(),
            counters: spans,
            capacity: capacity as u64,
            wait,
        };
        let tracer_provider = SdkTracerProvider::builder()
            .with_span_processor(span_processor)
            // apiscope observes every request: the client's sampled flag does not decide.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(resource.clone())
            .build();

        let logs = metrics.signal("logs");
        let log_processor = AdmittingLogProcessor {
            inner: BatchLogProcessor::builder(CountingLogExporter {
                inner: exporters.logs,
                counters: logs.clone(),
            })
            .with_batch_config(
                opentelemetry_sdk::logs::BatchConfigBuilder::default()
                    .with_max_queue_size(capacity)
                    .with_max_export_batch_size(batch)
                    .with_scheduled_delay(args.otlp_export_interval)
                    .build(),
            )
            .build(),
            counters: logs,
            capacity: capacity as u64,
            wait,
        };
        let logger_provider = SdkLoggerProvider::builder()
            .with_log_processor(log_processor)
            .with_resource(resource.clone())
            .build();

        let reader = PeriodicReader::builder(CountingMetricExporter {
            inner: exporters.metrics,
            failures: metrics.metric_export_failures.clone(),
        })
        .with_interval(args.otlp_export_interval)
        .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();

        Ok(Some(OtlpSink {
            tracer: tracer_provider.tracer(SCOPE),
            logger: logger_provider.logger(SCOPE),
            tracer_provider,
            logger_provider,
            meter_provider,
            metrics,
            runtime,
        }))
    }

    /// The meter the request metrics mirror into.
    pub fn meter(&self) -> Meter {
        self.meter_provider.meter(SCOPE)
    }

    pub fn metrics(&self) -> &Arc<OtlpMetrics> {
        &self.metrics
    }

    /// Emits the request's span and log record (nothing at capture level `None`). Never blocks:
    /// both go into bounded queues.
    pub fn send(&self, request: &ApiRequest) {
        if request.capture_level == CaptureLevel::None {
            return;
        }
        let attributes = span_attributes(request);
        let span_context = self.emit_span(request, attributes.clone());
        self.emit_log(request, attributes, &span_context);
    }

    fn emit_span(&self, request: &ApiRequest, attributes: Vec<KeyValue>) -> SpanContext {
        let parent = request
            .traceparent
            .as_deref()
            .and_then(parse_traceparent)
            .map(|remote| Context::new().with_remote_span_context(remote))
            .unwrap_or_default();
        let kind = match request.role {
            Role::Server => SpanKind::Server,
            Role::Client => SpanKind::Client,
        };
        let mut span = self
            .tracer
            .span_builder(span_name(request))
            .with_kind(kind)
            .with_start_time(system_time(request.start_unix_nano))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        if let Some(status) = span_status(request) {
            span.set_status(status);
        }
        let context = span.span_context().clone();
        span.end_with_timestamp(system_time(
            request.end_unix_nano.max(request.start_unix_nano),
        ));
        context
    }

    fn emit_log(&self, request: &ApiRequest, attributes: Vec<KeyValue>, span: &SpanContext) {
        let mut record = self.logger.create_log_record();
        record.set_event_name("k8s.apiserver.request");
        record.set_timestamp(system_time(request.end_unix_nano));
        let (number, text) = severity(request);
        record.set_severity_number(number);
        record.set_severity_text(text);
        record.set_body(audit_event(request));
        record.add_attributes(
            attributes
                .into_iter()
                .map(|kv| (kv.key, any_value(kv.value))),
        );
        record.set_trace_context(span.trace_id(), span.span_id(), Some(span.trace_flags()));
        self.logger.emit(record);
    }

    /// Flushes and shuts the providers down, waiting at most `timeout` in all (a collector that
    /// is away must not hold up SIGTERM handling). Returns false if the deadline passed.
    pub fn shutdown(self, timeout: Duration) -> bool {
        let OtlpSink {
            tracer_provider,
            logger_provider,
            meter_provider,
            runtime,
            metrics,
            ..
        } = self;
        let (done, wait) = std::sync::mpsc::channel();
        // The three providers shut down in parallel threads: each SDK call has its own internal
        // wait, and we only bound the total.
        for (name, shutdown) in [
            (
                "traces",
                Box::new(move || tracer_provider.shutdown_with_timeout(timeout))
                    as Box<dyn FnOnce() -> OTelSdkResult + Send>,
            ),
            (
                "logs",
                Box::new(move || logger_provider.shutdown_with_timeout(timeout)),
            ),
            (
                "metrics",
                Box::new(move || meter_provider.shutdown_with_timeout(timeout)),
            ),
        ] {
            let done = done.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("otlp-shutdown-{name}"))
                .spawn(move || {
                    let result = shutdown();
                    let _ = done.send((name, result));
                });
            if let Err(e) = spawned {
                warn!(signal = name, error = %e, "could not start the OTLP shutdown thread");
            }
        }
        drop(done);
        let deadline = std::time::Instant::now() + timeout;
        let mut finished = 0;
        while finished < 3 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match wait.recv_timeout(left) {
                Ok((name, Err(e))) => {
                    finished += 1;
                    warn!(signal = name, error = %e, "OTLP shutdown did not flush everything");
                }
                Ok(_) => finished += 1,
                Err(_) => break,
            }
        }
        for signal in ["traces", "logs"] {
            info!(
                signal,
                exported = metrics.exported(signal),
                failed = metrics.failed(signal),
                dropped = metrics.dropped(signal),
                "OTLP export totals"
            );
        }
        if let Some(runtime) = runtime {
            // Not `drop`: this may run on a thread of another runtime, where a blocking drop
            // is refused; in-flight gRPC calls are abandoned (their items count as failed).
            runtime.shutdown_background();
        }
        finished == 3
    }
}

struct Exporters {
    spans: opentelemetry_otlp::SpanExporter,
    logs: opentelemetry_otlp::LogExporter,
    metrics: opentelemetry_otlp::MetricExporter,
}

impl Exporters {
    fn build(args: &OtlpArgs, endpoint: &str) -> Result<Exporters> {
        let timeout = args.otlp_timeout;
        match args.otlp_protocol {
            OtlpProtocol::Grpc => {
                let mut headers = hyper::HeaderMap::new();
                for (key, value) in &args.otlp_headers.0 {
                    let name = hyper::header::HeaderName::from_bytes(key.as_bytes())
                        .with_context(|| format!("--otlp-headers: bad key {key:?}"))?;
                    let value = hyper::header::HeaderValue::from_str(value)
                        .with_context(|| format!("--otlp-headers: bad value for {key}"))?;
                    headers.insert(name, value);
                }
                let metadata =
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers);
                Ok(Exporters {
                    spans: opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .with_timeout(timeout)
                        .with_metadata(metadata.clone())
                        .build()?,
                    logs: opentelemetry_otlp::LogExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .with_timeout(timeout)
                        .with_metadata(metadata.clone())
                        .build()?,
                    metrics: opentelemetry_otlp::MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(endpoint)
                        .with_timeout(timeout)
                        .with_metadata(metadata)
                        .build()?,
                })
            }
            OtlpProtocol::HttpProtobuf => {
                let base = endpoint.trim_end_matches('/');
                let headers: HashMap<String, String> =
                    args.otlp_headers.0.iter().cloned().collect();
                Ok(Exporters {
                    spans: opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/traces"))
                        .with_timeout(timeout)
                        .with_headers(headers.clone())
                        .build()?,
                    logs: opentelemetry_otlp::LogExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/logs"))
                        .with_timeout(timeout)
                        .with_headers(headers.clone())
                        .build()?,
                    metrics: opentelemetry_otlp::MetricExporter::builder()
                        .with_http()
                        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                        .with_endpoint(format!("{base}/v1/metrics"))
                        .with_timeout(timeout)
                        .with_headers(headers)
                        .build()?,
                })
            }
        }
    }
}

/// `service.name=kube-apiserver` (the spans describe the apiserver's work, not apiscope's),
/// node and cluster names. `process.pid` is a span attribute instead: one exporter may trace
/// several apiserver processes, and their pids are only known once they are attached.
fn resource(args: &OtlpArgs) -> Resource {
    let node = args
        .node_name
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(host_name);
    let mut attributes = vec![KeyValue::new("telemetry.distro.name", "apiscope")];
    if let Some(node) = node {
        attributes.push(KeyValue::new("host.name", node.clone()));
        attributes.push(KeyValue::new("k8s.node.name", node));
    }
    if let Some(cluster) = args.cluster_name.clone().filter(|c| !c.is_empty()) {
        attributes.push(KeyValue::new("k8s.cluster.name", cluster));
    }
    Resource::builder()
        .with_service_name("kube-apiserver")
        .with_attributes(attributes)
        .build()
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// Server spans: Error for 5xx, unset otherwise (4xx is the client's problem, per HTTP semconv).
/// Client spans (the apiserver calling out): Error for 4xx too. No response at all: Error.
pub fn span_status(request: &ApiRequest) -> Option<Status> {
    let error_from = match request.role {
        Role::Server => 500,
        Role::Client => 400,
    };
    match request.code {
        Some(code) if code >= error_from => Some(Status::error(format!("HTTP {code}"))),
        Some(_) => None,
        None => Some(Status::error(
            request
                .incomplete
                .clone()
                .unwrap_or_else(|| "no response".to_string()),
        )),
    }
}

/// ERROR for 5xx, WARN for 4xx and requests without a response, INFO otherwise.
pub fn severity(request: &ApiRequest) -> (Severity, &'static str) {
    match request.code {
        Some(code) if code >= 500 => (Severity::Error, "ERROR"),
        Some(code) if code >= 400 => (Severity::Warn, "WARN"),
        Some(_) => (Severity::Info, "INFO"),
        None => (Severity::Warn, "WARN"),
    }
}

fn map(entries: Vec<(&'static str, AnyValue)>) -> AnyValue {
    AnyValue::Map(Box::new(
        entries
            .into_iter()
            .map(|(k, v)| (Key::from_static_str(k), v))
            .collect(),
    ))
}

/// Span attribute values as log attribute values (the log API has its own value type).
fn any_value(value: opentelemetry::Value) -> AnyValue {
    use opentelemetry::{Array, Value};
    match value {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        Value::Array(Array::Bool(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::Boolean).collect()))
        }
        Value::Array(Array::I64(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::Int).collect()))
        }
        Value::Array(Array::F64(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::Double).collect()))
        }
        Value::Array(Array::String(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::String).collect()))
        }
        // Value is non-exhaustive: anything new is kept as its text.
        other => AnyValue::String(other.to_string().into()),
    }
}

fn string(value: &str) -> AnyValue {
    AnyValue::String(value.to_string().into())
}

/// The log body: an `audit.k8s.io/v1` Event as the apiserver would log it at stage
/// ResponseComplete (field names as in the audit log), limited to what apiscope knows. Bodies
/// appear only if the capture policy put them in `request_body` / `response_body`.
pub fn audit_event(request: &ApiRequest) -> AnyValue {
    let mut event: Vec<(&'static str, AnyValue)> = vec![
        ("kind", string("Event")),
        ("apiVersion", string("audit.k8s.io/v1")),
        ("level", string(attributes::capture_level_name(request))),
        ("stage", string("ResponseComplete")),
        ("verb", string(&request.verb)),
    ];
    if let Some(id) = request.audit_id.as_deref() {
        event.push(("auditID", string(id)));
    }
    let uri = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    event.push(("requestURI", string(&uri)));
    if let Some(sa) = request.service_account.as_ref() {
        // The service account the bearer token names: the apiserver's `user.username`.
        event.push(("user", map(vec![("username", string(&sa.subject))])));
    }
    if let Some(imp) = request.impersonation.as_ref() {
        let mut user = vec![("username", string(&imp.user))];
        if !imp.groups.is_empty() {
            user.push((
                "groups",
                AnyValue::ListAny(Box::new(imp.groups.iter().map(|g| string(g)).collect())),
            ));
        }
        event.push(("impersonatedUser", map(user)));
    }
    let peer = match request.role {
        Role::Server => request.peer,
        Role::Client => request.local,
    };
    if let Some(peer) = peer {
        event.push((
            "sourceIPs",
            AnyValue::ListAny(Box::new(vec![string(&peer.ip().to_string())])),
        ));
    }
    if !request.user_agent.is_empty() {
        event.push(("userAgent", string(&request.user_agent)));
    }
    if request.is_resource_request {
        let mut object = vec![("resource", string(&request.resource))];
        for (key, value) in [
            ("namespace", &request.namespace),
            ("name", &request.name),
            ("apiGroup", &request.group),
            ("apiVersion", &request.version),
            ("subresource", &request.subresource),
        ] {
            if !value.is_empty() {
                object.push((key, string(value)));
            }
        }
        event.push(("objectRef", map(object)));
    }
    if let Some(code) = request.code {
        let mut status = vec![("code", AnyValue::Int(i64::from(code)))];
        if let Some(s) = request.status.as_ref() {
            for (key, value) in [
                ("status", &s.status),
                ("reason", &s.reason),
                ("message", &s.message),
            ] {
                if !value.is_empty() {
                    status.push((key, string(value)));
                }
            }
        }
        event.push(("responseStatus", map(status)));
    }
    if let Some(body) = request.request_body.as_ref() {
        event.push(("requestObject", captured_body(body)));
    }
    if let Some(body) = request.response_body.as_ref() {
        event.push(("responseObject", captured_body(body)));
    }
    event.push((
        "requestReceivedTimestamp",
        string(&rfc3339_micros(request.start_unix_nano)),
    ));
    event.push((
        "stageTimestamp",
        string(&rfc3339_micros(request.end_unix_nano)),
    ));
    map(event)
}

fn captured_body(body: &CapturedBody) -> AnyValue {
    map(vec![
        ("contentType", string(&body.content_type)),
        ("text", string(&body.text)),
        ("truncated", AnyValue::Boolean(body.truncated)),
        ("redacted", AnyValue::Boolean(body.redacted)),
    ])
}

/// `2021-01-02T03:04:05.678901Z`, the audit log's MicroTime format.
pub fn rfc3339_micros(unix_nano: u64) -> String {
    let seconds = unix_nano / 1_000_000_000;
    let micros = (unix_nano % 1_000_000_000) / 1_000;
    let days = seconds / 86_400;
    let rem = seconds % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil (proleptic Gregorian), for days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Instant;

    use http_body_util::{BodyExt as _, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper_util::rt::TokioIo;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{KeyValue as ProtoKeyValue, any_value};
    use prost::Message as _;

    use super::*;
    use crate::sinks::fixtures;

    #[test]
    fn traceparent_parsing() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(valid).expect("valid");
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(sc.span_id(), SpanId::from_hex("00f067aa0ba902b7").unwrap());
        assert!(sc.is_remote());
        assert!(sc.is_sampled());
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!unsampled.expect("valid").is_sampled());
        // A later version may append fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
        for invalid in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9zzzz-01",
        ] {
            assert!(parse_traceparent(invalid).is_none(), "{invalid:?}");
        }
    }

    #[test]
    fn timestamps_and_severity() {
        assert_eq!(
            rfc3339_micros(fixtures::START),
            "2021-01-02T03:04:05.678901Z"
        );
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
        assert_eq!(severity(&fixtures::create_configmap()).1, "INFO");
        assert_eq!(severity(&fixtures::throttled_list()).1, "WARN");
        let mut failed = fixtures::create_configmap();
        failed.code = Some(500);
        assert_eq!(severity(&failed).1, "ERROR");
        assert!(span_status(&failed).is_some());
        assert!(span_status(&fixtures::throttled_list()).is_none());
        assert_eq!(
            parse_headers("Authorization=Bearer x, x-scope=a=b").unwrap(),
            Headers(vec![
                ("authorization".into(), "Bearer x".into()),
                ("x-scope".into(), "a=b".into())
            ])
        );
        assert!(parse_headers("novalue").is_err());
    }

    /// Request paths and bodies, in arrival order.
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// An OTLP/HTTP collector stand-in: records every POST body by path.
    struct Receiver {
        address: SocketAddr,
        received: Received,
        _runtime: tokio::runtime::Runtime,
    }

    impl Receiver {
        /// OTLP/HTTP (HTTP/1.1, protobuf bodies) or OTLP/gRPC (HTTP/2, length-prefixed messages,
        /// `grpc-status` trailer). gRPC bodies are stored under the HTTP paths, unprefixed.
        fn start(protocol: OtlpProtocol) -> Receiver {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let address = listener.local_addr().unwrap();
            let received: Received = Arc::default();
            let store = received.clone();
            runtime.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                                let store = store.clone();
                                async move { Ok::<_, hyper::Error>(receive(request, &store).await) }
                            });
                        let io = TokioIo::new(stream);
                        let _ = match protocol {
                            OtlpProtocol::HttpProtobuf => {
                                hyper::server::conn::http1::Builder::new()
                                    .serve_connection(io, service)
                                    .await
                            }
                            OtlpProtocol::Grpc => {
                                hyper::server::conn::http2::Builder::new(
                                    hyper_util::rt::TokioExecutor::new(),
                                )
                                .serve_connection(io, service)
                                .await
                            }
                        };
                    });
                }
            });
            Receiver {
                address,
                received,
                _runtime: runtime,
            }
        }

        fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
            self.received
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| p == path)
                .map(|(_, b)| b.clone())
                .collect()
        }
    }

    type ReplyBody = http_body_util::combinators::WithTrailers<
        Full<Bytes>,
        std::future::Ready<Option<Result<hyper::HeaderMap, std::convert::Infallible>>>,
    >;

    async fn receive(
        request: hyper::Request<Incoming>,
        store: &Received,
    ) -> hyper::Response<ReplyBody> {
        let path = request.uri().path().to_string();
        let grpc = request
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes().to_vec(),
            Err(_) => Vec::new(),
        };
        let (path, body, content_type, reply, trailers) = if grpc {
            let path = match path.as_str() {
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => "/v1/traces",
                "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => "/v1/logs",
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => "/v1/metrics",
                other => other,
            }
            .to_string();
            // One uncompressed message: flag byte, 4-byte length, protobuf. The reply is an empty
            // Export*ServiceResponse, framed the same way, then the status trailer.
            let mut trailers = hyper::HeaderMap::new();
            trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            (
                path,
                body.get(5..).unwrap_or_default().to_vec(),
                "application/grpc",
                Bytes::from_static(&[0, 0, 0, 0, 0]),
                Some(Ok(trailers)),
            )
        } else {
            (path, body, "application/x-protobuf", Bytes::new(), None)
        };
        store.lock().unwrap().push((path, body));
        let mut response =
            hyper::Response::new(Full::new(reply).with_trailers(std::future::ready(trailers)));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    }

    fn args(endpoint: String, protocol: OtlpProtocol) -> OtlpArgs {
        OtlpArgs {
            otlp_endpoint: Some(endpoint),
            otlp_protocol: protocol,
            otlp_timeout: Duration::from_secs(2),
            otlp_export_interval: Duration::from_millis(200),
            cluster_name: Some("test-cluster".into()),
            node_name: Some("node-1".into()),
            ..OtlpArgs::default()
        }
    }

    fn attr<'a>(attributes: &'a [ProtoKeyValue], key: &str) -> Option<&'a any_value::Value> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn text(value: &str) -> any_value::Value {
        any_value::Value::StringValue(value.to_string())
    }

    #[test]
    fn exports_spans_logs_and_metrics_over_http() {
        exports_spans_logs_and_metrics(OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn exports_spans_logs_and_metrics_over_grpc() {
        exports_spans_logs_and_metrics(OtlpProtocol::Grpc);
    }

    fn exports_spans_logs_and_metrics(protocol: OtlpProtocol) {
        let receiver = Receiver::start(protocol);
        let sink = OtlpSink::new(&args(format!("http://{}", receiver.address), protocol))
            .unwrap()
            .expect("configured");
        let metrics =
            crate::sinks::request_metrics::RequestMetrics::default().with_otel(&sink.meter());
        let create = fixtures::create_configmap();
        let mut traced = fixtures::watch_pods();
        traced.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        let mut quiet = fixtures::healthz();
        quiet.capture_level = CaptureLevel::None;
        for r in [&create, &traced, &quiet] {
            metrics.observe(r);
            sink.send(r);
        }
        let stats = sink.metrics().clone();
        assert!(sink.shutdown(Duration::from_secs(5)), "flushed in time");

        let spans: Vec<_> = receiver
            .bodies("/v1/traces")
            .iter()
            .map(|b| ExportTraceServiceRequest::decode(b.as_slice()).unwrap())
            .flat_map(|r| r.resource_spans)
            .collect();
        let resource = spans[0].resource.as_ref().unwrap();
        assert_eq!(
            attr(&resource.attributes, "service.name"),
            Some(&text("kube-apiserver"))
        );
        assert_eq!(
            attr(&resource.attributes, "k8s.node.name"),
            Some(&text("node-1"))
        );
        assert_eq!(
            attr(&resource.attributes, "k8s.cluster.name"),
            Some(&text("test-cluster"))
        );
        let spans: Vec<_> = spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect();
        // CaptureLevel::None: no span.
        assert_eq!(spans.len(), 2, "{spans:#?}");
        let span = spans
            .iter()
            .find(|s| s.name == "POST /api/v1/namespaces/{namespace}/configmaps")
            .expect("create span");
        assert_eq!(span.kind, 2, "SERVER");
        assert_eq!(span.start_time_unix_nano, create.start_unix_nano);
        assert_eq!(span.end_time_unix_nano, create.end_unix_nano);
        assert!(
            span.parent_span_id.is_empty(),
            "no traceparent: a new trace"
        );
        assert_eq!(
            attr(&span.attributes, "http.request.method"),
            Some(&text("POST"))
        );
        assert_eq!(
            attr(&span.attributes, "http.response.status_code"),
            Some(&any_value::Value::IntValue(201))
        );
        assert_eq!(
            attr(&span.attributes, "k8s.apiserver.audit_id"),
            Some(&text("6f1c9e4a-0000-4000-8000-000000000001"))
        );
        assert_eq!(
            span.status.as_ref().map(|s| s.code).unwrap_or(0),
            0,
            "unset"
        );

        let watch = spans
            .iter()
            .find(|s| s.name == "GET /api/v1/namespaces/{namespace}/pods")
            .expect("watch span");
        assert_eq!(
            hex(&watch.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "the client's trace continues"
        );
        assert_eq!(hex(&watch.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(
            attr(&watch.attributes, "k8s.apiserver.watch.events.modified"),
            Some(&any_value::Value::IntValue(5))
        );

        let logs: Vec<_> = receiver
            .bodies("/v1/logs")
            .iter()
            .map(|b| ExportLogsServiceRequest::decode(b.as_slice()).unwrap())
            .flat_map(|r| r.resource_logs)
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .collect();
        assert_eq!(logs.len(), 2);
        for span in &spans {
            let log = logs
                .iter()
                .find(|l| l.span_id == span.span_id)
                .expect("a log record per span");
            assert_eq!(log.trace_id, span.trace_id, "trace-correlated");
            assert_eq!(log.time_unix_nano, span.end_time_unix_nano);
            assert_eq!(log.event_name, "k8s.apiserver.request");
        }
        let create_log = logs.iter().find(|l| l.span_id == span.span_id).unwrap();
        assert_eq!(create_log.severity_text, "INFO");
        let Some(any_value::Value::KvlistValue(body)) =
            create_log.body.as_ref().and_then(|b| b.value.as_ref())
        else {
            panic!("audit event body: {:?}", create_log.body);
        };
        assert_eq!(
            attr(&body.values, "auditID"),
            Some(&text("6f1c9e4a-0000-4000-8000-000000000001"))
        );
        assert_eq!(attr(&body.values, "verb"), Some(&text("create")));
        assert_eq!(
            attr(&body.values, "requestReceivedTimestamp"),
            Some(&text("2021-01-02T03:04:05.678901Z"))
        );
        let Some(any_value::Value::KvlistValue(object_ref)) = attr(&body.values, "objectRef")
        else {
            panic!("objectRef");
        };
        assert_eq!(attr(&object_ref.values, "name"), Some(&text("app-config")));
        assert_eq!(
            attr(&object_ref.values, "namespace"),
            Some(&text("default"))
        );
        assert!(
            attr(&body.values, "requestObject").is_none(),
            "metadata level: no body"
        );

        let metric_names: Vec<String> = receiver
            .bodies("/v1/metrics")
            .iter()
            .map(|b| ExportMetricsServiceRequest::decode(b.as_slice()).unwrap())
            .flat_map(|r| r.resource_metrics)
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics)
            .map(|m| m.name)
            .collect();
        for name in [
            "apiscope_request_total",
            "apiscope_request_duration_seconds",
            "apiscope_response_sizes_bytes",
            "apiscope_watch_events_total",
            "apiscope_nonresource_request_total",
        ] {
            assert!(
                metric_names.iter().any(|n| n == name),
                "{name} in {metric_names:?}"
            );
        }
        assert_eq!(stats.exported("traces"), 2);
        assert_eq!(stats.exported("logs"), 2);
        assert_eq!(stats.dropped("traces") + stats.failed("traces"), 0);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A port nobody listens on.
    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[test]
    fn collector_down_never_blocks_and_losses_are_counted() {
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            collector_unavailable(protocol, closed_port());
        }
    }

    /// A collector that accepts connections and never answers: exports end at the timeout.
    #[test]
    fn hanging_collector_is_bounded_by_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            collector_unavailable(protocol, listener.local_addr().unwrap());
        }
    }

    fn collector_unavailable(protocol: OtlpProtocol, address: SocketAddr) {
        let mut config = args(format!("http://{address}"), protocol);
        config.otlp_max_queue_size = 8;
        config.otlp_timeout = Duration::from_millis(500);
        let sink = OtlpSink::new(&config).unwrap().expect("configured");
        let metrics =
            crate::sinks::request_metrics::RequestMetrics::default().with_otel(&sink.meter());
        let request = fixtures::create_configmap();
        let started = Instant::now();
        for _ in 0..100 {
            metrics.observe(&request);
            sink.send(&request);
        }
        let elapsed = started.elapsed();
        let stats = sink.metrics().clone();
        // Nothing waits for the network: 100 spans + logs are queued or dropped at once.
        assert!(
            elapsed < Duration::from_secs(1),
            "{protocol:?}: sending took {elapsed:?}"
        );
        assert!(
            stats.dropped("traces") >= 92,
            "{protocol:?}: {}",
            stats.dropped("traces")
        );
        let shutdown = Instant::now();
        sink.shutdown(Duration::from_secs(3));
        let shutdown = shutdown.elapsed();
        assert!(
            shutdown < Duration::from_millis(3500),
            "{protocol:?}: shutdown took {shutdown:?}"
        );
        for signal in ["traces", "logs"] {
            assert_eq!(stats.exported(signal), 0);
            assert_eq!(
                stats.failed(signal) + stats.dropped(signal),
                100,
                "{protocol:?} {signal}: every item accounted for"
            );
        }
        assert!(stats.metric_export_failures() >= 1, "{protocol:?}");
        eprintln!(
            "{protocol:?}: 100 sends in {elapsed:?}, shutdown {shutdown:?}, traces dropped {} failed {}",
            stats.dropped("traces"),
            stats.failed("traces")
        );
    }
}
