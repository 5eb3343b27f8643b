//! Measurement pieces of `make bench` (the `apiscope-bench` binary): running h2load and reading
//! its results, sampling a process's CPU and memory from /proc, the kernel's per-program BPF
//! statistics through bpftool, apiscope's own Prometheus counters, and writing the results as a
//! table, JSON, CSV and an SVG plot. Each parser is tested on output captured from the real tool.

pub mod bpf_stats;
pub mod h2load;
pub mod metrics_text;
pub mod probe_cost;
pub mod procfs;
pub mod relay_memory;
pub mod report;
pub mod stats;
pub mod watches;
