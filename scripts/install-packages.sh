#!/usr/bin/env bash
# Debian packages for building and testing: the eBPF toolchain's Debian route (rustc-web + LLVM 22),
# Go 1.19 (the DWARF offset checks in exporter/src/capture/gobinary build fixtures with it; also the
# optional v1.20.2 source build), etcd (for that build only: the matrix builds its own), the
# independent HTTP/2 tools (tshark, h2load), bpftool for the bench's BPF statistics, and chromium
# for the live view's browser test (driven by npm's playwright-core, which never downloads a
# browser). (Prometheus 3.16 is built by scripts/install-prometheus.sh; Node.js and npm, which
# build the UI, come with the machine.)
source "$(dirname "$0")/common.sh"
apt_install \
  rustc-web cargo-web rust-web-src llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev \
  golang-1.19-go golang-github-modern-go-reflect2-dev rsync dpkg-dev \
  etcd-server etcd-client openssl tshark nghttp2-client bpftool procps iproute2 curl jq chromium
