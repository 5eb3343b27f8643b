//! Reads the traces topic into the live bus. Every relay reads every partition itself, from
//! `--history-window` ago (the broker's time index, `offsets_for_times`; at most
//! `--ui-max-history` records back) and then as records arrive: no consumer group splits the stream and no offset is ever committed, so every relay
//! behind one Service holds the same requests, and a restart starts from the window again.
//! The Kafka client is blocking; it runs on its own thread and only publishes to the bus, which
//! never waits for a browser.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::decode::decode_traces_record;
use super::metrics::RelayMetrics;
use crate::sinks::live::LiveBus;

/// How the relay reaches Kafka.
#[derive(Clone, Debug)]
pub struct KafkaSourceConfig {
    pub brokers: String,
    pub topic: String,
    pub history_window: Duration,
    /// At start, read at most this many records per partition (the bus keeps no more requests
    /// than this anyway): a busy topic's whole window is never read.
    pub max_history_records: usize,
    /// librdkafka properties given with `--kafka-property KEY=VALUE` (TLS, SASL, ...).
    pub properties: Vec<(String, String)>,
}

/// How often the topic's partition count is checked (partitions added later are read from
/// their beginning).
const METADATA_REFRESH: Duration = Duration::from_secs(30);
/// Each metadata or offset request; also how long a stop may wait for one in flight.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// What the client may buffer ahead of the bus (librdkafka's default is 64 MiB per client).
const MAX_PREFETCH_KBYTES: &str = "16384";

/// librdkafka's own reports: errors counted in `apiscope_relay_kafka_errors_total`, and its error
/// and warning lines logged at most once per [`REPORT_EVERY`] (with how many were held back). A
/// broker that is down makes it report every reconnect attempt, ten a second.
struct RelayContext {
    metrics: Arc<RelayMetrics>,
    last_report: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

const REPORT_EVERY: Duration = Duration::from_secs(10);

impl RelayContext {
    fn report(&self, what: &str, text: &str) {
        let mut last = self.last_report.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < REPORT_EVERY) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let held_back = self.held_back.swap(0, Ordering::Relaxed);
        warn!(held_back, "Kafka client {what}: {text}");
    }
}

impl ClientContext for RelayContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Debug | RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                debug!(facility, "librdkafka: {message}")
            }
            _ => self.report("log", &format!("{facility} {message}")),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        self.report("error", &format!("{error}: {reason}"));
    }
}

impl ConsumerContext for RelayContext {}

type RelayConsumer = BaseConsumer<RelayContext>;

/// The reading thread; dropping it stops and joins it.
pub struct KafkaSource {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KafkaSource {
    /// Checks the configuration (a bad property fails here, not later on the thread) and starts
    /// reading. The topic need not exist yet: the thread waits for it.
    pub fn start(
        config: KafkaSourceConfig,
        bus: Arc<LiveBus>,
        metrics: Arc<RelayMetrics>,
    ) -> Result<KafkaSource> {
        let consumer = create_consumer(&config, metrics.clone())?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("relay-kafka".into())
                .spawn(move || read_topic(consumer, &config, &bus, &metrics, &stop))
                .context("starting the Kafka reader")?
        };
        Ok(KafkaSource {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn create_consumer(
    config: &KafkaSourceConfig,
    metrics: Arc<RelayMetrics>,
) -> Result<RelayConsumer> {
    let mut client = ClientConfig::new();
    // A group id is required by the client even with manual assignment; a unique one keeps
    // relays from ever sharing (or committing) anything.
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("random group id: {e}"))?;
    client
        .set("bootstrap.servers", &config.brokers)
        .set(
            "group.id",
            format!("apiscope-relay-{}", u64::from_le_bytes(suffix)),
        )
        .set("client.id", "apiscope-relay")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "latest")
        .set("queued.max.messages.kbytes", MAX_PREFETCH_KBYTES);
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
        .create_with_context(RelayContext {
            metrics,
            last_report: Mutex::new(None),
            held_back: AtomicU64::new(0),
        })
        .context("creating the Kafka consumer")
}

fn read_topic(
    consumer: RelayConsumer,
    config: &KafkaSourceConfig,
    bus: &LiveBus,
    metrics: &RelayMetrics,
    stop: &AtomicBool,
) {
    // Each partition's next offset to read (kept here, not committed anywhere).
    let mut partitions: BTreeMap<i32, Offset> = BTreeMap::new();
    let mut last_refresh: Option<Instant> = None;
    let mut reported_missing = false;
    // Before anything is assigned, retries back off (1 s doubling to 30 s): a broker that is
    // down is logged a few times a minute at most, not every second.
    let mut retry = RETRY_FIRST;
    while !stop.load(Ordering::Relaxed) {
        if last_refresh.is_none_or(|at| at.elapsed() >= METADATA_REFRESH) {
            match add_new_partitions(&consumer, config, &mut partitions) {
                Ok(0) if partitions.is_empty() => {
                    if !reported_missing {
                        warn!(topic = %config.topic, "waiting for the Kafka topic to exist");
                        reported_missing = true;
                    }
                    sleep_unless_stopped(retry, stop);
                    retry = (retry * 2).min(RETRY_MAX);
                    continue;
                }
                Ok(added) => {
                    retry = RETRY_FIRST;
                    if added > 0 {
                        info!(topic = %config.topic, partitions = partitions.len(), "reading");
                    }
                    metrics.partitions.set(partitions.len() as i64);
                    last_refresh = Some(Instant::now());
                }
                Err(error) => {
                    metrics.kafka_errors.inc();
                    warn!(
                        error = format!("{error:#}"),
                        "reading the Kafka topic's partitions"
                    );
                    if partitions.is_empty() {
                        sleep_unless_stopped(retry, stop);
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                    // Already reading: go on, and look for new partitions at the next refresh.
                    last_refresh = Some(Instant::now());
                }
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                partitions.insert(message.partition(), Offset::Offset(message.offset() + 1));
                metrics.records.inc();
                metrics.record_bytes.inc_by(payload.len() as u64);
                if let Some(ms) = message.timestamp().to_millis() {
                    metrics.last_record_timestamp.set(ms as f64 / 1e3);
                }
                match decode_traces_record(payload) {
                    Ok(decoded) => {
                        metrics.foreign_spans.inc_by(decoded.foreign_spans);
                        metrics.requests.inc_by(decoded.requests.len() as u64);
                        for request in decoded.requests {
                            bus.publish(request);
                        }
                    }
                    Err(error) => {
                        metrics.undecodable_records.inc();
                        debug!(
                            partition = message.partition(),
                            offset = message.offset(),
                            %error,
                            "a record of the traces topic is not OTLP protobuf"
                        );
                    }
                }
            }
            Some(Err(error)) => {
                metrics.kafka_errors.inc();
                consumer
                    .context()
                    .report("error", &format!("consuming the traces topic: {error}"));
            }
            None => {}
        }
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Assigns the topic's partitions not read yet: the first ones at `history_window` ago, any
/// added later from their beginning (they are newer than the relay). Returns how many.
fn add_new_partitions(
    consumer: &RelayConsumer,
    config: &KafkaSourceConfig,
    partitions: &mut BTreeMap<i32, Offset>,
) -> Result<usize> {
    let metadata = consumer
        .fetch_metadata(Some(&config.topic), KAFKA_TIMEOUT)
        .context("fetching metadata")?;
    let Some(topic) = metadata
        .topics()
        .iter()
        .find(|t| t.name() == config.topic && t.error().is_none())
    else {
        return Ok(0);
    };
    let new: Vec<i32> = topic
        .partitions()
        .iter()
        .map(|p| p.id())
        .filter(|id| !partitions.contains_key(id))
        .collect();
    if new.is_empty() {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    if partitions.is_empty() {
        let since = SystemTime::now()
            .checked_sub(config.history_window)
            .unwrap_or(UNIX_EPOCH)
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let mut times = TopicPartitionList::new();
        for id in &new {
            times.add_partition_offset(&config.topic, *id, Offset::Offset(since))?;
        }
        // A partition with nothing that recent comes back at its end (offset -1); one with more
        // than the history holds starts at its newest `max_history_records`.
        let offsets = consumer
            .offsets_for_times(times, KAFKA_TIMEOUT)
            .context("looking up offsets by time")?;
        for element in offsets.elements() {
            let (_, high) = consumer
                .fetch_watermarks(&config.topic, element.partition(), KAFKA_TIMEOUT)
                .context("reading the partition's end offset")?;
            let newest_allowed = high.saturating_sub(config.max_history_records as i64);
            let offset = match element.offset() {
                Offset::Offset(offset) if offset >= 0 => Offset::Offset(offset.max(newest_allowed)),
                _ => Offset::Offset(high),
            };
            assignment.add_partition_offset(&config.topic, element.partition(), offset)?;
        }
    } else {
        // Re-assigning replaces the assignment: go on from where each partition was.
        for (id, offset) in partitions.iter() {
            assignment.add_partition_offset(&config.topic, *id, *offset)?;
        }
        for id in &new {
            assignment.add_partition_offset(&config.topic, *id, Offset::Beginning)?;
        }
    }
    if assignment.count() != partitions.len() + new.len() {
        bail!(
            "offsets for {} partitions, expected {}",
            assignment.count(),
            partitions.len() + new.len()
        );
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    for element in assignment.elements() {
        partitions.insert(element.partition(), element.offset());
    }
    Ok(new.len())
}
