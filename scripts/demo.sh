#!/usr/bin/env bash
# `make demo`: a real local control plane (etcd, kube-apiserver, controller-manager, scheduler),
# the telemetry back ends (Kafka, Jaeger, Prometheus, the collector with its production config),
# apiscope attached to the kube-apiserver with the live view, generated kubectl traffic, the URLs
# and a summary of the requests seen. Stops with Ctrl-C (or after DEMO_SECONDS, if set).
source "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { log "the demo attaches eBPF uprobes: run it as root"; exit 1; }
dir="${DEMO_DIR:-$(mktemp -d /tmp/apiscope-demo.XXXXXX)}"
mkdir -p "$dir"
metrics_address="${DEMO_METRICS_ADDRESS:-127.0.0.1:9464}"
ui_address="${DEMO_UI_ADDRESS:-127.0.0.1:9465}"
started=$(date +%s)
pids=()
cleanup() {
  # apiscope first (its last spans go to the collector), then the cluster and back ends.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  log "demo stopped; files kept in $dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM
pids_reversed() { local out=() i; for ((i=${#pids[@]}-1; i>=0; i--)); do out+=("${pids[i]}"); done; pids=("${out[@]}"); }

log "starting etcd, kube-apiserver, controller-manager, scheduler, Kafka, Jaeger, Prometheus and the collector"
# The cluster wants a directory of its own (it refuses a non-empty one).
target/release/apiscope-testcluster up --dir "$dir/cluster" --controller-manager --scheduler \
  --telemetry --scrape "$metrics_address" >"$dir/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 240); do
  [ -s "$dir/cluster/cluster.env" ] && break
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 1
done
[ -s "$dir/cluster/cluster.env" ] || { tail -30 "$dir/cluster.log"; log "the test cluster did not come up"; exit 1; }
set -a; source "$dir/cluster/cluster.env"; set +a
export KUBECONFIG="$APISCOPE_KUBECONFIG"

# The live view's token: a fresh random one per demo, readable by root only.
umask 077
head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$dir/ui-token"
umask 022
token=$(cat "$dir/ui-token")
target/release/apiscope capture --pid "$APISCOPE_APISERVER_PID" --output "$dir/requests.jsonl" \
  --record "$dir/capture.pcapng" --metrics-address "$metrics_address" \
  --serve-ui "$ui_address" --ui-token-file "$dir/ui-token" \
  --otlp-endpoint "$APISCOPE_OTLP_ENDPOINT" --cluster-name demo 2>"$dir/apiscope.log" &
pids+=($!)
# Stop order: apiscope, then the cluster with its back ends.
pids_reversed
for _ in $(seq 1 60); do grep -q 'attached' "$dir/apiscope.log" 2>/dev/null && break; sleep 0.5; done
grep -q 'attached' "$dir/apiscope.log" || { tail -20 "$dir/apiscope.log"; log "apiscope did not attach"; exit 1; }

jaeger_search="$APISCOPE_JAEGER_URL/api/traces?service=kube-apiserver&limit=20"
ui_url="http://$ui_address/?jaeger=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$APISCOPE_JAEGER_URL")#token=$token"
cat <<MSG

  apiscope demo is running (up in $(( $(date +%s) - started )) s)
    live view      : $ui_url
                     (token also in $dir/ui-token)
    metrics        : http://$metrics_address/metrics
    Prometheus     : $APISCOPE_PROMETHEUS_URL/api/v1/query?query=sum%20by%20(verb,resource,code)(rate(apiscope_request_total[1m]))
                     (the API; this build of Prometheus has no web UI)
    Jaeger         : $jaeger_search
                     (the query API; the web UI's assets are not built here)
    kube-apiserver : $APISCOPE_KUBERNETES_VERSION at $APISCOPE_APISERVER_URL (pid $APISCOPE_APISERVER_PID), kubeconfig $KUBECONFIG
    Kafka          : $APISCOPE_KAFKA_BOOTSTRAP (topics apiscope-traces, apiscope-logs, apiscope-metrics)
    API requests   : $dir/requests.jsonl (one ApiRequest JSON object per line)
    recording      : $dir/capture.pcapng (apiscope replay --format table $dir/capture.pcapng)
  Ctrl-C stops everything.

MSG

# A summary of the requests seen, from Prometheus (which scrapes apiscope every second).
summary() {
  curl -s --max-time 2 "$APISCOPE_PROMETHEUS_URL/api/v1/query" \
    --data-urlencode 'query=sum by (client, verb, resource, code) (increase(apiscope_request_total[1m]))' |
  python3 -c '
import json, sys
try:
    rows = json.load(sys.stdin)["data"]["result"]
except Exception:
    sys.exit(0)
rows = sorted(rows, key=lambda r: -float(r["value"][1]))[:12]
print("  requests in the last minute (Prometheus, apiscope_request_total)")
print("  %-26s %-8s %-22s %-5s %8s" % ("client", "verb", "resource", "code", "count"))
for r in rows:
    m = r["metric"]
    print("  %-26s %-8s %-22s %-5s %8.0f" % (m.get("client", "")[:26], m.get("verb", ""), m.get("resource", "")[:22], m.get("code", ""), float(r["value"][1])))
print()
'
}

# Traffic: create, read, list, watch, patch and delete objects, bounded in count.
end=$(( $(date +%s) + ${DEMO_SECONDS:-31536000} ))
for i in $(seq 1 100000); do
  [ "$(date +%s)" -lt "$end" ] || break
  # A 10 s watch on configmaps every 10 rounds (the watch panels), ended by the server.
  (( i % 10 == 1 )) && { kubectl get --raw "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=10" >/dev/null 2>&1 & }
  kubectl create configmap "demo-$i" --from-literal=i="$i" >/dev/null 2>&1 || true
  kubectl get configmap "demo-$i" -o name >/dev/null 2>&1 || true
  kubectl patch configmap "demo-$i" -p '{"data":{"patched":"yes"}}' >/dev/null 2>&1 || true
  kubectl get configmaps >/dev/null 2>&1 || true
  kubectl get pods -A --request-timeout=2s >/dev/null 2>&1 || true
  kubectl get --raw /api/v1/namespaces/no-such-namespace >/dev/null 2>&1 || true
  kubectl delete configmap "demo-$i" >/dev/null 2>&1 || true
  (( i % 15 == 5 )) && summary
  sleep 1
done
