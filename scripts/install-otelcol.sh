#!/usr/bin/env bash
# The real OpenTelemetry Collector, built with the official OpenTelemetry Collector Builder (ocb)
# from otel-collector/builder-config.yaml. Idempotent: the builder is cached by version, the
# binary by builder version + manifest hash, so a warm machine skips both.
# Prints nothing on stdout; the binary lands in $APISCOPE_CACHE/otelcol-<ver>-<hash>/otelcol-apiscope
# and $APISCOPE_CACHE/otelcol.env names it (OTELCOL_BIN=...).
source "$(dirname "$0")/common.sh"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OCB_VERSION=v0.165.0
MANIFEST="$ROOT/otel-collector/builder-config.yaml"
# The builder's own go builds then share the project's Go caches too (they used ~/go before).
use_shared_go_caches
export GOFLAGS="${GOFLAGS:--p=2}"

builder_dir="$APISCOPE_CACHE/otelcol-builder-$OCB_VERSION"
builder="$builder_dir/bin/builder"
if [ ! -x "$builder" ]; then
  log "go install go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  command -v go >/dev/null || { log "go is not installed (the collector needs Go >= 1.25)"; exit 1; }
  GOBIN="$builder_dir/bin.tmp" go install "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
  rm -rf "$builder_dir/bin" && mv "$builder_dir/bin.tmp" "$builder_dir/bin"
fi

hash="$(sha256sum "$MANIFEST" | cut -c1-12)"
dist="$APISCOPE_CACHE/otelcol-$OCB_VERSION-$hash"
bin="$dist/otelcol-apiscope"
if [ ! -x "$bin" ]; then
  log "building otelcol-apiscope with ocb $OCB_VERSION into $dist (cold: several minutes)"
  start=$SECONDS
  work="$dist.build"
  rm -rf "$work" && mkdir -p "$work"
  # The manifest leaves dist.output_path to us: the sources and binary go to the cache.
  sed "s|^dist:\$|dist:\n  output_path: $work/src|" "$MANIFEST" >"$work/builder-config.yaml"
  "$builder" --config "$work/builder-config.yaml" >"$work/build.log" 2>&1 || {
    tail -n 40 "$work/build.log" >&2; log "ocb failed; full log: $work/build.log"; exit 1; }
  rm -rf "$dist" && mkdir -p "$dist"
  mv "$work/src/otelcol-apiscope" "$bin"
  cp "$MANIFEST" "$dist/builder-config.yaml"
  rm -rf "$work"
  log "built $bin in $((SECONDS - start)) s"
fi
"$bin" --version >/dev/null
printf 'OTELCOL_BIN=%s\n' "$bin" >"$APISCOPE_CACHE/otelcol.env"
