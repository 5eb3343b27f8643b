//! Sinks: where results leave apiscope.

pub mod prometheus;
pub mod stdout;
