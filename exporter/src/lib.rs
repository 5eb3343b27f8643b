//! apiscope: the data path, one module per stage.
//!
//! capture (eBPF uprobes on Go crypto/tls -> `TlsChunk`) -> reassembly -> http2 -> k8s model -> sinks.
//! `record` writes and reads the chunk stream as pcapng.

pub mod capture;
pub mod record;
pub mod sinks;
