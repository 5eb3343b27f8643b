#!/usr/bin/env bash
# cargo-fuzz for the bounded fuzz run in `make test` (libFuzzer needs a nightly toolchain).
# Installed into the cache, keyed by version; idempotent.
source "$(dirname "$0")/common.sh"
version=0.13.2
root="$APISCOPE_CACHE/cargo-fuzz-$version"
if [ ! -x "$root/bin/cargo-fuzz" ]; then
  log "installing cargo-fuzz $version (~1 min)"
  cargo install cargo-fuzz --version "$version" --locked --root "$root" -j 2 >/dev/null
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain for libFuzzer"
  rustup toolchain install nightly --profile minimal >/dev/null
fi
echo "$root/bin"
