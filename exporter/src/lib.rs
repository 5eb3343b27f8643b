//! apiscope: the data path, one module per stage.
//!
//! capture (eBPF uprobes on Go crypto/tls -> `TlsChunk`) -> reassembly (ordered byte streams per
//! connection and direction) -> http (HTTP/2 + HPACK, HTTP/1.1 -> `HttpEvent`) -> exchange (one
//! request + response per stream) -> k8s (`ApiRequest`) -> policy (capture level, redaction) -> sinks.
//! `record` writes and reads the chunk stream as pcapng. `relay` reads what the sinks sent to
//! Kafka back into requests for the live view.

pub mod app;
pub mod capture;
pub mod exchange;
pub mod filter;
pub mod http;
pub mod k8s;
pub mod pipeline;
pub mod policy;
pub mod reassembly;
pub mod record;
pub mod relay;
pub mod sinks;
pub mod vocabulary;
