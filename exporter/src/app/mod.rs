//! The commands, wired together: `capture` (probes -> queue -> decode -> sinks, plus the metrics
//! endpoint), `replay` (a recording -> decode -> sinks) and `doctor` (the capture's checks, one
//! line each), `relay` (Kafka -> the live view). `config_file` turns `--config apiscope.yaml`
//! into arguments. `main.rs` parses the command line and calls these; this is the one module
//! that may use every stage.

mod capture;
pub mod config_file;
pub mod doctor;
mod output;
mod relay;
mod replay;
mod signals;

pub use capture::{CAPTURE_SINK_DEADLINE, capture};
pub use output::Output;
pub use relay::relay;
pub use replay::replay;
