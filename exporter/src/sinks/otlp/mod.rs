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
//!
//! Here the sink itself; beside it, one concern per file: `config` (flags), `exporters` (gRPC or
//! HTTP exporters and the resource), `admission` (the processors in front of the SDK queues),
//! `accounting` (per-signal counters and the counting exporters), `span`, `log_record`, `time`.

mod accounting;
mod admission;
mod config;
mod exporters;
mod log_record;
mod span;
#[cfg(test)]
mod tests;
mod time;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider};
use tracing::{info, warn};

use crate::k8s::ApiRequest;
use crate::k8s::api_request::CaptureLevel;
use crate::sinks::attributes::{span_attributes, span_name};
use crate::vocabulary::Role;
pub use accounting::OtlpMetrics;
use accounting::{CountingLogExporter, CountingMetricExporter, CountingSpanExporter};
use admission::{AdmittingLogProcessor, AdmittingSpanProcessor};
pub use config::{Headers, OtlpArgs, OtlpProtocol, parse_headers};
use exporters::{Exporters, resource};
use log_record::any_value;
pub use log_record::{audit_event, severity};
pub use span::{parse_traceparent, span_status};
pub use time::{rfc3339_micros, system_time};

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

/// The instrumentation scope of every span and log record (the relay reads only its own).
pub const SCOPE: &str = "apiscope";

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
        .with_interval(args.otlp_metric_export_interval)
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
