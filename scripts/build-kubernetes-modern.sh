#!/usr/bin/env bash
# Builds a modern kube-apiserver (and, when asked, kube-controller-manager and kube-scheduler) from
# the Go module proxy, the way upstream's release build does: CGO_ENABLED=0, -trimpath,
# -tags=selinux,notest,grpcnotrace, stripped (-s -w), version stamped with -X.
#
#   build-kubernetes-modern.sh VERSION [--pie] [--controllers]
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points the staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at ./staging/src through replace directives, which only a main module may
# apply. So a small wrapper main module requires k8s.io/kubernetes VERSION and replaces each
# staging module named in kubernetes' own replace block with its published k8s.io/<m> v0.MINOR.PATCH,
# copying kubernetes' `go` and `godebug` lines. etcd is built at the version kubernetes pins in
# hack/lib/etcd.sh (a modern apiserver needs etcd >= 3.5.13 for its watch cache to serve LISTs).
#
# Result: $APISCOPE_CACHE/kubernetes-VERSION[-pie]/bin/{kube-apiserver,etcd[,kube-controller-manager,kube-scheduler]}
source "$(dirname "$0")/common.sh"
version="${1:?usage: build-kubernetes-modern.sh VERSION [--pie] [--controllers]}"; shift
pie=0; controllers=0
for arg in "$@"; do
  case "$arg" in
    --pie) pie=1 ;;
    --controllers) controllers=1 ;;
    *) log "unknown argument $arg"; exit 2 ;;
  esac
done
version="${version#v}"
IFS=. read -r major minor patch <<<"$version"
suffix=""; [ $pie = 1 ] && suffix="-pie"
root="$APISCOPE_CACHE/kubernetes-$version$suffix"
bin="$root/bin"
want=(kube-apiserver etcd)
[ $controllers = 1 ] && want+=(kube-controller-manager kube-scheduler)
done_all=1; for b in "${want[@]}"; do [ -x "$bin/$b" ] || done_all=0; done
if [ $done_all = 1 ]; then log "kubernetes $version$suffix binaries cached in $bin"; exit 0; fi

command -v go >/dev/null || { log "go is not installed (modern Kubernetes needs Go >= 1.24)"; exit 1; }
use_shared_go_caches
export GOFLAGS="-mod=mod -p=2" CGO_ENABLED=0
mkdir -p "$bin"

wrapper="$root/wrapper"
if [ ! -f "$wrapper/go.mod.done" ]; then
  log "preparing the wrapper module for k8s.io/kubernetes v$version"
  rm -rf "$wrapper" && mkdir -p "$wrapper"
  k8s_mod=$(cd "$wrapper" && go mod download -json "k8s.io/kubernetes@v$version" | jq -r .GoMod)
  [ -f "$k8s_mod" ] || { log "no go.mod for k8s.io/kubernetes v$version from the module proxy"; exit 1; }
  k8s_go=$(go mod edit -json "$k8s_mod" | jq -r .Go)
  (
    cd "$wrapper"
    go mod init apiscope.local/kubernetes-build >/dev/null 2>&1
    go mod edit -go="$k8s_go" -require="k8s.io/kubernetes@v$version"
    # Every staging module kubernetes replaces with a local path gets its published twin.
    staging=$(go mod edit -json "$k8s_mod" | jq -r '.Replace[] | select(.New.Path | startswith("./staging/")) | .Old.Path')
    n=0
    for m in $staging; do go mod edit -replace="$m=$m@v0.$minor.$patch"; n=$((n + 1)); done
    [ $n -gt 0 ] || { log "kubernetes v$version go.mod names no staging modules"; exit 1; }
    # godebug lines change runtime behaviour (e.g. x509 and TLS defaults): keep kubernetes' own.
    go mod edit -json "$k8s_mod" | jq -r '(.Godebug // [])[] | "\(.Key)=\(.Value)"' | while read -r kv; do
      go mod edit -godebug="$kv"
    done
    log "wrapper module: $n staging modules replaced with v0.$minor.$patch"
    cat > main.go <<'GO'
// Package main only anchors the module: the binaries are built from k8s.io/kubernetes/cmd/...
package main

func main() {}
GO
  )
  touch "$wrapper/go.mod.done"
fi

pkg=k8s.io/component-base/version
cgo=k8s.io/client-go/pkg/version
stamp="-X $pkg.gitVersion=v$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
stamp="$stamp -X $cgo.gitVersion=v$version -X $cgo.gitMajor=$major -X $cgo.gitMinor=$minor -X $cgo.gitTreeState=clean"
mode=(); [ $pie = 1 ] && mode=(-buildmode=pie)
build() { # binary, package
  [ -x "$bin/$1" ] && return 0
  log "building $1 v$version$suffix (cold: ~10-16 min on 2 cores; log $root/build-$1.log)"
  local start=$SECONDS rc=0
  # go build is silent for minutes: a heartbeat shows CI (and people) that it is alive.
  (while sleep "${APISCOPE_HEARTBEAT_SECONDS:-60}"; do log "still building $1 v$version$suffix"; done) &
  local heartbeat=$!
  (cd "$wrapper" && go build "${mode[@]}" -trimpath -tags=selinux,notest,grpcnotrace \
      -ldflags "-s -w $stamp" -o "$bin/$1.tmp" "$2") >"$root/build-$1.log" 2>&1 || rc=$?
  kill "$heartbeat" 2>/dev/null || true
  wait "$heartbeat" 2>/dev/null || true
  [ $rc = 0 ] || { tail -40 "$root/build-$1.log" >&2; exit 1; }
  mv "$bin/$1.tmp" "$bin/$1"
  log "built $1 in $((SECONDS - start)) s"
}
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
if [ $controllers = 1 ]; then
  build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
  build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
fi

if [ ! -x "$bin/etcd" ]; then
  # The etcd kubernetes tests with: ETCD_VERSION=${ETCD_VERSION:-3.x.y} in hack/lib/etcd.sh.
  k8s_dir=$(cd "$wrapper" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  etcd_version=$(sed -n 's/^ETCD_VERSION=${ETCD_VERSION:-\([0-9.]*\)}.*/\1/p' "$k8s_dir/hack/lib/etcd.sh")
  [ -n "$etcd_version" ] || { log "no ETCD_VERSION in $k8s_dir/hack/lib/etcd.sh"; exit 1; }
  etcd_root="$APISCOPE_CACHE/etcd-$etcd_version"
  if [ ! -x "$etcd_root/etcd" ]; then
    log "building etcd $etcd_version (the version kubernetes v$version pins)"
    local_start=$SECONDS
    # go.etcd.io/etcd/server/v3's root package is etcd's main. Its go.mod has replace
    # directives, so `go install ...@version` refuses it: build it from a wrapper module too.
    rm -rf "$etcd_root/wrapper" && mkdir -p "$etcd_root/wrapper"
    (
      cd "$etcd_root/wrapper"
      go mod init apiscope.local/etcd-build >/dev/null 2>&1
      go get "go.etcd.io/etcd/server/v3@v$etcd_version"
      go build -trimpath -ldflags "-s -w" -o "$etcd_root/etcd.tmp" go.etcd.io/etcd/server/v3
    ) >"$etcd_root/build.log" 2>&1 || { tail -40 "$etcd_root/build.log" >&2; exit 1; }
    mv "$etcd_root/etcd.tmp" "$etcd_root/etcd"
    log "built etcd $etcd_version in $((SECONDS - local_start)) s"
  fi
  ln -sf "$etcd_root/etcd" "$bin/etcd"
fi
# Guard the premise of the tests: release-like binaries have no symbol table.
! readelf -S "$bin/kube-apiserver" | grep -q '\.symtab' || { log "kube-apiserver is not stripped"; exit 1; }
if [ $pie = 1 ]; then
  readelf -h "$bin/kube-apiserver" | grep -q 'DYN' || { log "kube-apiserver is not PIE"; exit 1; }
fi
log "kubernetes $version$suffix binaries in $bin"
