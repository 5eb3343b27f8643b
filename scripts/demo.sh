#!/usr/bin/env bash
# `make demo`: a real local control plane, apiscope attached to its kube-apiserver, some kubectl
# traffic, and the endpoints printed. Stops with Ctrl-C (or after DEMO_SECONDS, if set).
source "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { log "the demo attaches eBPF uprobes: run it as root"; exit 1; }
dir="${DEMO_DIR:-$(mktemp -d /tmp/apiscope-demo.XXXXXX)}"
metrics_address="${DEMO_METRICS_ADDRESS:-127.0.0.1:9464}"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  log "demo stopped; files kept in $dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# The cluster wants a directory of its own (it refuses a non-empty one).
target/release/apiscope-testcluster up --dir "$dir/cluster" --controller-manager --scheduler >"$dir/cluster.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do [ -s "$dir/cluster/cluster.env" ] && break; sleep 1; done
[ -s "$dir/cluster/cluster.env" ] || { tail -30 "$dir/cluster.log"; log "the test cluster did not come up"; exit 1; }
set -a; source "$dir/cluster/cluster.env"; set +a
export KUBECONFIG="$APISCOPE_KUBECONFIG"

target/release/apiscope capture --pid "$APISCOPE_APISERVER_PID" --output "$dir/requests.jsonl" \
  --record "$dir/capture.pcapng" --metrics-address "$metrics_address" 2>"$dir/apiscope.log" &
pids+=($!)
for _ in $(seq 1 60); do grep -q '"attached"\|attached' "$dir/apiscope.log" 2>/dev/null && break; sleep 0.5; done

cat <<MSG

  apiscope demo is running
    kube-apiserver : $APISCOPE_KUBERNETES_VERSION at $APISCOPE_APISERVER_URL (pid $APISCOPE_APISERVER_PID), kubeconfig $KUBECONFIG
    metrics        : http://$metrics_address/metrics
    API requests   : $dir/requests.jsonl (one ApiRequest JSON object per line)
    recording      : $dir/capture.pcapng (apiscope replay --format table $dir/capture.pcapng;
                     tshark -r $dir/capture.pcapng -d tcp.port==$APISCOPE_APISERVER_PORT,http2)
    live view      : not built yet
  Ctrl-C stops everything.

MSG
# Traffic: create, read, list, patch and delete objects, bounded in count.
end=$(( $(date +%s) + ${DEMO_SECONDS:-31536000} ))
for i in $(seq 1 100000); do
  [ "$(date +%s)" -lt "$end" ] || break
  kubectl create configmap "demo-$i" --from-literal=i="$i" >/dev/null 2>&1 || true
  kubectl get configmap "demo-$i" -o name >/dev/null 2>&1 || true
  kubectl get configmaps >/dev/null 2>&1 || true
  kubectl delete configmap "demo-$i" >/dev/null 2>&1 || true
  if (( i % 10 == 0 )); then
    curl -s "http://$metrics_address/metrics" | grep -E '^apiscope_(capture_events|capture_ringbuf_full_drops|decode_api_requests)_total' | tr '\n' ' '; echo
  fi
  sleep 1
done
