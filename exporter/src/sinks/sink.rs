//! The one interface every output implements.

use std::time::Duration;

use anyhow::Result;
use prometheus_client::registry::Registry;

use crate::k8s::ApiRequest;
use crate::k8s::open_requests::OpenRequest;

/// One output. Called on the decode thread: nothing here may block on the network.
pub trait Sink: Send {
    /// One finished request.
    fn send(&mut self, request: &ApiRequest) -> Result<()>;
    /// About once a second: the requests open now.
    fn tick(&mut self, _open: &[OpenRequest]) {}
    /// The end of a batch: make what was sent visible.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Registers the sink's own metrics on the `/metrics` endpoint.
    fn register(&self, _registry: &mut Registry) {}
    /// Shutdown: deliver what is pending within `deadline`.
    fn finish(self: Box<Self>, _deadline: Duration) -> Result<()> {
        Ok(())
    }
}
