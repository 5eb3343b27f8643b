# apiscope: `make demo` and `make test` do every set-up step themselves (idempotent; heavy
# artifacts cached in $(APISCOPE_CACHE), outside the checkout).
SHELL := /bin/bash
APISCOPE_CACHE ?= $(HOME)/.cache/apiscope
export APISCOPE_CACHE
EBPF_OBJECT := target/bpfel-unknown-none/release/apiscope-ebpf
# The Kubernetes matrix of the end-to-end tests (tests/src/cluster/version.rs): the newest release
# built like upstream's (with controller-manager and scheduler, the default), and an older one built
# -buildmode=pie. APISCOPE_K8S_VERSIONS=1.37.2 narrows `make test-e2e` to one of them.
K8S_NEWEST := 1.37.2
K8S_BIN := $(APISCOPE_CACHE)/kubernetes-$(K8S_NEWEST)/bin

.PHONY: all setup build ebpf ui test-ui bench-ui bench test test-pure test-e2e test-collector fuzz-smoke lint validate-configs check-rules demo fixtures clean-cache

all: build

setup:
	bash scripts/install-packages.sh
	bash scripts/install-ebpf-toolchain.sh
	bash scripts/build-kubernetes-modern.sh $(K8S_NEWEST) --controllers
	bash scripts/build-kubernetes-modern.sh 1.34.4 --pie
	bash scripts/install-otelcol.sh
	bash scripts/install-kafka.sh
	bash scripts/install-prometheus.sh
	bash scripts/install-jaeger.sh
	bash scripts/install-helm.sh

# The eBPF crate is built for the BPF target with the toolchain route chosen by the install script.
ebpf: 
	bash scripts/install-ebpf-toolchain.sh
	source $(APISCOPE_CACHE)/ebpf-toolchain.env && \
	  env $$EBPF_ENV PATH="$$BPF_LINKER_DIR:$$PATH" $$EBPF_CARGO build -p apiscope-ebpf --release \
	    --target bpfel-unknown-none -Z build-std=core

# The live view's UI (ui/, docs/live-view.md), built into ui/dist, which the exporter embeds at
# build time. npm is needed only here; its cache stays in ~/.npm (npm's default), outside the
# checkout. Both steps are skipped when nothing changed: `npm ci` when the lock file is older than
# the installed tree, the build when ui/dist is newer than every source.
UI_SOURCES := $(shell find ui/src -type f 2>/dev/null) ui/index.html ui/vite.config.ts ui/tsconfig.json ui/package.json
ui/node_modules/.package-lock.json: ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund --loglevel=error
ui/dist/index.html: ui/node_modules/.package-lock.json $(UI_SOURCES)
	cd ui && npm run --silent build
	touch $@
ui: ui/dist/index.html

# The UI's unit tests (Vitest). The browser test runs against the real server in the e2e suite
# (tests/tests/live_view.rs); by hand: ui/e2e/live-view.spec.mjs (docs/live-view.md).
test-ui: ui
	cd ui && npm test --silent

# Rows per second the UI renders without dropping frames (a benchmark, not a test): ui/bench/.
bench-ui: ui
	cd ui && node bench/rows-per-second.mjs

# The exporter embeds the eBPF object when APISCOPE_EBPF_OBJECT names it at build time, and the
# built UI (ui/dist).
build: ebpf ui
	APISCOPE_EBPF_OBJECT=$(CURDIR)/$(EBPF_OBJECT) cargo build --release -p apiscope

# What apiscope costs a kube-apiserver, measured side by side in one run (BENCHMARKS.md): tables
# in target/bench/. BENCH_QUICK=1 takes a few minutes; APISCOPE_BENCH_BASELINE=/path/to/apiscope
# adds an older build to compare; BENCH_ARGS passes more flags (see apiscope-bench --help).
APISCOPE_BENCH_BASELINE ?=
# The same APISCOPE_EBPF_OBJECT as `build`, so the apiscope library is not compiled twice.
bench: setup build
	APISCOPE_EBPF_OBJECT=$(CURDIR)/$(EBPF_OBJECT) cargo build --release -p apiscope-e2e --bin apiscope-bench
	target/release/apiscope-bench \
	  $(if $(APISCOPE_BENCH_BASELINE),--apiscope baseline=$(APISCOPE_BENCH_BASELINE)) \
	  --apiscope current=$(CURDIR)/target/release/apiscope $(BENCH_ARGS)

# The same APISCOPE_EBPF_OBJECT as `build`: without it the apiscope library is compiled again
# for the harness (and again for the binary on the next run), ~35 s each time.
demo: setup build
	APISCOPE_EBPF_OBJECT=$(CURDIR)/$(EBPF_OBJECT) cargo build --release -p apiscope-e2e --bin apiscope-testcluster
	bash scripts/demo.sh

lint:
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	APISCOPE_EBPF_OBJECT=$(CURDIR)/$(EBPF_OBJECT) cargo clippy -p apiscope -p apiscope-e2e --all-targets -- -D warnings

# The production collector config, checked by the real collector built from its manifest.
validate-configs:
	bash scripts/install-otelcol.sh
	bash scripts/validate-configs.sh

# dashboards/: generated files current, promtool check rules (lint-fatal) and the promtool unit
# tests, with Prometheus 3.16's promtool.
check-rules:
	bash scripts/install-prometheus.sh
	bash scripts/check-rules.sh

test-pure:
	APISCOPE_REQUIRE_TOOLS=1 cargo test

test-e2e: build
	APISCOPE_REQUIRE_TOOLS=1 APISCOPE_EBPF_OBJECT=$(CURDIR)/$(EBPF_OBJECT) \
	  cargo test --release -p apiscope-e2e -- --test-threads=1

# A short, bounded run of every fuzz target (cargo-fuzz, libFuzzer); longer runs by hand:
#   cd fuzz && cargo +nightly fuzz run -O <target> -- -max_total_time=600
FUZZ_SECONDS ?= 15
FUZZ_TARGETS := http2_frames hpack pipeline bodies filter
fuzz-smoke:
	set -o pipefail && export PATH="$$(bash scripts/install-cargo-fuzz.sh):$$PATH" && cd fuzz && \
	  CARGO_BUILD_JOBS=2 cargo +nightly fuzz build -O --target-dir $(APISCOPE_CACHE)/fuzz-target && \
	  for target in $(FUZZ_TARGETS); do \
	    cargo +nightly fuzz run -O --target-dir $(APISCOPE_CACHE)/fuzz-target $$target -- \
	      -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -3 || exit 1; \
	  done

# Only the collector pipeline test (real collector + real Kafka; needs neither root nor eBPF).
test-collector:
	bash scripts/install-otelcol.sh
	bash scripts/install-kafka.sh
	APISCOPE_REQUIRE_TOOLS=1 cargo test --release -p apiscope-e2e --test collector_pipeline

test: setup lint validate-configs check-rules test-ui test-pure fuzz-smoke test-e2e

# Re-records the golden decode fixtures from a real cluster (checked against its audit log first),
# then rewrites their expected ApiRequests. Review the diff before committing. Records the newest
# Kubernetes version (cluster-v1.37.2.pcapng.gz); APISCOPE_K8S_VERSIONS=... records others.
fixtures: setup build
	APISCOPE_REQUIRE_TOOLS=1 APISCOPE_EBPF_OBJECT=$(CURDIR)/$(EBPF_OBJECT) \
	  cargo test --release -p apiscope-e2e --test golden_record -- --ignored --nocapture
	APISCOPE_UPDATE_GOLDEN=1 cargo test -p apiscope --test golden

clean-cache:
	rm -rf $(APISCOPE_CACHE)
