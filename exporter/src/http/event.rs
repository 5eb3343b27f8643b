//! What the protocol stage reports: [`HttpEvent`]s, per stream.

use crate::vocabulary::{Direction, HeaderField, MessageKind, Role};

/// Identifies an exchange within a connection: the HTTP/2 stream id, or for HTTP/1.1 the
/// position of the request on the connection (1, 2, 3...).
pub type StreamId = u32;

/// What the protocol stage reports. Events of one connection come in stream order per
/// direction; `timestamp_ns` is the capture time (CLOCK_MONOTONIC) of the chunk that completed
/// the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpEvent {
    /// A header block: request head, response head (also 1xx) or trailers.
    Head {
        stream: StreamId,
        kind: MessageKind,
        /// `None` when the block was seen but could not be decoded (HPACK desync).
        fields: Option<Vec<HeaderField>>,
        end_stream: bool,
        /// Bytes on the wire, frame headers included.
        wire_bytes: u64,
        timestamp_ns: u64,
    },
    /// Body bytes of a message (HTTP/2 DATA payload without padding; HTTP/1.1 body after
    /// transfer decoding). `missing` counts bytes of this body the capture did not copy.
    Body {
        stream: StreamId,
        kind: MessageKind,
        data: Vec<u8>,
        missing: u32,
        end_stream: bool,
        wire_bytes: u64,
        timestamp_ns: u64,
    },
    /// RST_STREAM (HTTP/2), sent in `direction`.
    Reset {
        stream: StreamId,
        error_code: u32,
        direction: Direction,
        timestamp_ns: u64,
    },
    /// GOAWAY (HTTP/2): streams above `last_stream_id` will not be processed.
    GoAway {
        last_stream_id: StreamId,
        error_code: u32,
        direction: Direction,
        timestamp_ns: u64,
    },
    /// A frame on a stream (stream id not 0), reported only with
    /// [`ProtocolLimits::report_frames`](super::ProtocolLimits), before the event the frame
    /// completes, so the exchange can keep the stream's frame list (the live view shows it).
    Frame { stream: StreamId, frame: FrameMeta },
    /// The decoder lost track of header state (unknown HPACK index, garbage, joined mid-frame).
    /// Reported once per direction (again only after the state was fully recovered). Later
    /// `Head` events of this direction carry `fields: None` unless they can be decoded exactly
    /// (HTTP/2: they reference only table entries inserted after the loss).
    Desync {
        direction: Direction,
        reason: String,
        timestamp_ns: u64,
    },
}

/// One HTTP/2 frame of a stream, metadata only (never its payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    pub direction: Direction,
    /// Raw type code (0 DATA, 1 HEADERS, 3 RST_STREAM, 9 CONTINUATION...).
    pub frame_type: u8,
    pub flags: u8,
    pub length: u32,
    pub timestamp_ns: u64,
}

/// Which direction carries requests, given who accepted the connection.
pub fn request_direction(role: Role) -> Direction {
    match role {
        Role::Server => Direction::Ingress,
        Role::Client => Direction::Egress,
    }
}
