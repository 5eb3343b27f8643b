//! `apiscope relay` against real components (root): the test cluster's apiserver captured by
//! `apiscope capture`, spans sent over OTLP to the real collector (the production config), which
//! writes them to a real Kafka; two relays read that topic, as two replicas behind one Service.
//!
//! Checks: a relay started after the traffic has it as history (read back from Kafka by time);
//! both relays stream the same later requests live to their WebSocket clients; `history.limit`
//! and `history.since_unix_nano` bound what a client gets; the requests are the ones kubectl made
//! (audit ids, verbs, codes); the relay's metrics count what it read and nothing it could not
//! decode.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster};
use apiscope_e2e::kafka::{self, KafkaBroker};
use apiscope_e2e::otelcol::{self, Collector};
use apiscope_e2e::relay::{ApiscopeRelay, LiveClient};
use serde_json::{Value, json};

const TOPICS: [&str; 3] = ["apiscope-traces", "apiscope-logs", "apiscope-metrics"];
const NAMESPACE: &str = "relay-e2e";
// kubectl only: the controller-manager publishes kube-root-ca.crt into every new namespace.
const FILTER: &str =
    r#"namespace == "relay-e2e" and resource == "configmaps" and client == "kubectl""#;
/// How long a request may take from kubectl through the collector and Kafka to a relay's client.
const ARRIVAL: Duration = Duration::from_secs(60);

fn tools_or_skip() -> bool {
    let mut missing = Vec::new();
    if otelcol::collector_binary().is_none() {
        missing.push("the OpenTelemetry Collector (scripts/install-otelcol.sh)");
    }
    if !kafka::kafka_installed() {
        missing.push("Apache Kafka (scripts/install-kafka.sh)");
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

/// What a client has seen: the hello, the history rows, the live rows after `history_end`.
#[derive(Default)]
struct Seen {
    hello: Option<Value>,
    history: Vec<Value>,
    history_done: bool,
    live: Vec<Value>,
}

impl Seen {
    fn all(&self) -> impl Iterator<Item = &Value> {
        self.history.iter().chain(&self.live)
    }

    fn audit_ids(&self) -> BTreeSet<String> {
        self.all()
            .filter_map(|row| row["request"]["audit_id"].as_str().map(str::to_string))
            .collect()
    }
}

/// The names of the `get`s among `rows` (a create's path holds no name).
fn got_names<'a>(rows: impl Iterator<Item = &'a Value>) -> Vec<String> {
    rows.filter(|row| row["request"]["verb"] == "get")
        .filter_map(|row| row["request"]["name"].as_str().map(str::to_string))
        .collect()
}

fn has_all(got: &[String], names: &[String]) -> bool {
    names.iter().all(|n| got.contains(n))
}

/// Reads messages until `done(seen)` holds or `timeout` passes; returns whether it held.
fn read_until(
    client: &mut LiveClient,
    seen: &mut Seen,
    timeout: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done(seen) {
            return Ok(true);
        }
        let Some(message) = client.next_message(Duration::from_millis(500))? else {
            continue;
        };
        match message["type"].as_str() {
            Some("hello") => seen.hello = Some(message),
            Some("requests") => {
                let items = message["items"].as_array().cloned().unwrap_or_default();
                if seen.history_done {
                    seen.live.extend(items);
                } else {
                    seen.history.extend(items);
                }
            }
            Some("history_end") => seen.history_done = true,
            Some("error") => bail!("the relay refused the subscription: {message}"),
            _ => {}
        }
    }
    Ok(done(seen))
}

/// A new subscription on `client`, read up to its `history_end`.
fn subscribe(client: &mut LiveClient, history: Value) -> Result<Seen> {
    client.subscribe(FILTER, history)?;
    let mut seen = Seen::default();
    ensure!(
        read_until(client, &mut seen, Duration::from_secs(10), |s| s
            .history_done)?,
        "no history_end within 10 s"
    );
    Ok(seen)
}

/// `create` then `get` of each ConfigMap.
fn create_and_get(cluster: &TestCluster, names: &[String]) -> Result<()> {
    for name in names {
        cluster.kubectl_ok(&[
            "create",
            "configmap",
            name,
            "--namespace",
            NAMESPACE,
            "--from-literal=k=v",
        ])?;
        cluster.kubectl_ok(&["get", "configmap", name, "--namespace", NAMESPACE])?;
    }
    Ok(())
}

fn metric_value(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn two_relays_serve_the_same_requests_from_kafka() -> Result<()> {
    if !require_root("the relay test") || !tools_or_skip() {
        return Ok(());
    }
    let dir = test_dir("relay")?;
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes: KubernetesVersion::newest(),
        ..ClusterOptions::default()
    })?;
    let broker = KafkaBroker::start(&dir.join("kafka"))?;
    broker.create_topics(&TOPICS, Duration::from_secs(30))?;
    let bootstrap = broker.bootstrap();
    // Tempo, Loki and Prometheus stay unreachable: each exporter has its own queue.
    let collector = Collector::start(
        &dir.join("otelcol"),
        &[("KAFKA_BROKERS", bootstrap.as_str())],
    )?;
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
        ],
    )?;
    capture.wait_attached(cluster.apiserver_pid())?;
    let token = format!("relay-token-{}", std::process::id()).repeat(2);
    let token_file = dir.join("ui-token");
    std::fs::write(&token_file, format!("{token}\n"))?;

    // Relay A runs from the start; its client sees the early requests arrive live.
    let relay_a = ApiscopeRelay::start("a", &bootstrap, &token_file, &[])?;
    let mut client_a = LiveClient::connect(&relay_a.address, &token)?;
    let mut seen_a = subscribe(&mut client_a, json!({"limit": 500}))?;
    let hello = seen_a.hello.clone().context("relay a: no hello")?;
    ensure!(
        hello["mode"] == "relay" && hello["protocol"] == 1,
        "relay a: hello {hello}"
    );
    cluster.kubectl_ok(&["create", "namespace", NAMESPACE])?;
    let early: Vec<String> = (0..4).map(|i| format!("relay-early-{i}")).collect();
    create_and_get(&cluster, &early)?;
    ensure!(
        read_until(&mut client_a, &mut seen_a, ARRIVAL, |s| has_all(
            &got_names(s.live.iter()),
            &early
        ))?,
        "relay a: the early requests did not arrive live within {ARRIVAL:?} (got {:?})",
        got_names(seen_a.all())
    );

    // Relay B starts after them: it has them from Kafka, as history. It may not have read the
    // topic yet when the client subscribes: subscribe again (each subscribe starts over) until
    // the history holds them, bounded.
    let relay_b = ApiscopeRelay::start("b", &bootstrap, &token_file, &["--history-window", "10m"])?;
    let mut client_b = LiveClient::connect(&relay_b.address, &token)?;
    let deadline = Instant::now() + ARRIVAL;
    let mut seen_b = subscribe(&mut client_b, json!({"limit": 500}))?;
    while !has_all(&got_names(seen_b.history.iter()), &early) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        seen_b = subscribe(&mut client_b, json!({"limit": 500}))?;
    }
    ensure!(
        has_all(&got_names(seen_b.history.iter()), &early),
        "relay b: its history from Kafka lacks the early requests: {:?}",
        got_names(seen_b.history.iter())
    );

    // Later requests: both relays stream them live.
    let late: Vec<String> = (0..4).map(|i| format!("relay-late-{i}")).collect();
    create_and_get(&cluster, &late)?;
    for (label, client, seen) in [
        ("a", &mut client_a, &mut seen_a),
        ("b", &mut client_b, &mut seen_b),
    ] {
        ensure!(
            read_until(client, seen, ARRIVAL, |s| has_all(
                &got_names(s.live.iter()),
                &late
            ))?,
            "relay {label}: the late requests did not arrive live within {ARRIVAL:?} (got {:?})",
            got_names(seen.live.iter())
        );
    }
    // Let stragglers (the last create's span may trail its get's) reach both.
    read_until(&mut client_a, &mut seen_a, Duration::from_secs(3), |_| {
        false
    })?;
    read_until(&mut client_b, &mut seen_b, Duration::from_secs(3), |_| {
        false
    })?;

    // The same requests on both relays, and the ones kubectl made.
    let mut problems = Vec::new();
    let (ids_a, ids_b) = (seen_a.audit_ids(), seen_b.audit_ids());
    let expected_rows = 2 * (early.len() + late.len());
    if ids_a != ids_b || ids_a.len() != expected_rows {
        problems.push(format!(
            "audit ids differ or miss: a has {}, b has {}, {} in common, {expected_rows} made",
            ids_a.len(),
            ids_b.len(),
            ids_a.intersection(&ids_b).count()
        ));
    }
    for row in seen_a.all().chain(seen_b.all()) {
        let request = &row["request"];
        let expected = match (request["verb"].as_str(), request["method"].as_str()) {
            (Some("create"), Some("POST")) => 201,
            (Some("get"), Some("GET")) => 200,
            _ => {
                problems.push(format!("unexpected row {row}"));
                continue;
            }
        };
        if request["code"] != expected || request["end_unix_nano"].as_u64().unwrap_or(0) == 0 {
            problems.push(format!("row {row}: code or end time"));
        }
    }

    // History bounds: `limit` keeps the newest; `since_unix_nano` starts later.
    let mut client_limited = LiveClient::connect(&relay_b.address, &token)?;
    let limited = subscribe(&mut client_limited, json!({"limit": 2}))?;
    let newest = seen_b
        .all()
        .last()
        .map(|row| row["request"]["audit_id"].clone());
    if limited.history.len() != 2
        || limited
            .history
            .last()
            .map(|row| row["request"]["audit_id"].clone())
            != newest
    {
        problems.push(format!(
            "history limit 2 gave {} rows, not ending with the newest",
            limited.history.len()
        ));
    }
    let first_late_end = seen_b
        .live
        .iter()
        .find(|row| row["request"]["name"] == late[0].as_str())
        .and_then(|row| row["request"]["end_unix_nano"].as_u64())
        .context("the first late request's end time")?;
    let mut client_since = LiveClient::connect(&relay_b.address, &token)?;
    let since = subscribe(
        &mut client_since,
        json!({"limit": 500, "since_unix_nano": first_late_end}),
    )?;
    let since_names = got_names(since.history.iter());
    if since_names.iter().any(|n| early.contains(n)) || !has_all(&since_names, &late) {
        problems.push(format!(
            "history since the first late request: {since_names:?}"
        ));
    }

    // A relay never reads more history than it keeps: with --ui-max-history 3 it starts 3
    // records back, not at the window's start. What it read is then at most those 3 plus what
    // arrived meanwhile (relay b counts the same records).
    let records = |relay: &ApiscopeRelay| -> Result<f64> {
        Ok(metric_value(
            &relay.scrape_metrics()?,
            "apiscope_relay_kafka_records_total",
        ))
    };
    let before = records(&relay_b)?;
    let relay_c = ApiscopeRelay::start("c", &bootstrap, &token_file, &["--ui-max-history", "3"])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while records(&relay_c)? < 3.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (read_c, after) = (records(&relay_c)?, records(&relay_b)?);
    eprintln!("relay c read {read_c} records; the topic had {before}, then {after}");
    if before < 20.0 || read_c > 3.0 + (after - before) + 5.0 {
        problems.push(format!(
            "relay c (--ui-max-history 3) read {read_c} records; the topic had {before}, \
             {} arrived meanwhile",
            after - before
        ));
    }
    relay_c.stop()?;

    let metrics = relay_b.scrape_metrics()?;
    for (name, at_least) in [
        ("apiscope_relay_kafka_records_total", 1.0),
        ("apiscope_relay_requests_total", expected_rows as f64),
        ("apiscope_relay_kafka_partitions", 1.0),
        ("apiscope_relay_last_record_timestamp_seconds", 1.0),
    ] {
        let value = metric_value(&metrics, name);
        if value < at_least {
            problems.push(format!(
                "relay b: {name} = {value}, expected at least {at_least}"
            ));
        }
    }
    let undecodable = metric_value(&metrics, "apiscope_relay_undecodable_records_total");
    if undecodable != 0.0 {
        problems.push(format!("relay b: {undecodable} undecodable records"));
    }
    // A wrong token is refused before the upgrade.
    if LiveClient::connect(&relay_b.address, "not-the-token-0123456789").is_ok() {
        problems.push("relay b accepted a wrong token".into());
    }

    relay_a.stop()?;
    relay_b.stop()?;
    capture.stop()?;
    collector.stop()?;
    broker.stop()?;
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    cluster.stop()
}
