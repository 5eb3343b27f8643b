//! The live view's server side: the bus every finished request is published on (a [`Sink`]),
//! and the server that streams it to browsers (docs/live-view.md).
//!
//! - `bus`: ids, the bounded history, the bounded broadcast to subscribers, the sink.
//! - `server`: HTTP + WebSocket (protocol v1), the embedded UI (`assets`), the token (`auth`).
//!
//! [`Sink`]: crate::sinks::Sink

pub mod args;
pub mod assets;
pub mod auth;
pub mod bus;
pub mod metrics;
pub mod protocol;
pub mod server;
#[cfg(test)]
mod tests;
pub mod tls;

pub use auth::Token;
pub use bus::{LiveBus, LiveLimits, LiveSink};
pub use server::{LiveServerConfig, PlainTcp, serve_live};
