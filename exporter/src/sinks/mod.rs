//! Sinks: where results leave apiscope.

pub mod prometheus;
