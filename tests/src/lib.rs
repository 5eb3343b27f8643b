//! Harnesses for end-to-end tests: a real local Kubernetes control plane, tshark as an
//! independent HTTP/2 oracle, and the telemetry path's real back ends (the OpenTelemetry
//! Collector built from the production manifest, Apache Kafka in KRaft mode).
pub mod apiscope;
pub mod bench;
pub mod cluster;
pub mod fidelity;
pub mod httpsink;
pub mod kafka;
pub mod otelcol;
pub mod prometheus;
pub mod tshark;
pub mod workload;
