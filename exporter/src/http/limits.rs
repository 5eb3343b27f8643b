//! Bounds and counters of the protocol stage, shared by the HTTP/1.1 and HTTP/2 decoders and the
//! dispatcher in front of them.

use super::http2::frame::FrameType;

/// Bounds of the protocol stage, per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolLimits {
    /// Largest HTTP/2 header block (HEADERS/PUSH_PROMISE + CONTINUATION) kept for decoding;
    /// larger blocks are lost (HPACK desync for that direction).
    pub max_header_block_bytes: usize,
    /// Largest decoded header list (names + values + 32 per field) of one block.
    pub max_decoded_header_bytes: usize,
    /// Largest HTTP/2 frame payload accepted in sync; a longer frame header means lost sync.
    pub max_frame_payload: u32,
    /// Largest frame payload a resync candidate may announce (stricter: fewer false syncs).
    pub resync_max_frame_payload: u32,
    /// Bound of the bytes held per direction (detection queue, partial heads and frames).
    pub max_buffered_bytes_per_direction: usize,
    /// Largest HTTP/1.x head (start line and headers) or trailer section.
    pub max_http1_head_bytes: usize,
    /// DATA payloads longer than this are reported in several `Body` events.
    pub max_body_event_bytes: usize,
    /// Bytes dropped before any protocol was recognised after which the connection is opaque.
    pub max_undetected_bytes: u64,
    /// Report every stream frame's metadata as [`HttpEvent::Frame`](super::HttpEvent) (off
    /// unless the live view is served: no other output uses them).
    pub report_frames: bool,
}

impl Default for ProtocolLimits {
    fn default() -> Self {
        ProtocolLimits {
            max_header_block_bytes: 256 * 1024,
            max_decoded_header_bytes: 1024 * 1024,
            max_frame_payload: (1 << 24) - 1,
            resync_max_frame_payload: 1 << 20,
            max_buffered_bytes_per_direction: 1024 * 1024,
            max_http1_head_bytes: 64 * 1024,
            max_body_event_bytes: 64 * 1024,
            max_undetected_bytes: 1024 * 1024,
            report_frames: false,
        }
    }
}

/// Counters of one connection's decoder, for the stage's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Bytes fed (both directions).
    pub bytes: u64,
    /// Bytes the capture did not copy (`Piece::Gap`).
    pub gap_bytes: u64,
    /// Bytes skipped while out of sync or before the protocol was recognised.
    pub discarded_bytes: u64,
    /// Bytes after the connection became opaque.
    pub opaque_bytes: u64,
    /// HTTP/2 frames by type code (DATA = 0 .. CONTINUATION = 9).
    pub frames: [u64; 10],
    pub unknown_frames: u64,
    pub header_blocks: u64,
    /// Header blocks reported with `fields: None`.
    pub header_blocks_undecoded: u64,
    pub push_promises: u64,
    /// Losses of frame sync, lost header blocks and header blocks that could not be decoded.
    pub desyncs: u64,
    /// Frame sync found again at a piece start after joining late or losing it.
    pub resyncs: u64,
    /// Protocol violations seen (a sign of misdecoding or of a broken peer).
    pub protocol_errors: u64,
    /// Header blocks, heads or buffers dropped for exceeding a limit.
    pub buffer_overflows: u64,
    pub http1_heads: u64,
    /// HTTP/1 responses whose request was not seen (not reported).
    pub http1_unpaired_responses: u64,
    /// 101 Switching Protocols or successful CONNECT.
    pub protocol_switches: u64,
    /// Connections given up as not HTTP (0 or 1).
    pub unrecognized: u64,
}

impl DecoderStats {
    pub fn frames_of(&self, kind: FrameType) -> u64 {
        self.frames
            .get(usize::from(kind.code()))
            .copied()
            .unwrap_or(0)
    }
}
