#!/usr/bin/env bash
# Checks the production collector config with the real collector binary (`otelcol-apiscope
# validate`: every component's config is decoded and validated, and the pipelines are wired), once
# with the file's own defaults and once with every endpoint variable set as a deployment sets them.
source "$(dirname "$0")/common.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$APISCOPE_CACHE/otelcol.env" ] || { log "run scripts/install-otelcol.sh first"; exit 1; }
source "$APISCOPE_CACHE/otelcol.env"
config="$ROOT/otel-collector/production.yaml"

log "otelcol-apiscope validate --config otel-collector/production.yaml (defaults)"
env -u KAFKA_BROKERS -u TEMPO_OTLP_ENDPOINT -u LOKI_OTLP_ENDPOINT -u PROMETHEUS_REMOTE_WRITE_ENDPOINT \
  "$OTELCOL_BIN" validate --config "$config"

log "otelcol-apiscope validate --config otel-collector/production.yaml (endpoints from the environment)"
KAFKA_BROKERS=kafka-0.kafka:9092,kafka-1.kafka:9092 \
TEMPO_OTLP_ENDPOINT=tempo-distributor.tracing:4317 TEMPO_OTLP_INSECURE=false \
LOKI_OTLP_ENDPOINT=http://loki-gateway.logging/otlp \
PROMETHEUS_REMOTE_WRITE_ENDPOINT=http://prometheus.monitoring:9090/api/v1/write \
OTLP_GRPC_ENDPOINT=0.0.0.0:4317 OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
OTELCOL_HEALTH_ENDPOINT=0.0.0.0:13133 OTELCOL_METRICS_PORT=8888 \
OTELCOL_MEMORY_LIMIT_MIB=1600 OTELCOL_MEMORY_SPIKE_LIMIT_MIB=320 OTELCOL_LOG_LEVEL=warn \
  "$OTELCOL_BIN" validate --config "$config"
