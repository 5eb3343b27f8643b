#!/usr/bin/env bash
# Prometheus 3 and promtool, built from the Go module proxy: the rules under dashboards/ are written
# for Prometheus 3 and are checked (`promtool check/test rules`) and queried (the end-to-end
# telemetry test) with this build. Idempotent; cached by version.
#
# github.com/prometheus/prometheus tags its Go module v0.3MM.P for release 3.MM.P, so v0.316.0 is
# Prometheus 3.16.0; the version string is stamped with -X like upstream's promu build does. The web
# UI is absent (its assets are prebuilt by npm upstream and not in the module); the API is complete.
# Prints nothing on stdout; the binaries land in $APISCOPE_CACHE/prometheus-VERSION/bin/ and
# $APISCOPE_CACHE/prometheus.env names them (PROMETHEUS_BIN=..., PROMTOOL_BIN=...).
source "$(dirname "$0")/common.sh"
VERSION=3.16.0
MODULE_VERSION=v0.316.0
root="$APISCOPE_CACHE/prometheus-$VERSION"
bin="$root/bin"

if [ ! -x "$bin/prometheus" ] || [ ! -x "$bin/promtool" ]; then
  command -v go >/dev/null || { log "go is not installed (Prometheus $VERSION needs Go >= 1.24)"; exit 1; }
  use_shared_go_caches
  export GOFLAGS="-p=2" CGO_ENABLED=0
  mkdir -p "$root"
  log "building prometheus and promtool $VERSION (cold: ~7 min on 2 cores; log $root/build.log)"
  start=$SECONDS
  # go build is silent for minutes: a heartbeat shows CI (and people) that it is alive.
  (while sleep "${APISCOPE_HEARTBEAT_SECONDS:-60}"; do log "still building prometheus $VERSION"; done) &
  heartbeat=$!
  rc=0
  rm -rf "$root/bin.tmp"
  GOBIN="$root/bin.tmp" go install -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$MODULE_VERSION" >"$root/build.log" 2>&1 || rc=$?
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
  [ $rc = 0 ] || { tail -n 40 "$root/build.log" >&2; log "go install failed; full log: $root/build.log"; exit 1; }
  rm -rf "$bin" && mv "$root/bin.tmp" "$bin"
  log "built prometheus and promtool $VERSION in $((SECONDS - start)) s"
fi
# Guard the premise: the stamped version is the one the rules are tested against.
"$bin/prometheus" --version 2>&1 | grep -q "version $VERSION" || {
  log "$bin/prometheus does not report version $VERSION"; exit 1; }
printf 'PROMETHEUS_BIN=%s\nPROMTOOL_BIN=%s\n' "$bin/prometheus" "$bin/promtool" >"$APISCOPE_CACHE/prometheus.env"
