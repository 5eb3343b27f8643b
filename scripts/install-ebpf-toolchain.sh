#!/usr/bin/env bash
# Toolchain for the eBPF crate: a Rust with core sources for `-Z build-std=core` on bpfel-unknown-none,
# and bpf-linker built against LLVM 22 (the LLVM of both Rust routes below).
#
# Route 1 (the usual aya route, preferred): rustup nightly with the rust-src component.
# Route 2 (fallback where rustup cannot fetch rust-src): Debian's rustc-web/cargo-web/rust-web-src
#         with RUSTC_BOOTSTRAP=1.
# Writes $APISCOPE_CACHE/ebpf-toolchain.env, sourced by the Makefile: EBPF_CARGO, EBPF_ENV, BPF_LINKER_DIR.
source "$(dirname "$0")/common.sh"
BPF_LINKER_VERSION=0.13.0
linker_root="$APISCOPE_CACHE/bpf-linker-$BPF_LINKER_VERSION-llvm22"
envfile="$APISCOPE_CACHE/ebpf-toolchain.env"

apt_install llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev
if [ ! -x "$linker_root/bin/bpf-linker" ]; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (~2 min)"
  LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install --locked --quiet bpf-linker --version "$BPF_LINKER_VERSION" \
      --no-default-features --features llvm-22 --root "$linker_root"
fi

route=""
if command -v rustup >/dev/null && rustup toolchain list | grep -q '^nightly'; then
  if rustup component list --toolchain nightly --installed | grep -q '^rust-src' \
     || timeout 120 rustup component add rust-src --toolchain nightly >/dev/null 2>&1; then
    route=nightly
  fi
fi
if [ -z "$route" ]; then
  log "rustup nightly with rust-src is not available here: using Debian's rustc-web route"
  apt_install rustc-web cargo-web rust-web-src
  route=debian
fi
if [ "$route" = nightly ]; then
  cat > "$envfile" <<ENV
EBPF_CARGO="cargo +nightly"
EBPF_ENV=""
BPF_LINKER_DIR="$linker_root/bin"
ENV
else
  # Debian's cargo/rustc 1.96 are stable builds: RUSTC_BOOTSTRAP unlocks -Z build-std.
  cat > "$envfile" <<ENV
EBPF_CARGO="/usr/bin/cargo"
EBPF_ENV="RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc"
BPF_LINKER_DIR="$linker_root/bin"
ENV
fi
log "eBPF toolchain: $route route; bpf-linker in $linker_root/bin"
