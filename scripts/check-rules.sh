#!/usr/bin/env bash
# The Prometheus rules and Grafana dashboards under dashboards/, checked with Prometheus 3.16's own
# promtool (scripts/install-prometheus.sh): the generated files are current, every rule file is
# valid and lint-clean, every panel query parses, and the unit tests in dashboards/rules/tests/ pass. Their queries run
# against real data in the end-to-end telemetry test (tests/tests/telemetry.rs).
source "$(dirname "$0")/common.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$APISCOPE_CACHE/prometheus.env" ] || { log "run scripts/install-prometheus.sh first"; exit 1; }
source "$APISCOPE_CACHE/prometheus.env"
cd "$ROOT/dashboards"
python3 generate.py --check
"$PROMTOOL_BIN" check rules --lint=all --lint-fatal rules/*.yaml
# Every dashboard panel's query, variables substituted, parses as PromQL too.
panels="$(mktemp --suffix=.yaml)"
trap 'rm -f "$panels"' EXIT
python3 generate.py --panel-rules >"$panels"
"$PROMTOOL_BIN" check rules "$panels" | sed "s|$panels|the dashboards' panel queries|"
"$PROMTOOL_BIN" test rules rules/tests/*.yaml
