#!/usr/bin/env bash
# Real Apache Kafka (KRaft mode, no ZooKeeper) for the end-to-end tests: the broker jars and their
# runtime dependencies from Maven Central, fetched with Maven from scripts/kafka/pom.xml.
# Idempotent, keyed by version: $APISCOPE_CACHE/kafka-<version>/libs holds the classpath and
# $APISCOPE_CACHE/kafka.env names it (KAFKA_HOME=...). A broker then starts with
#   java -cp "$KAFKA_HOME/libs/*" kafka.tools.StorageTool format ...   (once per data dir)
#   java -cp "$KAFKA_HOME/libs/*" kafka.Kafka server.properties
# (tests/src/kafka.rs does both, with $KAFKA_HOME/log4j2.properties logging quietly to a file).
source "$(dirname "$0")/common.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KAFKA_VERSION=4.4.0
home="$APISCOPE_CACHE/kafka-$KAFKA_VERSION"

if [ ! -f "$home/.complete" ]; then
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "fetching Apache Kafka $KAFKA_VERSION (kafka_2.13 + runtime dependencies) from Maven Central"
  start=$SECONDS
  rm -rf "$home" && mkdir -p "$home"
  mvn -B -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$home/libs.tmp" \
    >"$home/mvn.log" 2>&1 || { tail -n 40 "$home/mvn.log" >&2; log "mvn failed; log: $home/mvn.log"; exit 1; }
  mv "$home/libs.tmp" "$home/libs"
  log "fetched $(ls "$home/libs" | wc -l) jars in $((SECONDS - start)) s"
  touch "$home/.complete"
fi

# Log4j 2: everything at WARN (Kafka's own at INFO) into one file named by -Dkafka.logs.dir.
# Rewritten every run (cheap), so a change here needs no cache bump.
cat >"$home/log4j2.properties" <<'PROPS'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/kafka.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.kafkaserver.name = org.apache.kafka
logger.kafkaserver.level = warn
PROPS
printf 'KAFKA_HOME=%s\nKAFKA_VERSION=%s\n' "$home" "$KAFKA_VERSION" >"$APISCOPE_CACHE/kafka.env"
