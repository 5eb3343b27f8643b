# Shared by the install scripts: where cached artifacts live and how steps are made idempotent.
# Everything heavy is kept outside the checkout (CI runs in a fresh clone), keyed by version.
set -euo pipefail
APISCOPE_CACHE="${APISCOPE_CACHE:-$HOME/.cache/apiscope}"
mkdir -p "$APISCOPE_CACHE"
log() { printf '[apiscope setup] %s\n' "$*" >&2; }
# Installs Debian packages that are not installed yet; runs apt-get update at most once per call.
apt_install() {
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
# Every Go build of the project (Kubernetes, etcd, the collector, Prometheus, Jaeger) shares one
# module and build cache under $APISCOPE_CACHE, and uses the machine's Go, not a download: a module
# the collector fetched is not fetched again for Prometheus. The caller sets GOFLAGS.
use_shared_go_caches() {
  export GOTOOLCHAIN=local GOMAXPROCS="${GOMAXPROCS:-2}"
  export GOMODCACHE="$APISCOPE_CACHE/go/modcache" GOCACHE="$APISCOPE_CACHE/go/buildcache"
  mkdir -p "$GOMODCACHE" "$GOCACHE"
}
