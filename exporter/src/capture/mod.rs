//! Capture stage: finds Go TLS processes, attaches uprobes, and turns ring-buffer events into
//! [`TlsChunk`]s.

pub mod chunk;
pub mod config;
pub mod discovery;
pub mod ebpf_object;
pub mod gobinary;
pub mod hook_switches;
pub mod metrics;
pub mod queue;
pub mod run;
pub mod tracer;

pub use chunk::{ChunkEventKind, TlsChunk};
