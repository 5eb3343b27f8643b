//! Harnesses for end-to-end tests: a real local Kubernetes control plane, tshark as an
//! independent HTTP/2 oracle, and the telemetry path's real back ends (the OpenTelemetry
//! Collector built from the production manifest, Apache Kafka in KRaft mode, Prometheus 3.16,
//! Jaeger v2) and the dashboards and rule files they are checked with.
pub mod apiscope;
pub mod bench;
pub mod cluster;
pub mod dashboards;
pub mod fidelity;
pub mod httpsink;
pub mod jaeger;
pub mod kafka;
pub mod otelcol;
pub mod prometheus;
pub mod relay;
pub mod tshark;
pub mod workload;
