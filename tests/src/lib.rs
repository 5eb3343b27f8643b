//! Harnesses for end-to-end tests: a real local Kubernetes control plane, and tshark as an
//! independent HTTP/2 oracle.
pub mod apiscope;
pub mod cluster;
pub mod fidelity;
pub mod tshark;
pub mod workload;
