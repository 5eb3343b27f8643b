//! Harnesses for end-to-end tests: a real local Kubernetes control plane, and tshark as an
//! independent HTTP/2 oracle.
pub mod cluster;
pub mod tshark;
