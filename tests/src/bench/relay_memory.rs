//! `apiscope relay` under slow browsers (bench phase `relay`): a real Kafka, one relay with its
//! default bounds, and three WebSocket clients: one that reads everything, one that reads a
//! message a second, one that subscribes and never reads again. Records of one span each (an
//! apiscope span of a LIST, ~1.1 KB of OTLP protobuf, as the collector writes them) are produced
//! first as fast as the broker takes them (how fast the relay reads), then at a steady rate for
//! longer than the write timeout (so the client that never reads is disconnected), while the
//! relay's resident memory is sampled.
//! What matters: memory stays bounded by the history and the broadcast ring whatever the
//! clients do, and the slow clients are told what they missed.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apiscope::k8s::ApiRequest;
use apiscope::relay::decode::proto_attributes;
use apiscope::sinks::attributes::span_attributes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Serialize;

use super::metrics_text;
use super::procfs::memory_use;
use crate::kafka::KafkaBroker;
use crate::relay::{ApiscopeRelay, LiveClient};

const TOPIC: &str = "bench-relay-traces";

#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayRow {
    pub build: String,
    pub record_bytes: usize,
    /// The burst: records produced at once, and how fast the relay read them (from the first
    /// produced to the last read).
    pub burst_records: usize,
    pub burst_records_per_second: f64,
    /// Then the steady part: this rate for this long.
    pub steady_rate: f64,
    pub steady_seconds: f64,
    pub rss_idle_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_end_mib: f64,
    pub history_requests: f64,
    pub history_mib: f64,
    pub fast_client_rows: u64,
    pub slow_client_rows: u64,
    /// Rows the `dropped` notices told the slow client it missed.
    pub slow_client_told_dropped: u64,
    pub server_dropped_slow_client: f64,
    pub server_dropped_write_timeout: f64,
}

/// One LIST as apiscope exports it, with `index` in its audit id.
fn record(index: usize) -> Vec<u8> {
    let request = ApiRequest {
        audit_id: Some(format!("00000000-0000-4000-8000-{index:012}")),
        start_unix_nano: 1_796_000_000_000_000_000 + index as u64 * 1_000_000,
        end_unix_nano: 1_796_000_000_000_000_000 + index as u64 * 1_000_000 + 3_000_000,
        verb: "list".into(),
        metric_verb: "LIST".into(),
        is_resource_request: true,
        version: "v1".into(),
        resource: "configmaps".into(),
        namespace: "bench".into(),
        scope: "namespace".into(),
        method: "GET".into(),
        path: "/api/v1/namespaces/bench/configmaps".into(),
        query: "limit=500".into(),
        code: Some(200),
        protocol: "2".into(),
        response_content_type: "application/json".into(),
        response_body_bytes: 15_321,
        response_wire_bytes: 15_400,
        user_agent: "kubectl/v1.37.2 (linux/amd64) kubernetes/8f9a7b1".into(),
        component: "kubectl".into(),
        list_items: Some(20),
        ..ApiRequest::default()
    };
    let attributes = proto_attributes(span_attributes(&request));
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: apiscope::sinks::otlp::SCOPE.into(),
                    ..InstrumentationScope::default()
                }),
                spans: vec![Span {
                    name: "GET /api/v1/namespaces/{namespace}/configmaps".into(),
                    kind: SpanKind::Server as i32,
                    start_time_unix_nano: request.start_unix_nano,
                    end_time_unix_nano: request.end_unix_nano,
                    attributes,
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
    .encode_to_vec()
}

struct ClientCounts {
    rows: AtomicU64,
    told_dropped: AtomicU64,
}

/// Reads the stream on a thread: every message, or one per `pause`; `None`: never after the
/// subscription.
fn client(
    address: String,
    token: String,
    pause: Option<Duration>,
    stop: Arc<AtomicBool>,
) -> Result<(Arc<ClientCounts>, std::thread::JoinHandle<()>)> {
    let mut live = LiveClient::connect(&address, &token)?;
    live.subscribe("", serde_json::json!({"limit": 0}))?;
    let counts = Arc::new(ClientCounts {
        rows: AtomicU64::new(0),
        told_dropped: AtomicU64::new(0),
    });
    let thread = {
        let counts = counts.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(pause) = pause else {
                    // Holds the connection without reading: the server must not buffer for it.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                match live.next_message(Duration::from_millis(200)) {
                    Ok(Some(message)) => match message["type"].as_str() {
                        Some("requests") => {
                            let n = message["items"].as_array().map_or(0, Vec::len);
                            counts.rows.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Some("dropped") => {
                            let n = message["count"].as_u64().unwrap_or(0);
                            counts.told_dropped.fetch_add(n, Ordering::Relaxed);
                        }
                        _ => {}
                    },
                    Ok(None) => {}
                    Err(_) => break,
                }
                std::thread::sleep(pause);
            }
        })
    };
    Ok((counts, thread))
}

fn rss_mib(pid: u32) -> Result<f64> {
    Ok(memory_use(pid)?.rss_bytes as f64 / (1 << 20) as f64)
}

fn metric(samples: &[metrics_text::Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum::<f64>()
        + 0.0 // an empty sum is -0.0
}

/// Sends one record, waiting for room in the producer's queue.
fn produce(producer: &BaseProducer, payload: &[u8]) -> Result<()> {
    loop {
        match producer.send(BaseRecord::<(), [u8]>::to(TOPIC).payload(payload)) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => bail!("producing to {TOPIC}: {error}"),
        }
    }
}

/// Waits (bounded) until the relay has read `count` records, sampling its memory.
fn wait_read(relay: &ApiscopeRelay, count: usize, rss_peak: &mut f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        *rss_peak = rss_peak.max(rss_mib(relay.pid())?);
        let samples = metrics_text::parse(&relay.scrape_metrics()?);
        let read = metric(&samples, "apiscope_relay_kafka_records_total", None);
        if read >= count as f64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the relay read {read} of {count} records in 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `burst` records at once, then `steady_rate` a second for `steady` (longer than the relay's
/// 30 s write timeout, to see the client that never reads disconnected).
pub fn measure(
    workdir: &Path,
    build: &str,
    binary: &Path,
    burst: usize,
    steady_rate: f64,
    steady: Duration,
) -> Result<RelayRow> {
    let broker = KafkaBroker::start(&workdir.join("kafka"))?;
    broker.create_topics(&[TOPIC], Duration::from_secs(30))?;
    let bootstrap = broker.bootstrap();
    let token = format!("bench-relay-token-{}", std::process::id());
    let token_file = workdir.join("relay-token");
    std::fs::write(&token_file, &token)?;
    let relay = ApiscopeRelay::start_binary(
        binary,
        build,
        &bootstrap,
        &token_file,
        &["--kafka-topic", TOPIC],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let (fast, fast_thread) = client(
        relay.address.clone(),
        token.clone(),
        Some(Duration::ZERO),
        stop.clone(),
    )?;
    let (slow, slow_thread) = client(
        relay.address.clone(),
        token.clone(),
        Some(Duration::from_secs(1)),
        stop.clone(),
    )?;
    let (_, stalled_thread) = client(relay.address.clone(), token, None, stop.clone())?;
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_mib(relay.pid())?;

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("broker.address.family", "v4")
        .set("linger.ms", "5")
        .create()
        .context("creating a Kafka producer")?;
    let payloads: Vec<Vec<u8>> = (0..1000).map(record).collect();
    let record_bytes = payloads[0].len();
    let mut rss_peak = rss_idle;
    let started = Instant::now();
    for index in 0..burst {
        produce(&producer, &payloads[index % payloads.len()])?;
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    wait_read(&relay, burst, &mut rss_peak)?;
    let burst_seconds = started.elapsed().as_secs_f64();

    let steady_started = Instant::now();
    let mut sent = 0usize;
    let mut last_sample = Instant::now();
    while steady_started.elapsed() < steady {
        let due = (steady_started.elapsed().as_secs_f64() * steady_rate) as usize;
        while sent < due {
            produce(&producer, &payloads[sent % payloads.len()])?;
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        if last_sample.elapsed() >= Duration::from_millis(250) {
            rss_peak = rss_peak.max(rss_mib(relay.pid())?);
            last_sample = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    wait_read(&relay, burst + sent, &mut rss_peak)?;
    std::thread::sleep(Duration::from_secs(1));
    let rss_end = rss_mib(relay.pid())?;
    let samples = metrics_text::parse(&relay.scrape_metrics()?);
    stop.store(true, Ordering::Relaxed);
    for thread in [fast_thread, slow_thread, stalled_thread] {
        let _ = thread.join();
    }
    let dropped = "apiscope_live_dropped_requests_total";
    let row = RelayRow {
        build: build.to_string(),
        record_bytes,
        burst_records: burst,
        burst_records_per_second: burst as f64 / burst_seconds,
        steady_rate,
        steady_seconds: steady.as_secs_f64(),
        rss_idle_mib: rss_idle,
        rss_peak_mib: rss_peak,
        rss_end_mib: rss_end,
        history_requests: metric(&samples, "apiscope_live_history_requests", None),
        history_mib: metric(&samples, "apiscope_live_history_bytes", None) / (1 << 20) as f64,
        fast_client_rows: fast.rows.load(Ordering::Relaxed),
        slow_client_rows: slow.rows.load(Ordering::Relaxed),
        slow_client_told_dropped: slow.told_dropped.load(Ordering::Relaxed),
        server_dropped_slow_client: metric(&samples, dropped, Some(("reason", "slow_client"))),
        server_dropped_write_timeout: metric(&samples, dropped, Some(("reason", "write_timeout"))),
    };
    relay.stop()?;
    broker.stop()?;
    Ok(row)
}
