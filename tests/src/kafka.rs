//! A real Apache Kafka broker for end-to-end tests: one KRaft node that is both broker and
//! controller, on free loopback ports, from the jars `scripts/install-kafka.sh` fetched from Maven
//! Central. Plus a Kafka client (rdkafka, librdkafka bundled) that reads whole topics.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::cluster::apiscope_cache;
use crate::cluster::process::{
    ManagedProcess, Spawner, free_loopback_ports, log_shows_port_conflict, log_tail, poll_until,
};

/// The version `scripts/install-kafka.sh` installs; `$APISCOPE_CACHE/kafka.env` names its home.
pub const KAFKA_VERSION: &str = "4.4.0";
const START_TIMEOUT: Duration = Duration::from_secs(90);
const FORMAT_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 3;

/// Where the Kafka jars are: `$KAFKA_HOME` if set, else the cache directory of [`KAFKA_VERSION`].
pub fn kafka_home() -> PathBuf {
    match std::env::var_os("KAFKA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => apiscope_cache().join(format!("kafka-{KAFKA_VERSION}")),
    }
}

/// Whether Kafka is installed (its libs directory and a `java` to run them).
pub fn kafka_installed() -> bool {
    kafka_home().join("libs").is_dir()
        && Command::new("java")
            .arg("-version")
            .output()
            .is_ok_and(|output| output.status.success())
}

/// One single-node KRaft Kafka (combined broker + controller) on loopback.
pub struct KafkaBroker {
    // Field order: the process is killed (Drop) before the spawner thread is joined.
    process: ManagedProcess,
    _spawner: Spawner,
    port: u16,
    workdir: PathBuf,
}

impl KafkaBroker {
    /// Formats a fresh data directory under `workdir` and starts the broker on free loopback ports
    /// (retried on a port race), then waits until it answers a metadata request.
    pub fn start(workdir: &Path) -> Result<KafkaBroker> {
        let home = kafka_home();
        if !home.join("libs").is_dir() {
            bail!(
                "Kafka not found at {}: run scripts/install-kafka.sh (or `make setup`)",
                home.display()
            );
        }
        fs::create_dir_all(workdir)
            .with_context(|| format!("creating Kafka work directory {}", workdir.display()))?;
        let spawner = Spawner::new()?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let run_dir = workdir.join(format!("kafka-{attempt}"));
            match start_once(&spawner, &home, &run_dir) {
                Ok((process, port)) => {
                    return Ok(KafkaBroker {
                        process,
                        _spawner: spawner,
                        port,
                        workdir: run_dir,
                    });
                }
                Err(StartError::PortConflict(error)) => {
                    eprintln!("kafka: port taken on attempt {attempt}, retrying: {error:#}");
                    last_error = Some(error);
                }
                Err(StartError::Failed(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("Kafka did not start")))
    }

    /// `127.0.0.1:<port>`, the PLAINTEXT listener for clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The broker's log4j log (`kafka.log`), for error messages.
    pub fn log_path(&self) -> PathBuf {
        self.workdir.join("logs/kafka.log")
    }

    /// Fails with the log's tail if the broker has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        self.process
            .ensure_running()
            .with_context(|| format!("Kafka log: {}", log_tail(&self.log_path(), 30)))
    }

    /// Creates topics (single partition, replication 1) through the Admin API; existing ones are
    /// fine. Bounded by `timeout`.
    pub fn create_topics(&self, topics: &[&str], timeout: Duration) -> Result<()> {
        self.create_topics_with(topics, &[], timeout)
    }

    /// [`KafkaBroker::create_topics`] with topic configs (`message.timestamp.type`, ...).
    pub fn create_topics_with(
        &self,
        topics: &[&str],
        configs: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = client_config(&self.bootstrap())
            .create()
            .context("creating a Kafka admin client")?;
        let new_topics: Vec<NewTopic> = topics
            .iter()
            .map(|topic| {
                configs.iter().fold(
                    NewTopic::new(topic, 1, TopicReplication::Fixed(1)),
                    |new_topic, (key, value)| new_topic.set(key, value),
                )
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = futures_executor::block_on(admin.create_topics(&new_topics, &options))
            .context("Kafka CreateTopics request")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("creating Kafka topic {topic}: {code}"),
            }
        }
        // Topic creation is asynchronous in the brokers' metadata: wait until every topic has a
        // leader, so a producer or consumer that starts now finds it.
        let consumer = metadata_consumer(&self.bootstrap())?;
        poll_until(
            "the new Kafka topics to have leaders",
            timeout,
            Duration::from_millis(100),
            || {
                let metadata = consumer.fetch_metadata(None, Duration::from_secs(2));
                let Ok(metadata) = metadata else {
                    return Ok(None);
                };
                let ready = topics.iter().all(|name| {
                    metadata.topics().iter().any(|topic| {
                        topic.name() == *name
                            && topic.error().is_none()
                            && !topic.partitions().is_empty()
                            && topic.partitions().iter().all(|p| p.leader() >= 0)
                    })
                });
                Ok(ready.then_some(()))
            },
        )
    }

    /// SIGTERM (Kafka shuts down cleanly), a bounded wait, then SIGKILL.
    pub fn stop(mut self) -> Result<()> {
        self.process.terminate(STOP_GRACE)?;
        Ok(())
    }
}

enum StartError {
    PortConflict(anyhow::Error),
    Failed(anyhow::Error),
}

fn start_once(
    spawner: &Spawner,
    home: &Path,
    run_dir: &Path,
) -> std::result::Result<(ManagedProcess, u16), StartError> {
    let failed = StartError::Failed;
    let data_dir = run_dir.join("data");
    let logs_dir = run_dir.join("logs");
    for dir in [&data_dir, &logs_dir] {
        fs::create_dir_all(dir)
            .with_context(|| format!("creating {}", dir.display()))
            .map_err(failed)?;
    }
    let ports = free_loopback_ports(2).map_err(failed)?;
    let (port, controller_port) = (ports[0], ports[1]);
    let properties = run_dir.join("server.properties");
    fs::write(
        &properties,
        server_properties(port, controller_port, &data_dir),
    )
    .with_context(|| format!("writing {}", properties.display()))
    .map_err(failed)?;

    // Format the KRaft metadata log once (a single-voter "standalone" dynamic quorum).
    let format_log = run_dir.join("format.log");
    let mut format = java_command(home, &logs_dir);
    format.args([
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "--ignore-formatted",
        "--cluster-id",
        &cluster_id(),
        "--config",
    ]);
    format.arg(&properties);
    run_bounded(format, &format_log, FORMAT_TIMEOUT)
        .context("formatting the Kafka storage (kafka.tools.StorageTool)")
        .map_err(failed)?;

    let mut args = jvm_args(home, &logs_dir);
    args.push("kafka.Kafka".into());
    args.push(properties.display().to_string());
    let mut process = ManagedProcess::start(
        spawner,
        "kafka",
        Path::new("java"),
        args,
        run_dir.join("kafka.stdout.log"),
    )
    .map_err(failed)?;
    let bootstrap = format!("127.0.0.1:{port}");
    let kafka_log = logs_dir.join("kafka.log");
    let consumer = metadata_consumer(&bootstrap).map_err(failed)?;
    let ready = poll_until(
        "Kafka to answer a metadata request",
        START_TIMEOUT,
        Duration::from_millis(250),
        || {
            if let Some(status) = process.exited()? {
                bail!(
                    "Kafka exited ({status}); last lines of {}:\n{}\nstdout: {}",
                    kafka_log.display(),
                    log_tail(&kafka_log, 30),
                    process.log_tail()
                );
            }
            Ok(consumer
                .fetch_metadata(None, Duration::from_millis(500))
                .ok()
                .filter(|metadata| !metadata.brokers().is_empty())
                .map(|_| ()))
        },
    );
    match ready {
        Ok(()) => Ok((process, port)),
        Err(error) => {
            let _ = process.terminate(STOP_GRACE);
            if log_shows_port_conflict(&kafka_log) || log_shows_port_conflict(&process.log_path) {
                Err(StartError::PortConflict(error))
            } else {
                Err(StartError::Failed(error.context(format!(
                    "Kafka log tail:\n{}",
                    log_tail(&kafka_log, 30)
                ))))
            }
        }
    }
}

/// KRaft combined mode, one node, everything on 127.0.0.1, replication factors of 1.
fn server_properties(port: u16, controller_port: u16, data_dir: &Path) -> String {
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
",
        data = data_dir.display()
    )
}

/// The JVM's arguments up to the main class: a small heap (tests send little), quiet log4j 2 to
/// `<logs_dir>/kafka.log`, the Maven-fetched classpath.
fn jvm_args(home: &Path, logs_dir: &Path) -> Vec<String> {
    vec![
        "-Xms128m".into(),
        "-Xmx512m".into(),
        "-XX:+UseSerialGC".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-Djava.awt.headless=true".into(),
        format!("-Dkafka.logs.dir={}", logs_dir.display()),
        format!(
            "-Dlog4j2.configurationFile={}",
            home.join("log4j2.properties").display()
        ),
        "-cp".into(),
        format!("{}/libs/*", home.display()),
    ]
}

fn java_command(home: &Path, logs_dir: &Path) -> Command {
    let mut command = Command::new("java");
    command.args(jvm_args(home, logs_dir));
    command
}

/// Runs a short command to completion with its output in `log`, killing it after `timeout`.
fn run_bounded(mut command: Command, log: &Path, timeout: Duration) -> Result<()> {
    let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("spawning java")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!("{status}; output:\n{}", log_tail(log, 20));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "timed out after {timeout:?}; output:\n{}",
                log_tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what
/// `kafka-storage random-uuid` prints), never starting with `-`: `kafka-storage format` would take
/// it for an option ("--cluster-id: expected one argument", 1 start in 64), which is why Kafka's
/// own `Uuid.randomUuid()` draws again in that case. So does this.
fn cluster_id() -> String {
    loop {
        let id = random_base64_id();
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn random_base64_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .expect("reading 16 bytes from /dev/urandom");
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        bit_count += 8;
        while bit_count >= 6 {
            bit_count -= 6;
            out.push(ALPHABET[((bits >> bit_count) & 0x3f) as usize] as char);
        }
    }
    if bit_count > 0 {
        out.push(ALPHABET[((bits << (6 - bit_count)) & 0x3f) as usize] as char);
    }
    out
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "5000")
        .set("log_level", "3");
    config
}

fn metadata_consumer(bootstrap: &str) -> Result<BaseConsumer> {
    client_config(bootstrap)
        .set("group.id", "apiscope-e2e-metadata")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating a Kafka client")
}

/// One record read back: its payload and the broker's or producer's timestamp (which one, the
/// topic's `message.timestamp.type` says).
#[derive(Clone, Debug)]
pub struct KafkaRecord {
    pub payload: Vec<u8>,
    pub timestamp_ms: Option<i64>,
}

/// Every record payload of `topic` from the beginning of each partition, in partition order
/// (see [`consume_records`]).
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    min_count: usize,
    max_count: usize,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>> {
    Ok(
        consume_records(bootstrap, topic, min_count, max_count, timeout)?
            .into_iter()
            .map(|record| record.payload)
            .collect(),
    )
}

/// Every record of `topic` from the beginning of each partition, in partition order.
///
/// No consumer group: the partitions are `assign()`ed directly at `Offset::Beginning` (a group
/// subscription costs a rebalance, seconds). Returns once at least `min_count` records were read and
/// the topic has been quiet for a moment, or `max_count` were read, or `timeout` passed (then with
/// whatever was read; the caller asserts on the content).
pub fn consume_records(
    bootstrap: &str,
    topic: &str,
    min_count: usize,
    max_count: usize,
    timeout: Duration,
) -> Result<Vec<KafkaRecord>> {
    let start = Instant::now();
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "apiscope-e2e-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating a Kafka consumer")?;

    // Wait for the topic (it may be auto-created by the producer a moment ago).
    let partitions = poll_until(
        &format!("Kafka topic {topic} to exist"),
        timeout,
        Duration::from_millis(100),
        || {
            let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) else {
                return Ok(None);
            };
            Ok(metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                .filter(|ids| !ids.is_empty()))
        },
    )?;
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer
        .assign(&assignment)
        .with_context(|| format!("assigning {topic}'s partitions"))?;

    let mut by_partition: HashMap<i32, Vec<(i64, KafkaRecord)>> = HashMap::new();
    let mut count = 0;
    let mut last_record = Instant::now();
    const QUIET: Duration = Duration::from_millis(750);
    while count < max_count && start.elapsed() < timeout {
        if count >= min_count && last_record.elapsed() >= QUIET {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                by_partition.entry(message.partition()).or_default().push((
                    message.offset(),
                    KafkaRecord {
                        payload: message.payload().unwrap_or_default().to_vec(),
                        timestamp_ms: message.timestamp().to_millis(),
                    },
                ));
                count += 1;
                last_record = Instant::now();
            }
            Some(Err(error)) => bail!("consuming {topic}: {error}"),
            None => {}
        }
    }
    let mut records = Vec::with_capacity(count);
    let mut ids: Vec<i32> = by_partition.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let mut partition = by_partition.remove(&id).unwrap_or_default();
        partition.sort_by_key(|(offset, _)| *offset);
        records.extend(partition.into_iter().map(|(_, record)| record));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters() {
        let id = cluster_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(id, cluster_id());
        // 1 in 64 random ids starts with '-': 2000 draws all but surely meet one.
        assert!((0..2000).all(|_| !cluster_id().starts_with('-')));
    }
}
