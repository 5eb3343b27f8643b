//! Protocol stage: turns the reassembled byte streams of one connection into [`HttpEvent`]s.
//!
//! HTTP/2 (frames, HPACK with a per-connection dynamic table, stream states) and HTTP/1.1 are
//! decoded passively: the decoder sees both directions of a connection it never took part in,
//! may have joined it in the middle, and must never guess. What it cannot decode it reports
//! ([`HttpEvent::Desync`], `fields: None`) and stays in frame sync where the framing allows.

pub mod decoder;
pub mod detect;
mod event;
pub mod http1;
pub mod http2;
mod limits;

pub use decoder::{Protocol, ProtocolDecoder};
pub use event::{FrameMeta, HttpEvent, StreamId, request_direction};
pub use limits::{DecoderStats, ProtocolLimits};
