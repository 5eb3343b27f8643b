#!/usr/bin/env bash
# Helm v3, built from the Go module proxy: the chart under charts/apiscope is linted and rendered
# with it (`helm lint`, `helm template`) in the end-to-end test (tests/tests/helm.rs), which then
# applies the rendered manifests to the test kube-apiserver with `kubectl apply --dry-run=server`.
# Idempotent; cached by version; shares the project's Go module and build caches (common.sh).
# The chart's ServiceMonitor and PrometheusRule are custom resources: their CRDs come from the
# prometheus-operator Go module (example/prometheus-operator-crd/), fetched the same way (a `go mod
# download`, ~3 s, no build), so the test validates them against the real schemas.
# Prints nothing on stdout; the binary lands in $APISCOPE_CACHE/helm-VERSION/bin/helm, the CRDs in
# $APISCOPE_CACHE/prometheus-operator-crds-VERSION/, and $APISCOPE_CACHE/helm.env names both
# (HELM_BIN=..., PROMETHEUS_OPERATOR_CRDS=...).
source "$(dirname "$0")/common.sh"
VERSION=3.22.0
OPERATOR_VERSION=0.85.0
crds="$APISCOPE_CACHE/prometheus-operator-crds-$OPERATOR_VERSION"
root="$APISCOPE_CACHE/helm-$VERSION"
bin="$root/bin/helm"

if [ ! -x "$bin" ]; then
  command -v go >/dev/null || { log "go is not installed (Helm $VERSION needs Go >= 1.24)"; exit 1; }
  use_shared_go_caches
  export GOFLAGS="-p=2" CGO_ENABLED=0
  mkdir -p "$root"
  log "building helm $VERSION (cold: ~2-4 min on 2 cores; log $root/build.log)"
  start=$SECONDS
  # go build is silent for minutes: a heartbeat shows CI (and people) that it is alive.
  (while sleep "${APISCOPE_HEARTBEAT_SECONDS:-60}"; do log "still building helm $VERSION"; done) &
  heartbeat=$!
  rc=0
  rm -rf "$root/bin.tmp"
  # Stamped as upstream's Makefile does: helm's version, and the Kubernetes version `helm template`
  # and `helm lint` assume without a cluster (that of the client-go its go.mod requires, v0.37.0;
  # unstamped it is 1.20, which the chart's kubeVersion refuses).
  GOBIN="$root/bin.tmp" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$VERSION \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37 \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37" \
    "helm.sh/helm/v3/cmd/helm@v$VERSION" >"$root/build.log" 2>&1 || rc=$?
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
  [ $rc = 0 ] || { tail -n 40 "$root/build.log" >&2; log "go install failed; full log: $root/build.log"; exit 1; }
  rm -rf "$root/bin" && mv "$root/bin.tmp" "$root/bin"
  log "built helm $VERSION in $((SECONDS - start)) s"
fi
# Guard the premise: the chart is checked with the version named here.
"$bin" version --short 2>/dev/null | grep -q "^v$VERSION" || {
  log "$bin does not report version v$VERSION"; exit 1; }

if [ ! -f "$crds/monitoring.coreos.com_prometheusrules.yaml" ]; then
  use_shared_go_caches
  module="github.com/prometheus-operator/prometheus-operator@v$OPERATOR_VERSION"
  dir=$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir/example/prometheus-operator-crd" ] || { log "go mod download $module gave no CRDs"; exit 1; }
  rm -rf "$crds.tmp" && mkdir -p "$crds.tmp"
  cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
     "$dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" "$crds.tmp/"
  rm -rf "$crds" && mv "$crds.tmp" "$crds"
  log "prometheus-operator $OPERATOR_VERSION CRDs in $crds"
fi
printf 'HELM_BIN=%s\nPROMETHEUS_OPERATOR_CRDS=%s\n' "$bin" "$crds" >"$APISCOPE_CACHE/helm.env"
