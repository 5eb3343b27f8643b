//! The production collector pipeline end to end, with real components: Apache Kafka (KRaft) and
//! the OpenTelemetry Collector built from `otel-collector/builder-config.yaml`, running
//! `otel-collector/production.yaml` unchanged but for its endpoint variables. One span, one log
//! record and one metric go in over OTLP/HTTP protobuf; the three Kafka topics must then hold
//! exactly them, as `otlp_proto` records.
//!
//! Loki's OTLP endpoint and the Prometheus remote-write receiver are small recording HTTP sinks
//! (tests/src/httpsink.rs), checked for the same log record and metric. Tempo is left down (a closed
//! loopback port): its exporter fails and retries in its own queue, which must hold up neither the
//! Kafka path nor the other back ends.
//!
//! Needs no root. Skipped when the collector or Kafka is not installed, unless
//! `APISCOPE_REQUIRE_TOOLS` is set (as `make test` does), where that fails instead.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use apiscope_e2e::cluster::KEEP_CLUSTER_ENV;
use apiscope_e2e::httpsink::{HttpSink, SinkRequest};
use apiscope_e2e::kafka::{self, KafkaBroker};
use apiscope_e2e::otelcol::{self, Collector};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;

const TRACES_TOPIC: &str = "apiscope-traces";
const LOGS_TOPIC: &str = "apiscope-logs";
const METRICS_TOPIC: &str = "apiscope-metrics";
const SPAN_NAME: &str = "GET /api/v1/namespaces/{namespace}/pods";
const LOG_BODY: &str = "list pods in kube-system by system:serviceaccount:kube-system:e2e (200)";
const METRIC_NAME: &str = "apiscope.apiserver.requests";
const METRIC_VALUE: i64 = 42;
/// Everything the test waits for, together, stays well inside this.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(45);

fn tools_or_skip() -> bool {
    let mut missing = Vec::new();
    if otelcol::collector_binary().is_none() {
        missing.push("the OpenTelemetry Collector (scripts/install-otelcol.sh)");
    }
    if !kafka::kafka_installed() {
        missing.push("Apache Kafka and java (scripts/install-kafka.sh)");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
        "APISCOPE_REQUIRE_TOOLS is set but these are missing: {}",
        missing.join(", ")
    );
    eprintln!(
        "skipped: the collector pipeline test needs {} (run `make setup`)",
        missing.join(" and ")
    );
    false
}

#[test]
fn production_pipeline_delivers_traces_logs_and_metrics_to_kafka() -> Result<()> {
    if !tools_or_skip() {
        return Ok(());
    }
    let started = Instant::now();
    let workdir = work_directory()?;
    let result = run(&workdir);
    // Logs (collector, Kafka) stay for a failure, or on request with APISCOPE_KEEP_CLUSTER=1.
    let keep = std::env::var(KEEP_CLUSTER_ENV).is_ok_and(|value| value == "1");
    if result.is_ok() && !keep {
        let _ = std::fs::remove_dir_all(&workdir);
    } else {
        eprintln!("kept the work directory: {}", workdir.display());
    }
    eprintln!("collector pipeline test took {:.1?}", started.elapsed());
    result
}

fn run(workdir: &std::path::Path) -> Result<()> {
    let t = Instant::now();
    let mut broker = KafkaBroker::start(&workdir.join("kafka"))?;
    eprintln!(
        "kafka {} ready after {:.1?}",
        broker.bootstrap(),
        t.elapsed()
    );
    broker.create_topics(
        &[TRACES_TOPIC, LOGS_TOPIC, METRICS_TOPIC],
        Duration::from_secs(30),
    )?;

    let loki = HttpSink::start("loki")?;
    let prometheus = HttpSink::start("prometheus")?;
    let loki_endpoint = format!("{}/otlp", loki.url());
    let remote_write_endpoint = format!("{}/api/v1/write", prometheus.url());

    let t = Instant::now();
    let bootstrap = broker.bootstrap();
    // TEMPO_OTLP_ENDPOINT is left to the harness: a closed loopback port.
    let mut collector = Collector::start(
        &workdir.join("otelcol"),
        &[
            ("KAFKA_BROKERS", bootstrap.as_str()),
            // The production defaults, pinned so that a developer's shell cannot redirect them.
            ("KAFKA_TRACES_TOPIC", TRACES_TOPIC),
            ("KAFKA_LOGS_TOPIC", LOGS_TOPIC),
            ("KAFKA_METRICS_TOPIC", METRICS_TOPIC),
            ("LOKI_OTLP_ENDPOINT", loki_endpoint.as_str()),
            (
                "PROMETHEUS_REMOTE_WRITE_ENDPOINT",
                remote_write_endpoint.as_str(),
            ),
            ("OTELCOL_LOG_LEVEL", "info"),
        ],
    )?;
    eprintln!(
        "collector ready after {:.1?} (OTLP gRPC {}, HTTP {})",
        t.elapsed(),
        collector.otlp_grpc_endpoint(),
        collector.otlp_http_endpoint()
    );

    let ids = Ids::random();
    let now = unix_nanos();
    post(
        &collector,
        "/v1/traces",
        &trace_request(&ids, now).encode_to_vec(),
    )?;
    post(
        &collector,
        "/v1/logs",
        &log_request(&ids, now).encode_to_vec(),
    )?;
    post(
        &collector,
        "/v1/metrics",
        &metric_request(now).encode_to_vec(),
    )?;

    let mut check = || -> Result<()> {
        check_traces(&bootstrap, &ids)?;
        check_logs(&bootstrap, &ids)?;
        check_metrics(&bootstrap)?;
        check_loki(&loki, &ids)?;
        check_remote_write(&prometheus)?;
        collector.ensure_running()?;
        broker.ensure_running()
    };
    if let Err(error) = check() {
        bail!(
            "{error:#}\n--- collector log ({}):\n{}",
            collector.log_path().display(),
            collector.log_tail()
        );
    }
    collector.stop()?;
    broker.stop()
}

fn post(collector: &Collector, path: &str, body: &[u8]) -> Result<()> {
    let (status, response) = otelcol::http_post(
        collector.otlp_http_addr(),
        path,
        "application/x-protobuf",
        body,
    )?;
    ensure!(
        status == 200,
        "POST {path}: HTTP {status}: {}",
        String::from_utf8_lossy(&response)
    );
    Ok(())
}

/// Loki receives the log record as OTLP/HTTP protobuf at `<LOKI_OTLP_ENDPOINT>/v1/logs`.
fn check_loki(loki: &HttpSink, ids: &Ids) -> Result<()> {
    let request = loki.wait_for(
        "the log record at Loki's OTLP endpoint",
        CONSUME_TIMEOUT,
        |request| request.path == "/otlp/v1/logs",
    )?;
    ensure!(
        request.method == "POST",
        "Loki got {} {}",
        request.method,
        request.path
    );
    ensure!(
        header(&request, "content-type") == Some("application/x-protobuf"),
        "Loki request headers {:?}",
        request.headers
    );
    let logs: Vec<LogRecord> = ExportLogsServiceRequest::decode(request.body.as_slice())
        .context("decoding Loki's request as ExportLogsServiceRequest")?
        .resource_logs
        .into_iter()
        .flat_map(|resource| resource.scope_logs)
        .flat_map(|scope| scope.log_records)
        .collect();
    ensure!(logs.len() == 1, "Loki got {} log records", logs.len());
    ensure!(
        logs[0].trace_id == ids.trace_id && string_body(&logs[0]) == Some(LOG_BODY),
        "Loki got {:?}",
        logs[0]
    );
    Ok(())
}

/// The Prometheus remote-write receiver gets the counter as a snappy-compressed WriteRequest.
fn check_remote_write(prometheus: &HttpSink) -> Result<()> {
    let request = prometheus.wait_for(
        "the metric at the Prometheus remote-write endpoint",
        CONSUME_TIMEOUT,
        |request| request.path == "/api/v1/write",
    )?;
    ensure!(
        header(&request, "content-encoding") == Some("snappy")
            && header(&request, "content-type") == Some("application/x-protobuf"),
        "remote-write headers {:?}",
        request.headers
    );
    let body = snap::raw::Decoder::new()
        .decompress_vec(&request.body)
        .context("snappy-decoding the remote-write body")?;
    let write = remote_write::WriteRequest::decode(body.as_slice())
        .context("decoding the remote-write body as prometheus.WriteRequest")?;
    let series: Vec<_> = write
        .timeseries
        .iter()
        .filter(|series| {
            series.labels.iter().any(|label| {
                label.name == "__name__" && label.value.starts_with("apiscope_apiserver_requests")
            })
        })
        .collect();
    ensure!(
        series.len() == 1,
        "remote-write series {:?}",
        write.timeseries
    );
    let series = series[0];
    ensure!(
        series
            .labels
            .iter()
            .any(|l| l.name == "verb" && l.value == "list")
            && series.samples.len() == 1
            && series.samples[0].value == METRIC_VALUE as f64,
        "remote-write series {series:?}"
    );
    Ok(())
}

/// The few messages of Prometheus' remote-write protocol (`prometheus.WriteRequest`, v1) we read.
mod remote_write {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

fn header<'a>(request: &'a SinkRequest, name: &str) -> Option<&'a str> {
    request.headers.get(name).map(String::as_str)
}

fn string_body(log: &LogRecord) -> Option<&str> {
    log.body.as_ref().and_then(|body| match &body.value {
        Some(any_value::Value::StringValue(text)) => Some(text.as_str()),
        _ => None,
    })
}

fn check_traces(bootstrap: &str, ids: &Ids) -> Result<()> {
    let records = kafka::consume_all(bootstrap, TRACES_TOPIC, 1, 100, CONSUME_TIMEOUT)?;
    let mut spans = Vec::new();
    for record in &records {
        let request = ExportTraceServiceRequest::decode(record.as_slice())
            .context("decoding an apiscope-traces record as ExportTraceServiceRequest")?;
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push((resource.clone(), span));
                }
            }
        }
    }
    ensure!(
        spans.len() == 1,
        "expected exactly the one span sent in {TRACES_TOPIC}, found {} in {} records",
        spans.len(),
        records.len()
    );
    let (resource, span) = &spans[0];
    ensure!(span.name == SPAN_NAME, "span name {:?}", span.name);
    ensure!(
        span.trace_id == ids.trace_id,
        "trace id {:02x?}",
        span.trace_id
    );
    ensure!(span.span_id == ids.span_id, "span id {:02x?}", span.span_id);
    ensure!(
        span.kind == span::SpanKind::Server as i32,
        "kind {}",
        span.kind
    );
    ensure!(
        string_attribute(&resource.attributes, "service.name") == Some("apiscope"),
        "resource attributes {:?}",
        resource.attributes
    );
    ensure!(
        string_attribute(&span.attributes, "http.request.method") == Some("GET")
            && string_attribute(&span.attributes, "k8s.apiserver.verb") == Some("list")
            && int_attribute(&span.attributes, "http.response.status_code") == Some(200),
        "span attributes {:?}",
        span.attributes
    );
    Ok(())
}

fn check_logs(bootstrap: &str, ids: &Ids) -> Result<()> {
    let records = kafka::consume_all(bootstrap, LOGS_TOPIC, 1, 100, CONSUME_TIMEOUT)?;
    let mut logs = Vec::new();
    for record in &records {
        let request = ExportLogsServiceRequest::decode(record.as_slice())
            .context("decoding an apiscope-logs record as ExportLogsServiceRequest")?;
        for resource_logs in request.resource_logs {
            for scope_logs in resource_logs.scope_logs {
                logs.extend(scope_logs.log_records);
            }
        }
    }
    ensure!(
        logs.len() == 1,
        "expected exactly the one log record sent in {LOGS_TOPIC}, found {} in {} records",
        logs.len(),
        records.len()
    );
    let log = &logs[0];
    ensure!(
        string_body(log) == Some(LOG_BODY),
        "log body {:?}",
        log.body
    );
    ensure!(
        log.trace_id == ids.trace_id,
        "log trace id {:02x?}",
        log.trace_id
    );
    ensure!(
        log.span_id == ids.span_id,
        "log span id {:02x?}",
        log.span_id
    );
    ensure!(
        log.severity_number == SeverityNumber::Info as i32,
        "severity {}",
        log.severity_number
    );
    ensure!(
        string_attribute(&log.attributes, "k8s.apiserver.audit_id")
            == Some("5e0c0bd8-0d5e-4c2a-9f55-6f1d3c7a9b21"),
        "log attributes {:?}",
        log.attributes
    );
    Ok(())
}

fn check_metrics(bootstrap: &str) -> Result<()> {
    let records = kafka::consume_all(bootstrap, METRICS_TOPIC, 1, 100, CONSUME_TIMEOUT)?;
    let mut metrics = Vec::new();
    for record in &records {
        let request = ExportMetricsServiceRequest::decode(record.as_slice())
            .context("decoding an apiscope-metrics record as ExportMetricsServiceRequest")?;
        for resource_metrics in request.resource_metrics {
            for scope_metrics in resource_metrics.scope_metrics {
                metrics.extend(scope_metrics.metrics);
            }
        }
    }
    ensure!(
        metrics.len() == 1,
        "expected exactly the one metric sent in {METRICS_TOPIC}, found {} in {} records",
        metrics.len(),
        records.len()
    );
    let metric = &metrics[0];
    ensure!(metric.name == METRIC_NAME, "metric name {:?}", metric.name);
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        bail!("metric {METRIC_NAME} is not a sum: {:?}", metric.data);
    };
    ensure!(
        sum.is_monotonic
            && sum.aggregation_temporality == AggregationTemporality::Cumulative as i32,
        "sum shape {sum:?}"
    );
    ensure!(
        sum.data_points.len() == 1,
        "data points {:?}",
        sum.data_points
    );
    let point = &sum.data_points[0];
    ensure!(
        point.value == Some(number_data_point::Value::AsInt(METRIC_VALUE)),
        "value {:?}",
        point.value
    );
    ensure!(
        string_attribute(&point.attributes, "verb") == Some("list"),
        "data point attributes {:?}",
        point.attributes
    );
    Ok(())
}

struct Ids {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
}

impl Ids {
    fn random() -> Ids {
        use std::io::Read;
        let mut bytes = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut file| file.read_exact(&mut bytes))
            .expect("reading /dev/urandom");
        // Never all-zero (invalid ids): force a bit in each.
        bytes[0] |= 1;
        bytes[16] |= 1;
        Ids {
            trace_id: bytes[..16].to_vec(),
            span_id: bytes[16..].to_vec(),
        }
    }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            string_kv("service.name", "apiscope"),
            string_kv("k8s.node.name", "e2e-node"),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "apiscope".into(),
        version: "e2e".into(),
        ..Default::default()
    })
}

fn trace_request(ids: &Ids, now: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![Span {
                    trace_id: ids.trace_id.clone(),
                    span_id: ids.span_id.clone(),
                    name: SPAN_NAME.into(),
                    kind: span::SpanKind::Server as i32,
                    start_time_unix_nano: now - 3_000_000,
                    end_time_unix_nano: now,
                    attributes: vec![
                        string_kv("http.request.method", "GET"),
                        string_kv("k8s.apiserver.verb", "list"),
                        int_kv("http.response.status_code", 200),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn log_request(ids: &Ids, now: u64) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![LogRecord {
                    time_unix_nano: now,
                    observed_time_unix_nano: now,
                    severity_number: SeverityNumber::Info as i32,
                    severity_text: "INFO".into(),
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(LOG_BODY.into())),
                    }),
                    attributes: vec![string_kv(
                        "k8s.apiserver.audit_id",
                        "5e0c0bd8-0d5e-4c2a-9f55-6f1d3c7a9b21",
                    )],
                    trace_id: ids.trace_id.clone(),
                    span_id: ids.span_id.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn metric_request(now: u64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: METRIC_NAME.into(),
                    description: "Requests seen by apiscope".into(),
                    unit: "{request}".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![string_kv("verb", "list")],
                            start_time_unix_nano: now - 60_000_000_000,
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsInt(METRIC_VALUE)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| value.value.as_ref())
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(any_value::Value::StringValue(text)) => Some(text),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(any_value::Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn work_directory() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "apiscope-collector-e2e-{}-{}",
        std::process::id(),
        unix_nanos()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
