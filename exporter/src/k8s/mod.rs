//! Kubernetes model stage: turns an HTTP exchange into an [`ApiRequest`], labelled the way the
//! apiserver labels its own audit events and `apiserver_request_total`.
//!
//! - `request_info`: verb/group/version/resource/... from method and URL (the apiserver's
//!   RequestInfo resolver) and the metric verb cleaning (LIST+watch -> WATCH, APPLY, ...).
//! - `client`: component from User-Agent, service account from a bearer JWT's claims,
//!   impersonation headers.
//! - `body`: gzip (capped), JSON, Kubernetes protobuf envelope, apply-patch YAML, Status.
//! - `message_body`: an exchange's bodies, inflated once and shared with the capture policy.
//! - `watch`: watch streams as a sequence of events (JSON and protobuf framing).
//! - `release`: the traced apiserver's Kubernetes release (from its build info) and the
//!   labelling rules that changed between releases.

pub mod api_request;
mod assemble;
pub mod body;
pub mod client;
pub mod message_body;
pub mod open_requests;
pub mod release;
pub mod request_info;
pub mod watch;

pub use api_request::ApiRequest;
