//! The commands, wired together: `capture` (probes -> queue -> decode -> sinks, plus the metrics
//! endpoint) and `replay` (a recording -> decode -> sinks). `main.rs` parses the command line and
//! calls these; this is the one module that may use every stage.

mod capture;
mod output;
mod replay;

pub use capture::{CAPTURE_SINK_DEADLINE, capture};
pub use output::Output;
pub use replay::replay;
