#!/usr/bin/env bash
# Builds a real kube-apiserver (stripped, as release binaries are, and an unstripped twin whose DWARF
# checks our Go struct offsets), kube-controller-manager and kube-scheduler from Debian's
# `kubernetes` 1.20.2 source with Debian's Go 1.19 (old Kubernetes needs old Go).
# Result: $APISCOPE_CACHE/kubernetes-1.20.2/bin/{kube-apiserver,kube-apiserver-unstripped,kube-controller-manager,kube-scheduler}
source "$(dirname "$0")/common.sh"
K8S_VERSION=1.20.2
root="$APISCOPE_CACHE/kubernetes-$K8S_VERSION"
bin="$root/bin"
want=(kube-apiserver kube-apiserver-unstripped kube-controller-manager kube-scheduler)
done_all=1; for b in "${want[@]}"; do [ -x "$bin/$b" ] || done_all=0; done
if [ $done_all = 1 ]; then log "kubernetes $K8S_VERSION binaries cached in $bin"; exit 0; fi

bash "$(dirname "$0")/install-packages.sh"
mkdir -p "$root"
src="$root/src"
if [ ! -d "$src/hack" ]; then
  # A private sources list, so the system's apt configuration stays untouched.
  srclist="$root/sources.list"
  echo "deb-src http://deb.debian.org/debian bookworm main" > "$srclist"
  aptopts=(-o "Dir::Etc::SourceList=$srclist" -o "Dir::Etc::SourceParts=/dev/null"
           -o "Dir::State::Lists=$root/apt-lists" -o "Dir::Cache=$root/apt-cache" -o APT::Sandbox::User=root)
  mkdir -p "$root/apt-lists/partial" "$root/apt-cache/archives/partial"
  log "fetching Debian source package kubernetes"
  apt-get "${aptopts[@]}" update -qq
  rm -rf "$root/fetch" && mkdir -p "$root/fetch"
  (cd "$root/fetch" && apt-get "${aptopts[@]}" source -qq kubernetes >/dev/null)
  dir=$(find "$root/fetch" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -1)
  # Debian calls it 1.20.5+really1.20.2: the tree is 1.20.2.
  grep -q "really$K8S_VERSION" <<<"$dir" || { log "unexpected kubernetes source $dir"; exit 1; }
  rm -rf "$src" && mv "$dir" "$src" && rm -rf "$root/fetch"
  # The vendored reflect2 crashes kube-apiserver ~30 s after start under Go 1.19; Debian's 1.0.2 does not.
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
fi

export PATH="/usr/lib/go-1.19/bin:$PATH" KUBE_GIT_VERSION="v$K8S_VERSION" KUBE_GIT_TREE_STATE=clean
export GOFLAGS=-mod=vendor GOCACHE="$root/gocache" GOPATH="$root/gopath"
go version | grep -q 'go1.19' || { log "need Go 1.19 for Kubernetes $K8S_VERSION"; exit 1; }
mkdir -p "$bin"
cd "$src"
out=_output/local/bin/linux/amd64
build() { # what, extra env...
  log "building $1 (a few minutes on 2 cores)"
  env "${@:2}" make WHAT="cmd/$1" >"$root/build-$1.log" 2>&1 || { tail -40 "$root/build-$1.log"; exit 1; }
}
# hack/lib/golang.sh links with GOLDFLAGS, "-s -w -buildid=" when unset (as releases are): set
# and empty gives the unstripped twin.
if [ ! -x "$bin/kube-apiserver-unstripped" ]; then
  build kube-apiserver GOLDFLAGS=
  cp "$out/kube-apiserver" "$bin/kube-apiserver-unstripped"
fi
for b in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ ! -x "$bin/$b" ]; then
    build "$b" -u GOLDFLAGS
    cp "$out/$b" "$bin/$b"
  fi
done
# Guard the premise of the tests: the target binary has no symbol table, its twin has one.
! readelf -S "$bin/kube-apiserver" | grep -q '\.symtab' || { log "kube-apiserver is not stripped"; exit 1; }
readelf -S "$bin/kube-apiserver-unstripped" | grep -q '\.symtab' || { log "kube-apiserver-unstripped has no symtab"; exit 1; }
log "kubernetes $K8S_VERSION binaries in $bin"
