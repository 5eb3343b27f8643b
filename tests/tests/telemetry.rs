//! Telemetry end to end (root), every component real: the test cluster, `apiscope capture`
//! exporting OTLP/gRPC to the OpenTelemetry Collector built from otel-collector/builder-config.yaml
//! running otel-collector/production.yaml into Apache Kafka (KRaft) and, by remote write, into
//! Prometheus 3.16, which also scrapes both apiscope and the apiserver and evaluates the rule files
//! of dashboards/rules/.
//!
//! - Every ApiRequest apiscope printed has its span on the Kafka traces topic (name, kind,
//!   captured start/end, status, k8s attributes) and its log record on the logs topic, carrying
//!   the span's trace and span id.
//! - Jaeger v2, in Tempo's place (the collector's `otlp_grpc/tempo` exporter pointed at it), finds
//!   a configmap LIST's span through its query API by service `kube-apiserver`, operation
//!   `GET /api/v1/namespaces/{namespace}/configmaps` and tag `k8s.apiserver.audit_id`: the same
//!   trace and span id as on Kafka, start and duration the captured ones (to the API's µs); a
//!   search for an audit id no request had finds nothing; a search by the tags the dashboards'
//!   trace links use (client, status code) finds every kubectl 404 of the workload.
//! - `apiscope_request_total` increases over the workload window equal the apiserver's own
//!   `apiserver_request_total` increases, label set by label set (differences are printed; the
//!   resources the workload touches must agree exactly).
//! - dashboards/: every rule Prometheus loaded evaluates without error and its query runs, and no
//!   alert is pending or firing; every
//!   query of every dashboard panel (variables substituted, intervals = the workload window) runs,
//!   and returns data unless the panel is in `PANELS_ALLOWED_EMPTY`; the `le` forms the rules
//!   rely on are the ones Prometheus stored; the collector's remote write arrived; once apiscope
//!   has stopped, ApiscopeDown turns pending.
//! - Secret test: a Secret and a TokenRequest with random values, captured at RequestResponse
//!   (the most permissive level without an allow rule); the values must appear nowhere: Kafka
//!   topics, Prometheus scrape, stdout JSON, apiscope's log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use apiscope::k8s::ApiRequest;
use apiscope::k8s::api_request::CaptureLevel;
use apiscope::vocabulary::Role;
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster, for_each_version};
use apiscope_e2e::dashboards;
use apiscope_e2e::jaeger::{self, Jaeger, JaegerSpan};
use apiscope_e2e::kafka::{self, KafkaBroker};
use apiscope_e2e::otelcol::{self, Collector};
use apiscope_e2e::prometheus::{PROMETHEUS_VERSION, Prometheus, prometheus_binary};
use apiscope_e2e::workload::{setup_objects, workload_iteration};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const TOPICS: [&str; 3] = ["apiscope-traces", "apiscope-logs", "apiscope-metrics"];
/// The apiserver_request_total label set (apiscope adds `client`, summed away here).
const LABELS: &str = "verb,dry_run,group,version,resource,subresource,scope,component,code";

const POLICY: &str = r#"
rules:
  # Everything at the most permissive level that still redacts: no rule allows secrets.
  - level: RequestResponse
"#;

fn tools_or_skip() -> bool {
    let mut missing = Vec::new();
    if otelcol::collector_binary().is_none() {
        missing.push("the OpenTelemetry Collector (scripts/install-otelcol.sh)");
    }
    if !kafka::kafka_installed() {
        missing.push("Apache Kafka (scripts/install-kafka.sh)");
    }
    if prometheus_binary().is_none() {
        missing.push("Prometheus 3.16 (scripts/install-prometheus.sh)");
    }
    if jaeger::jaeger_binary().is_none() {
        missing.push("Jaeger v2 (scripts/install-jaeger.sh)");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
        "missing: {}",
        missing.join(", ")
    );
    eprintln!("skipped: needs {}", missing.join(" and "));
    false
}

#[test]
fn requests_become_spans_logs_and_metrics_and_secrets_stay_home() -> Result<()> {
    if !require_root("the telemetry test") || !tools_or_skip() {
        return Ok(());
    }
    for_each_version(requests_become_spans_logs_and_metrics_and_secrets_stay_home_on)
}

fn requests_become_spans_logs_and_metrics_and_secrets_stay_home_on(
    kubernetes: KubernetesVersion,
) -> Result<()> {
    let dir = test_dir(&format!("telemetry-{kubernetes}"))?;
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        ..ClusterOptions::default()
    })?;
    setup_objects(&cluster, &dir)?;
    let broker = KafkaBroker::start(&dir.join("kafka"))?;
    broker.create_topics(&TOPICS, Duration::from_secs(30))?;
    let bootstrap = broker.bootstrap();
    // Prometheus first, so that the collector can remote-write to it; apiscope's address is only
    // known once it runs, so its target comes through a file (Prometheus watches it).
    let pki = cluster.pki();
    let prometheus_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prometheus_dir)?;
    let apiscope_targets = prometheus_dir.join("apiscope-targets.json");
    std::fs::write(&apiscope_targets, "[]")?;
    let prometheus = Prometheus::start(
        &prometheus_dir,
        &format!(
            "  - job_name: apiscope\n    file_sd_configs: [{{files: ['{}']}}]\n\
             \x20 - job_name: apiserver\n    scheme: https\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            apiscope_targets.display(),
            pki.ca.cert.display(),
            pki.admin_client.cert.display(),
            pki.admin_client.key.display(),
            cluster.apiserver_port()
        ),
        &dashboards::rule_files()?,
    )?;
    let version = prometheus.version()?;
    ensure!(
        version == PROMETHEUS_VERSION,
        "Prometheus {version}, the rules are tested on {PROMETHEUS_VERSION}"
    );
    let remote_write = format!("http://{}/api/v1/write", prometheus.address());
    // Jaeger stands in for Tempo: the production config's trace exporter, pointed at it.
    let jaeger_started = std::time::Instant::now();
    let mut jaeger = Jaeger::start(&dir.join("jaeger"))?;
    eprintln!("jaeger: ready in {:.1?}", jaeger_started.elapsed());
    let jaeger_otlp = jaeger.otlp_grpc_endpoint();
    let mut collector = Collector::start(
        &dir.join("otelcol"),
        &[
            ("KAFKA_BROKERS", bootstrap.as_str()),
            ("PROMETHEUS_REMOTE_WRITE_ENDPOINT", remote_write.as_str()),
            ("TEMPO_OTLP_ENDPOINT", jaeger_otlp.as_str()),
        ],
    )?;

    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let pid = cluster.apiserver_pid().to_string();
    let otlp = format!("http://{}", collector.otlp_grpc_endpoint());
    let mut capture = ApiscopeCapture::start(
        &dir,
        &[
            "--pid",
            &pid,
            "--otlp-endpoint",
            &otlp,
            "--otlp-protocol",
            "grpc",
            "--otlp-export-interval",
            "1s",
            "--otlp-metric-export-interval",
            "1s",
            "--cluster-name",
            "e2e",
            "--capture-policy",
            policy.to_str().context("path")?,
        ],
    )?;
    capture.wait_attached(cluster.apiserver_pid())?;
    let apiscope_metrics = capture.metrics_address()?;
    std::fs::write(
        &apiscope_targets,
        format!("[{{\"targets\": [\"{apiscope_metrics}\"]}}]"),
    )?;
    prometheus.wait_for_targets("apiscope", Duration::from_secs(30))?;
    prometheus.wait_for_targets("apiserver", Duration::from_secs(30))?;
    // A watch open through the whole window, ended after the checks: the open-watch and
    // long-running panels need one (the cluster's own watches began before apiscope attached).
    let open_watch = cluster.kubectl_background(
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/fidelity/configmaps?watch=1&timeoutSeconds=600",
        ],
        &dir.join("open-watch.log"),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let window_start = unix_seconds();
    std::thread::sleep(Duration::from_secs(2));

    // The workload, with secrets in it.
    let secret_value = random_token("secret-value");
    let string_data_value = random_token("string-data");
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "e2e-secret",
        "--namespace",
        "fidelity",
        &format!("--from-literal=password={secret_value}"),
    ])?;
    cluster.kubectl_ok(&[
        "get",
        "secret",
        "e2e-secret",
        "--namespace",
        "fidelity",
        "--output",
        "yaml",
    ])?;
    cluster.kubectl_ok(&[
        "patch",
        "secret",
        "e2e-secret",
        "--namespace",
        "fidelity",
        "--type",
        "merge",
        "--patch",
        &format!("{{\"stringData\":{{\"other\":\"{string_data_value}\"}}}}"),
    ])?;
    // A TokenRequest: the token is made by the apiserver; kubectl prints it.
    cluster.kubectl_ok(&["create", "serviceaccount", "e2e", "--namespace", "fidelity"])?;
    let token = cluster
        .kubectl_ok(&[
            "create",
            "token",
            "e2e",
            "--namespace",
            "fidelity",
            "--duration",
            "10m",
        ])?
        .trim()
        .to_owned();
    ensure!(
        token.starts_with("eyJ"),
        "kubectl create token gave {token:?}"
    );
    for i in 0..2 {
        workload_iteration(&cluster, &dir, i)?;
    }
    // Two scrapes and one OTLP export interval after the last request.
    std::thread::sleep(Duration::from_secs(4));
    let window_end = unix_seconds();
    let scrape = capture.scrape_metrics()?;
    let result = capture.stop()?;

    let requests: Vec<ApiRequest> = result
        .requests()?
        .into_iter()
        .filter(|r| r.role == Role::Server)
        .collect();
    let exported: Vec<&ApiRequest> = requests
        .iter()
        .filter(|r| r.capture_level != CaptureLevel::None && r.audit_id.is_some())
        .collect();
    ensure!(exported.len() > 30, "only {} requests", exported.len());

    // Kafka: spans and log records.
    let traces = kafka::consume_all(&bootstrap, TOPICS[0], 1, 10_000, Duration::from_secs(30))?;
    let logs = kafka::consume_all(&bootstrap, TOPICS[1], 1, 10_000, Duration::from_secs(30))?;
    let metrics = kafka::consume_all(&bootstrap, TOPICS[2], 1, 10_000, Duration::from_secs(30))?;
    let spans = decode_spans(&traces)?;
    let records = decode_logs(&logs)?;
    let mut span_by_audit_id: HashMap<String, &Span> = HashMap::new();
    for span in &spans {
        if let Some(id) = string_attribute(&span.attributes, "k8s.apiserver.audit_id") {
            span_by_audit_id.insert(id, span);
        }
    }
    let mut log_by_audit_id: HashMap<String, &LogRecord> = HashMap::new();
    for record in &records {
        if let Some(id) = string_attribute(&record.attributes, "k8s.apiserver.audit_id") {
            log_by_audit_id.insert(id, record);
        }
    }
    let mut problems = Vec::new();
    for request in &exported {
        let id = request.audit_id.as_deref().unwrap_or_default();
        let Some(span) = span_by_audit_id.get(id) else {
            problems.push(format!("{id} {} {}: no span", request.method, request.path));
            continue;
        };
        check_span(request, span, &mut problems);
        match log_by_audit_id.get(id) {
            None => problems.push(format!("{id}: no log record")),
            Some(record) => {
                if record.trace_id != span.trace_id || record.span_id != span.span_id {
                    problems.push(format!("{id}: log record not correlated with its span"));
                }
            }
        }
    }
    eprintln!(
        "kafka: {} span(s), {} log record(s), {} metric batch(es) for {} exported requests",
        spans.len(),
        records.len(),
        metrics.len(),
        exported.len()
    );
    ensure!(!metrics.is_empty(), "no metrics on {}", TOPICS[2]);

    // Jaeger: one request's span, found by service, operation and audit id.
    let list = exported
        .iter()
        .find(|r| {
            r.method == "GET"
                && r.verb == "list"
                && r.resource == "configmaps"
                && !r.namespace.is_empty()
                && r.path == format!("/api/v1/namespaces/{}/configmaps", r.namespace)
                && span_by_audit_id.contains_key(r.audit_id.as_deref().unwrap_or_default())
        })
        .context("the workload made no namespaced configmap LIST with a span")?;
    let list_span = span_by_audit_id[list.audit_id.as_deref().unwrap_or_default()];
    let jaeger_checked = std::time::Instant::now();
    check_jaeger(&jaeger, list, list_span, &exported, &mut problems)?;
    eprintln!("jaeger: checked in {:.1?}", jaeger_checked.elapsed());
    jaeger.ensure_running()?;

    // Prometheus: apiscope vs the apiserver, label set by label set.
    let delta = |metric: &str| -> Result<BTreeMap<String, f64>> {
        let expr = format!("sum by ({LABELS}) ({metric})");
        let at = |t| -> Result<BTreeMap<String, f64>> {
            Ok(prometheus
                .query(&expr, Some(t))?
                .into_iter()
                .map(|(labels, v)| (label_key(&labels), v))
                .collect())
        };
        let (before, after) = (at(window_start)?, at(window_end)?);
        Ok(after
            .into_iter()
            .map(|(k, v)| {
                let d = v - before.get(&k).copied().unwrap_or(0.0);
                (k, d)
            })
            .filter(|(_, d)| *d > 0.0)
            .collect())
    };
    // The scraped series only: the collector's remote write adds the same metrics under the
    // job its resource names.
    let ours = delta("apiscope_request_total{job=\"apiscope\"}")?;
    let theirs = delta("apiserver_request_total{job=\"apiserver\"}")?;
    let keys: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
    let mut differences = Vec::new();
    let mut agreeing = 0;
    for key in keys {
        let (a, b) = (
            ours.get(key).copied().unwrap_or(0.0),
            theirs.get(key).copied().unwrap_or(0.0),
        );
        if a == b {
            agreeing += 1;
        } else {
            differences.push((key.clone(), a, b));
        }
    }
    eprintln!(
        "{kubernetes}: apiscope_request_total vs apiserver_request_total over {:.0} s: {agreeing} label sets agree, {} differ",
        window_end - window_start,
        differences.len()
    );
    for (key, a, b) in &differences {
        eprintln!("  {key}: apiscope {a}, apiserver {b}");
    }
    // Every label set must agree exactly, but those the apiserver's own loopback client adds to
    // on a timer — lease renewals every 10 s, and from v1.2x on the /openapi/v3 poll every 5 s —
    // may differ by one request per window edge (the two counters are read at slightly
    // different instants).
    for (key, a, b) in &differences {
        let periodic =
            key.contains("resource=\"leases\"") || key.contains("subresource=\"openapi/v3\"");
        if !periodic || (a - b).abs() > 2.0 {
            problems.push(format!("{kubernetes}: {key}: apiscope {a}, apiserver {b}"));
        }
    }

    check_dashboards(&prometheus, window_start, window_end, &mut problems)?;
    check_remote_write(&prometheus, &mut problems)?;
    // And the other way round: apiscope has stopped, so its scrape fails and ApiscopeDown, on the
    // real `up` series, must turn pending (it fires after 5 minutes).
    if let Err(error) = wait_for_pending_alert(&prometheus, "ApiscopeDown") {
        problems.push(format!("{error:#}"));
    }
    open_watch.stop()?;

    // Secrets stay home.
    let mut outputs: Vec<(&str, Vec<u8>)> = vec![
        ("stdout JSON", result.output.clone().into_bytes()),
        ("apiscope log", result.log.join("\n").into_bytes()),
        ("apiscope /metrics", scrape.into_bytes()),
    ];
    for (topic, records) in TOPICS.iter().zip([&traces, &logs, &metrics]) {
        outputs.push((topic, records.concat()));
    }
    for secret in [&secret_value, &string_data_value, &token] {
        for (name, bytes) in &outputs {
            if contains(bytes, secret.as_bytes()) {
                problems.push(format!("a secret value leaked into {name}"));
            }
        }
    }
    // The secret requests were captured, with bodies, redacted.
    let secret_bodies = requests
        .iter()
        .filter(|r| r.resource == "secrets" || r.subresource == "token")
        .filter(|r| {
            r.request_body
                .as_ref()
                .or(r.response_body.as_ref())
                .is_some()
        })
        .count();
    ensure!(
        secret_bodies >= 3,
        "secret requests without bodies: {secret_bodies}"
    );

    prometheus.stop()?;
    collector.ensure_running()?;
    collector.stop()?;
    let jaeger_stopping = std::time::Instant::now();
    jaeger.stop()?;
    eprintln!("jaeger: stopped in {:.1?}", jaeger_stopping.elapsed());
    broker.stop()?;
    cluster.stop()?;
    if !problems.is_empty() {
        bail!("{} problem(s):\n{}", problems.len(), problems.join("\n"));
    }
    Ok(())
}

/// Dashboard panels the workload does not exercise, and why. Every other panel must return data;
/// an entry that names no panel is an error too, so the list stays exact.
const PANELS_ALLOWED_EMPTY: &[(&str, &str, &str)] = &[
    ("apiserver.json", "Availability (30d)", AVAILABILITY_GROUP),
    (
        "apiserver.json",
        "Error budget left (30d)",
        AVAILABILITY_GROUP,
    ),
    (
        "apiserver.json",
        "Read availability (30d)",
        AVAILABILITY_GROUP,
    ),
    (
        "apiserver.json",
        "Write availability (30d)",
        AVAILABILITY_GROUP,
    ),
    ("clients.json", "Throttled (429) by client", NO_THROTTLING),
    (
        "throttling.json",
        "429s by priority level and flow schema",
        NO_THROTTLING,
    ),
    (
        "throttling.json",
        "429s by client, verb and resource",
        NO_THROTTLING,
    ),
    (
        "throttling.json",
        "429 share of all requests",
        NO_THROTTLING,
    ),
    (
        "health.json",
        "Label values folded into other",
        "no label value reaches its bound",
    ),
];
const AVAILABILITY_GROUP: &str =
    "recorded by the mixin's 3-minute availability group, not evaluated yet in a short test";
const NO_THROTTLING: &str = "the workload is never throttled (no 429)";

/// The rules Prometheus loaded from dashboards/rules/ and every dashboard panel, run against what
/// Prometheus scraped during the workload window; and the `le` forms the rules rely on.
fn check_dashboards(
    prometheus: &Prometheus,
    window_start: f64,
    window_end: f64,
    problems: &mut Vec<String>,
) -> Result<()> {
    let rules = prometheus.rules()?;
    ensure!(!rules.is_empty(), "Prometheus loaded no rules");
    let mut evaluated = 0;
    for rule in &rules {
        match rule.health.as_str() {
            "err" => problems.push(format!(
                "rule {} ({}): {}",
                rule.name, rule.group, rule.last_error
            )),
            "ok" => evaluated += 1,
            _ => {}
        }
        if let Err(error) = prometheus.query(&rule.query, Some(window_end)) {
            problems.push(format!("rule {} ({}): {error:#}", rule.name, rule.group));
        }
    }
    eprintln!(
        "rules: {} loaded, {evaluated} evaluated without error, every query ran",
        rules.len()
    );
    // A healthy cluster and apiscope under a small workload: no alert may even be pending.
    for (labels, _) in prometheus.query("ALERTS", Some(window_end))? {
        problems.push(format!("an alert during the healthy workload: {labels:?}"));
    }

    // Grafana's intervals become the workload window, so that the panels show the workload.
    let window = format!("{}s", (window_end - window_start).ceil() as u64);
    let variables = [
        ("$job", "apiscope".to_owned()),
        ("$instance", ".*".to_owned()),
        ("$client", ".*".to_owned()),
        ("$__rate_interval", window.clone()),
        ("$__range", window),
    ];
    let panels = dashboards::panels(&variables)?;
    let mut with_data = Vec::new();
    let mut empty = Vec::new();
    for panel in &panels {
        let mut samples = 0;
        for query in &panel.queries {
            match prometheus.query(query, Some(window_end)) {
                Ok(result) => samples += result.len(),
                Err(error) => {
                    problems.push(format!("{}: {}: {error:#}", panel.dashboard, panel.title))
                }
            }
        }
        let name = format!("{}: {}", panel.dashboard, panel.title);
        let allowed = PANELS_ALLOWED_EMPTY
            .iter()
            .any(|(d, t, _)| *d == panel.dashboard && *t == panel.title);
        match (samples, allowed) {
            (0, false) => problems.push(format!("{name}: no data")),
            (0, true) => empty.push(name),
            (_, true) => {
                eprintln!("  (allowed to be empty, has data: {name})");
                with_data.push(name);
            }
            (_, false) => with_data.push(name),
        }
    }
    for (dashboard, title, _) in PANELS_ALLOWED_EMPTY {
        if !panels
            .iter()
            .any(|p| p.dashboard == *dashboard && p.title == *title)
        {
            problems.push(format!(
                "PANELS_ALLOWED_EMPTY names {dashboard}: {title}, no such panel"
            ));
        }
    }
    eprintln!(
        "dashboards: {} panels, {} with data, {} empty (allowed): {}",
        panels.len(),
        with_data.len(),
        empty.len(),
        empty.join("; ")
    );

    // The rules match le="1.0", "5.0", "30.0": measure what Prometheus stored, for apiscope's
    // float bounds and for a Go exporter's (the apiserver writes le="1").
    let le_values = |selector: &str| -> Result<BTreeSet<String>> {
        Ok(prometheus
            .query(&format!("count by (le) ({selector})"), Some(window_end))?
            .into_iter()
            .filter_map(|(labels, _)| labels.get("le").cloned())
            .collect())
    };
    for (selector, want, not) in [
        (
            "apiscope_request_duration_seconds_bucket{job=\"apiscope\"}",
            &["1.0", "5.0", "30.0"][..],
            "1",
        ),
        (
            "apiserver_request_duration_seconds_bucket{job=\"apiserver\"}",
            &["1.0", "5.0"][..],
            "1",
        ),
        (
            "apiscope_response_sizes_bytes_bucket{job=\"apiscope\"}",
            &["1e+06"][..],
            "1000000.0",
        ),
    ] {
        let stored = le_values(selector)?;
        if !want.iter().all(|le| stored.contains(*le)) || stored.contains(not) {
            problems.push(format!(
                "{selector}: le stored as {stored:?}, expected {want:?} and not {not:?}"
            ));
        }
    }
    Ok(())
}

fn wait_for_pending_alert(prometheus: &Prometheus, alert: &str) -> Result<()> {
    let query = format!("ALERTS{{alertname=\"{alert}\",alertstate=\"pending\"}}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if !prometheus.query(&query, None)?.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("{alert} not pending 15 s after apiscope stopped")
}

/// The collector's remote write (production config, pointed at the test's Prometheus) arrived:
/// apiscope's request counter under a job other than the scrape's.
fn check_remote_write(prometheus: &Prometheus, problems: &mut Vec<String>) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = prometheus.query("count by (job, instance) (apiscope_request_total)", None)?;
        let remote: Vec<_> = jobs
            .iter()
            .filter(|(labels, _)| labels.get("job").map(String::as_str) != Some("apiscope"))
            .collect();
        if !remote.is_empty() {
            let les: BTreeSet<String> = prometheus
                .query(
                    "count by (le) (apiscope_request_duration_seconds_bucket{job!=\"apiscope\"})",
                    None,
                )?
                .into_iter()
                .filter_map(|(labels, _)| labels.get("le").cloned())
                .collect();
            eprintln!(
                "remote write: apiscope_request_total series {remote:?}; le stored as {les:?}"
            );
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            problems.push(format!(
                "no apiscope_request_total arrived by remote write in 20 s (series by job: {jobs:?})"
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The operation apiscope names a namespaced configmap LIST's span (docs/telemetry.md).
const CONFIGMAP_LIST_OPERATION: &str = "GET /api/v1/namespaces/{namespace}/configmaps";

/// Jaeger's query API finds `request`'s span by service, operation and audit id, as the collector
/// forwarded it: the Kafka span's ids and the captured start and duration. A search for an audit id
/// no request had must find nothing (the tag filter is applied, not ignored); a search by client
/// and status code (the dashboards' trace links) finds every kubectl 404 of `exported`.
fn check_jaeger(
    jaeger: &Jaeger,
    request: &ApiRequest,
    kafka_span: &Span,
    exported: &[&ApiRequest],
    problems: &mut Vec<String>,
) -> Result<()> {
    let id = request.audit_id.as_deref().unwrap_or_default();
    let tags = [("k8s.apiserver.audit_id", id)];
    let search = || jaeger.find_traces("kube-apiserver", Some(CONFIGMAP_LIST_OPERATION), &tags);
    // The collector batches for 200 ms and Jaeger for 100 ms; by now (Kafka already read) the
    // span is normally there, the wait only covers a slow export.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut spans = search()?;
    while !spans
        .iter()
        .any(|s| s.tag("k8s.apiserver.audit_id").is_some())
    {
        if std::time::Instant::now() > deadline {
            problems.push(format!(
                "jaeger: no span for audit id {id} ({} {}) 15 s after capture; services {:?}\n{}",
                request.method,
                request.path,
                jaeger.services()?,
                jaeger.log_tail()
            ));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
        spans = search()?;
    }
    let matching: Vec<&JaegerSpan> = spans
        .iter()
        .filter(|s| s.tag("k8s.apiserver.audit_id").and_then(|v| v.as_str()) == Some(id))
        .collect();
    let [span] = matching.as_slice() else {
        problems.push(format!(
            "jaeger: {} spans with audit id {id}, expected one: {spans:?}",
            matching.len()
        ));
        return Ok(());
    };
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!("jaeger: span of {id}: {what}: {span:?}"));
        }
    };
    expect("service", span.service == "kube-apiserver");
    expect("operation", span.operation == CONFIGMAP_LIST_OPERATION);
    expect("trace id", span.trace_id == jaeger_id(&kafka_span.trace_id));
    expect("span id", span.span_id == jaeger_id(&kafka_span.span_id));
    // The API speaks microseconds (truncated from the OTLP nanoseconds).
    let start = request.start_unix_nano / 1000;
    let duration = (request.end_unix_nano - request.start_unix_nano) / 1000;
    expect("start time", span.start_micros.abs_diff(start) <= 1);
    expect("duration", span.duration_micros.abs_diff(duration) <= 1);
    expect(
        "k8s.apiserver.verb",
        span.tag("k8s.apiserver.verb").and_then(|v| v.as_str()) == Some("list"),
    );
    expect(
        "k8s.apiserver.namespace",
        span.tag("k8s.apiserver.namespace").and_then(|v| v.as_str())
            == Some(request.namespace.as_str()),
    );
    let nobody = random_token("no-such-audit-id");
    let none = jaeger.find_traces(
        "kube-apiserver",
        Some(CONFIGMAP_LIST_OPERATION),
        &[("k8s.apiserver.audit_id", nobody.as_str())],
    )?;
    if !none.is_empty() {
        problems.push(format!(
            "jaeger: a search for audit id {nobody} found {} span(s): the tag filter is ignored",
            none.len()
        ));
    }
    // The dashboards' trace-link form: service and tags only, one an integer attribute. Every
    // kubectl 404 the capture exported is found, and only spans with those tags.
    let link_tags = [
        ("k8s.apiserver.component", "kubectl"),
        ("http.response.status_code", "404"),
    ];
    let not_found = jaeger.find_traces("kube-apiserver", None, &link_tags)?;
    let found: BTreeSet<&str> = not_found
        .iter()
        .filter_map(|s| s.tag("k8s.apiserver.audit_id").and_then(|v| v.as_str()))
        .collect();
    let wanted: BTreeSet<&str> = exported
        .iter()
        .filter(|r| r.component == "kubectl" && r.code == Some(404))
        .filter_map(|r| r.audit_id.as_deref())
        .collect();
    if wanted.is_empty() || wanted.len() >= 20 || !wanted.is_subset(&found) {
        problems.push(format!(
            "jaeger: kubectl 404s by tag search: found {found:?}, exported {wanted:?} (want 1..20)"
        ));
    }
    for span in &not_found {
        let tag = |key| {
            span.tag(key)
                .map(|v| v.to_string().trim_matches('"').to_owned())
        };
        if tag("k8s.apiserver.component").as_deref() != Some("kubectl")
            || tag("http.response.status_code").as_deref() != Some("404")
        {
            problems.push(format!("jaeger: the kubectl 404 search found {span:?}"));
        }
    }
    eprintln!(
        "jaeger: {} kubectl 404(s) found by tags, {} exported",
        found.len(),
        wanted.len()
    );
    eprintln!(
        "jaeger: {} found by service, operation and audit id {id} at {}{}",
        span.operation,
        jaeger.query_url(),
        jaeger::search_path("kube-apiserver", Some(CONFIGMAP_LIST_OPERATION), &tags)
    );
    Ok(())
}

/// An OTLP trace or span id as Jaeger's JSON API writes it: lower-case hex, a 128-bit trace id
/// whose high half is zero as its low half only.
fn jaeger_id(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match hex.strip_prefix("0000000000000000") {
        Some(low) if hex.len() == 32 => low.to_owned(),
        _ => hex,
    }
}

fn check_span(request: &ApiRequest, span: &Span, problems: &mut Vec<String>) {
    let id = request.audit_id.as_deref().unwrap_or_default();
    let mut expect = |what: &str, ok: bool| {
        if !ok {
            problems.push(format!(
                "{id} {} {}: span {what}",
                request.method, request.path
            ));
        }
    };
    // SPAN_KIND_SERVER
    expect("kind", span.kind == 2);
    expect(
        "start time",
        span.start_time_unix_nano == request.start_unix_nano,
    );
    expect("end time", span.end_time_unix_nano == request.end_unix_nano);
    expect(
        "name",
        span.name.starts_with(&format!("{} ", request.method)),
    );
    let error = request.code.is_some_and(|c| c >= 500);
    // STATUS_CODE_ERROR is 2.
    expect(
        "status",
        span.status.as_ref().map_or(0, |s| s.code) == if error { 2 } else { 0 },
    );
    for (key, want) in [
        ("k8s.apiserver.verb", request.verb.as_str()),
        ("k8s.apiserver.resource", request.resource.as_str()),
        ("k8s.apiserver.namespace", request.namespace.as_str()),
        ("k8s.apiserver.name", request.name.as_str()),
    ] {
        if !want.is_empty() {
            expect(
                key,
                string_attribute(&span.attributes, key).as_deref() == Some(want),
            );
        }
    }
    if let Some(code) = request.code {
        expect(
            "http.response.status_code",
            int_attribute(&span.attributes, "http.response.status_code") == Some(i64::from(code)),
        );
    }
}

fn decode_spans(records: &[Vec<u8>]) -> Result<Vec<Span>> {
    let mut spans = Vec::new();
    for record in records {
        let request = ExportTraceServiceRequest::decode(record.as_slice())
            .context("a traces record is not OTLP protobuf")?;
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    Ok(spans)
}

fn decode_logs(records: &[Vec<u8>]) -> Result<Vec<LogRecord>> {
    let mut logs = Vec::new();
    for record in records {
        let request = ExportLogsServiceRequest::decode(record.as_slice())
            .context("a logs record is not OTLP protobuf")?;
        for resource in request.resource_logs {
            for scope in resource.scope_logs {
                logs.extend(scope.log_records);
            }
        }
    }
    Ok(logs)
}

fn value_of<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    match value_of(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value_of(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn label_key(labels: &BTreeMap<String, String>) -> String {
    LABELS
        .split(',')
        .map(|l| {
            format!(
                "{l}=\"{}\"",
                labels.get(l).map(String::as_str).unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A value no fixture or log could contain by chance.
fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}
