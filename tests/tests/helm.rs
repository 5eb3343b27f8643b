//! The Helm chart (charts/apiscope) against real tools: `helm lint --strict` and `helm template`
//! (Helm 3.22, scripts/install-helm.sh), then `kubectl apply --dry-run=server` of every rendered
//! manifest against the test cluster's real kube-apiserver, which runs its full validation and
//! admission (the ServiceMonitor and PrometheusRule against the prometheus-operator CRDs, installed
//! for real first). Rendered twice: with the default values, and with every optional part on.
//!
//! Also checked on the rendered objects: the exporter's pod runs with hostPID, not privileged,
//! exactly the capabilities BPF, PERFMON and SYS_PTRACE, a read-only root filesystem, probes on
//! `/healthz`, only on control-plane nodes, with apiscope.yaml from its ConfigMap; the collector's
//! rendered config passes the real collector's `validate` (the exporters switched on are in it and
//! in its pipelines, the ones off are not); the PrometheusRule carries every rule of
//! dashboards/rules/.
//!
//! Needs no root. Skipped when Helm, the CRDs or the Kubernetes build are missing (only the
//! `validate` check when the collector is), unless
//! `APISCOPE_REQUIRE_TOOLS` is set (as `make test` does), where that fails instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use apiscope_e2e::apiscope::apiscope_binary;
use apiscope_e2e::cluster::{
    ClusterOptions, KubernetesVersion, TestCluster, cached_binary, kubernetes_binary,
};
use apiscope_e2e::otelcol;
use serde::Deserialize as _;
use serde_yaml::Value;

const NAMESPACE: &str = "apiscope";
const RELEASE: &str = "e2e";

/// Every optional part on: CRD kinds, every collector exporter, a capture policy, extra config.
const ALL_ON_VALUES: &str = r#"
clusterName: e2e
serviceMonitor:
  enabled: true
  labels: {release: kube-prometheus-stack}
prometheusRule:
  enabled: true
collector:
  kafka: {enabled: true, brokers: "kafka-0.kafka:9092,kafka-1.kafka:9092"}
  traces: {enabled: true, endpoint: "jaeger-collector.tracing:4317", insecure: false}
  loki: {enabled: true, endpoint: "http://loki-gateway.logging/otlp"}
  remoteWrite: {enabled: true, endpoint: "http://prometheus.monitoring:9090/api/v1/write"}
exporter:
  extraCapabilities: [SYS_RESOURCE]
  config: {include_outgoing: true, max_decoder_bytes: 134217728}
  capturePolicy: |
    apiVersion: apiscope.io/v1
    kind: CapturePolicy
    rules:
      - level: Metadata
relay:
  replicas: 2
  extraArgs: ["--history-window=30m", "--kafka-property=fetch.wait.max.ms=100", "--ui-max-history=20000"]
networkPolicy:
  metricsFrom:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: monitoring}
"#;

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/apiscope")
}

struct Tools {
    helm: PathBuf,
    crds: PathBuf,
}

fn tools_or_skip() -> Option<Tools> {
    let helm = cached_binary("HELM_BIN", "helm.env");
    let crds = std::env::var_os("PROMETHEUS_OPERATOR_CRDS")
        .map(PathBuf::from)
        .or_else(|| {
            let text =
                std::fs::read_to_string(apiscope_e2e::cluster::apiscope_cache().join("helm.env"))
                    .ok()?;
            text.lines()
                .find_map(|line| line.strip_prefix("PROMETHEUS_OPERATOR_CRDS="))
                .map(|dir| PathBuf::from(dir.trim()))
        })
        .filter(|dir| dir.is_dir());
    let apiserver = kubernetes_binary(KubernetesVersion::newest(), "kube-apiserver").ok();
    let mut missing = Vec::new();
    if helm.is_none() {
        missing.push("helm (scripts/install-helm.sh)");
    }
    if crds.is_none() {
        missing.push("the prometheus-operator CRDs (scripts/install-helm.sh)");
    }
    if apiserver.is_none() {
        missing.push("the newest kube-apiserver build (make setup)");
    }
    if missing.is_empty() {
        return Some(Tools {
            helm: helm?,
            crds: crds?,
        });
    }
    assert!(
        std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
        "APISCOPE_REQUIRE_TOOLS is set but these are missing: {}",
        missing.join(", ")
    );
    eprintln!("skipped: the Helm chart test needs {}", missing.join(", "));
    None
}

/// Runs a tool to completion and returns its stdout, or fails with its stderr.
fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn helm(tools: &Tools, args: &[&str], values: Option<&Path>) -> Result<String> {
    let mut command = Command::new(&tools.helm);
    command.args(args).arg(chart_dir());
    if let Some(values) = values {
        command.arg("--values").arg(values);
    }
    // Helm's own state (repositories, cache) stays out of ~/.config and ~/.cache.
    let home = std::env::temp_dir().join("apiscope-e2e-helm-home");
    command
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    run(&mut command)
}

fn documents(manifests: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(manifests) {
        let value = Value::deserialize(document).context("rendered YAML does not parse")?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

fn find<'a>(objects: &'a [Value], kind: &str, component: &str) -> Result<&'a Value> {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind && o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        })
        .with_context(|| format!("no {kind} of component {component} rendered"))
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_string))
        .collect()
}

/// What the chart promises about the exporter's pod.
fn check_exporter(objects: &[Value], capabilities: &[&str]) -> Result<()> {
    let daemonset = find(objects, "DaemonSet", "exporter")?;
    let pod = &daemonset["spec"]["template"]["spec"];
    ensure!(pod["hostPID"] == true, "exporter without hostPID");
    ensure!(pod["hostNetwork"].is_null(), "exporter on the host network");
    ensure!(
        pod["nodeSelector"]["node-role.kubernetes.io/control-plane"] == "",
        "exporter not limited to control-plane nodes: {:?}",
        pod["nodeSelector"]
    );
    ensure!(
        pod["volumes"]
            .as_sequence()
            .is_some_and(|v| v.iter().all(|v| v["hostPath"].is_null())),
        "exporter mounts a hostPath"
    );
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    ensure!(security["privileged"] == false, "exporter privileged");
    ensure!(security["readOnlyRootFilesystem"] == true);
    ensure!(security["allowPrivilegeEscalation"] == false);
    ensure!(security["capabilities"]["drop"][0] == "ALL");
    let added: Vec<&str> = security["capabilities"]["add"]
        .as_sequence()
        .context("no capabilities added")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(added == capabilities, "exporter capabilities {added:?}");
    for probe in ["livenessProbe", "readinessProbe"] {
        ensure!(
            container[probe]["httpGet"]["path"] == "/healthz",
            "{probe}: {:?}",
            container[probe]
        );
    }
    ensure!(container["resources"]["limits"]["memory"].is_string());
    ensure!(
        container["args"]
            == serde_yaml::from_str::<Value>("[capture, --config=/etc/apiscope/apiscope.yaml]")?
    );
    let config = find(objects, "ConfigMap", "exporter")?["data"]["apiscope.yaml"]
        .as_str()
        .context("no apiscope.yaml")?;
    let config: Value = serde_yaml::from_str(config)?;
    ensure!(config["metrics_address"] == "0.0.0.0:9464", "{config:?}");
    ensure!(
        config["otlp_endpoint"] == "http://e2e-apiscope-collector.apiscope.svc:4317",
        "{config:?}"
    );
    Ok(())
}

/// The relay's rendered command line is one the real binary accepts (`--help` last: clap reads
/// and checks every argument before it, then prints the help instead of running), and its
/// metrics port is served and scraped.
fn check_relay(objects: &[Value]) -> Result<()> {
    let deployment = find(objects, "Deployment", "relay")?;
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_sequence()
        .context("relay args")?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .context("relay arg not a string")
        })
        .collect::<Result<_>>()?;
    ensure!(
        args.first().map(String::as_str) == Some("relay"),
        "{args:?}"
    );
    ensure!(
        args.iter().any(|a| a == "--metrics-address=0.0.0.0:9464"),
        "relay metrics not on the pod's address: {args:?}"
    );
    let ports = container["ports"].as_sequence().context("relay ports")?;
    ensure!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 9464),
        "relay ports {ports:?}"
    );
    let service = find(objects, "Service", "relay")?;
    ensure!(
        service["metadata"]["labels"]["apiscope.io/job"] == "apiscope-relay",
        "relay Service labels {:?}",
        service["metadata"]["labels"]
    );
    let binary = apiscope_binary();
    if !binary.is_file() {
        assert!(
            std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
            "{} missing (make build)",
            binary.display()
        );
        eprintln!(
            "skipped the relay's arguments: {} missing",
            binary.display()
        );
        return Ok(());
    }
    let output = Command::new(&binary)
        .args(&args)
        .arg("--help")
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    ensure!(
        output.status.success(),
        "apiscope refused the chart's relay arguments {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The rendered collector config passes the real collector's `validate`, and has exactly the
/// exporters that are on.
fn check_collector(objects: &[Value], workdir: &Path, exporters_on: &[&str]) -> Result<()> {
    let config = find(objects, "ConfigMap", "collector")?["data"]["config.yaml"]
        .as_str()
        .context("no collector config.yaml")?;
    let parsed: Value = serde_yaml::from_str(config)?;
    let exporters: BTreeSet<&str> = parsed["exporters"]
        .as_mapping()
        .context("no exporters")?
        .keys()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        exporters == exporters_on.iter().copied().collect(),
        "collector exporters {exporters:?}, expected {exporters_on:?}"
    );
    let path = workdir.join("collector-config.yaml");
    std::fs::write(&path, config)?;
    // The collector is a separate build: without it (and outside `make test`) only this check is
    // skipped, the rest of the chart test still runs.
    let Some(collector) = otelcol::collector_binary() else {
        assert!(
            std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
            "APISCOPE_REQUIRE_TOOLS is set but the collector is missing (scripts/install-otelcol.sh)"
        );
        eprintln!("skipped: otelcol validate of the rendered config (no collector built)");
        return Ok(());
    };
    run(Command::new(collector)
        .arg("validate")
        .arg("--config")
        .arg(&path))
    .context("the rendered collector config")?;
    Ok(())
}

fn dry_run(cluster: &TestCluster, manifests: &Path) -> Result<String> {
    let path = manifests.to_str().context("path")?;
    cluster.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "--namespace",
        NAMESPACE,
        "-f",
        path,
    ])
}

#[test]
fn chart_lints_renders_and_is_accepted_by_the_apiserver() -> Result<()> {
    let Some(tools) = tools_or_skip() else {
        return Ok(());
    };
    let workdir = tempfile_dir()?;
    let all_on_values = workdir.join("all-on.yaml");
    std::fs::write(&all_on_values, ALL_ON_VALUES)?;

    helm(&tools, &["lint", "--strict"], None)?;
    helm(&tools, &["lint", "--strict"], Some(&all_on_values))?;
    let template = ["template", RELEASE, "--namespace", NAMESPACE];
    let default = helm(&tools, &template, None)?;
    let all_on = helm(&tools, &template, Some(&all_on_values))?;

    let default_objects = documents(&default)?;
    let all_on_objects = documents(&all_on)?;
    let base_kinds: BTreeSet<String> = [
        "ConfigMap",
        "DaemonSet",
        "Deployment",
        "NetworkPolicy",
        "Secret",
        "Service",
    ]
    .map(String::from)
    .into();
    ensure!(
        kinds(&default_objects) == base_kinds,
        "{:?}",
        kinds(&default_objects)
    );
    let mut all_kinds = base_kinds.clone();
    all_kinds.extend(["PrometheusRule".to_string(), "ServiceMonitor".to_string()]);
    let monitors = all_on_objects
        .iter()
        .filter(|o| o["kind"] == "ServiceMonitor")
        .count();
    ensure!(
        monitors == 3,
        "{monitors} ServiceMonitors: exporter, collector and relay expected"
    );
    ensure!(
        kinds(&all_on_objects) == all_kinds,
        "{:?}",
        kinds(&all_on_objects)
    );

    check_exporter(&default_objects, &["BPF", "PERFMON", "SYS_PTRACE"])?;
    check_exporter(
        &all_on_objects,
        &["BPF", "PERFMON", "SYS_PTRACE", "SYS_RESOURCE"],
    )?;
    check_relay(&default_objects)?;
    check_relay(&all_on_objects)?;
    check_collector(&default_objects, &workdir, &["kafka"])?;
    check_collector(
        &all_on_objects,
        &workdir,
        &[
            "kafka",
            "otlp_grpc/tempo",
            "otlp_http/loki",
            "prometheus_remote_write",
        ],
    )?;
    // The PrometheusRule holds every group of dashboards/rules/, alerts and records alike.
    let rule = find(&all_on_objects, "PrometheusRule", "rules")?;
    let rendered_groups = rule["spec"]["groups"]
        .as_sequence()
        .context("groups")?
        .len();
    let mut source_groups = 0;
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/rules"))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let file: Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
            source_groups += file["groups"].as_sequence().map_or(0, Vec::len);
        }
    }
    ensure!(
        rendered_groups == source_groups && source_groups > 0,
        "PrometheusRule has {rendered_groups} groups, dashboards/rules/ {source_groups}"
    );

    let cluster = TestCluster::start(ClusterOptions::default())?;
    cluster.kubectl_ok(&["create", "namespace", NAMESPACE])?;
    // The CRD kinds are validated against their real schemas: install the CRDs first.
    let crds = tools.crds.to_str().context("CRD path")?;
    cluster.kubectl_ok(&["apply", "--server-side", "-f", crds])?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ])?;
    for (name, manifests, objects) in [
        ("default", &default, &default_objects),
        ("all-on", &all_on, &all_on_objects),
    ] {
        let path = workdir.join(format!("{name}.yaml"));
        std::fs::write(&path, manifests)?;
        let out = dry_run(&cluster, &path).with_context(|| format!("values {name}"))?;
        // One "created (server dry run)" line per object: none was skipped.
        let accepted = out
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        ensure!(
            accepted == objects.len(),
            "values {name}: {accepted} of {} objects accepted:\n{out}",
            objects.len()
        );
        eprintln!("values {name}: the apiserver accepted all {accepted} objects");
    }
    cluster.stop()?;
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("apiscope-e2e-helm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
