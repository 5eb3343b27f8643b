#!/usr/bin/env bash
# Jaeger v2 (the OpenTelemetry-Collector-based Jaeger), built from the Go module proxy: the trace
# store of the end-to-end telemetry test and of the demo (Tempo cannot run here; Jaeger takes the
# same OTLP). Idempotent; cached by version.
#
# `go install github.com/jaegertracing/jaeger/cmd/jaeger@VERSION` fails: Jaeger's go.mod has a
# replace directive, which `go install pkg@version` refuses. A wrapper main module that requires
# Jaeger as a tool (`go get -tool`) builds it with Jaeger's own dependency versions. The UI is a
# placeholder (its assets are built by npm upstream and are not in the module); the API is complete.
# Prints nothing on stdout; the binary lands in $APISCOPE_CACHE/jaeger-VERSION/bin/jaeger and
# $APISCOPE_CACHE/jaeger.env names it (JAEGER_BIN=...).
source "$(dirname "$0")/common.sh"
VERSION=1.76.0
root="$APISCOPE_CACHE/jaeger-$VERSION"
bin="$root/bin/jaeger"

if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { log "go is not installed (Jaeger $VERSION needs Go >= 1.25)"; exit 1; }
  use_shared_go_caches
  export GOFLAGS="-p=2" CGO_ENABLED=0
  mkdir -p "$root"
  log "building jaeger $VERSION (cold: ~10 min on 2 cores; log $root/build.log)"
  start=$SECONDS
  # go build is silent for minutes: a heartbeat shows CI (and people) that it is alive.
  (while sleep "${APISCOPE_HEARTBEAT_SECONDS:-60}"; do log "still building jaeger $VERSION"; done) &
  heartbeat=$!
  rc=0
  work="$root/wrapper"
  rm -rf "$work" "$root/bin.tmp" && mkdir -p "$work" "$root/bin.tmp"
  (
    cd "$work"
    go mod init apiscope.local/jaeger-wrapper
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$VERSION"
    go build -trimpath -ldflags "-s -w" -o "$root/bin.tmp/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
  ) >"$root/build.log" 2>&1 || rc=$?
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
  [ $rc = 0 ] || { tail -n 40 "$root/build.log" >&2; log "jaeger build failed; full log: $root/build.log"; exit 1; }
  rm -rf "$root/bin" && mv "$root/bin.tmp" "$root/bin"
  log "built jaeger $VERSION in $((SECONDS - start)) s"
fi
"$bin" --help >/dev/null 2>&1 || { log "$bin does not run"; exit 1; }
printf 'JAEGER_BIN=%s\n' "$bin" >"$APISCOPE_CACHE/jaeger.env"
