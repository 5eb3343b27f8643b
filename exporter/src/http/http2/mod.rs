//! HTTP/2 connection decoder: frames in, [`HttpEvent`]s out, for both directions of one
//! connection.
//!
//! Each direction has its own frame reader, HPACK decoder and header-block assembly. Frame sync
//! is kept across pieces and across gaps inside payloads; a gap or an impossible header where a
//! frame header should be loses sync, and the reader then waits for a piece that starts with a
//! plausible frame (see [`frame::plausible_frames_at`]): Go's server reads the 9-byte header
//! and the payload with separate reads, and its writer flushes at frame boundaries, so capture
//! pieces usually start at frame boundaries.

pub mod frame;
pub mod hpack;
pub mod huffman;

use std::collections::BTreeMap;

use self::frame::{FRAME_HEADER_LEN, FrameHeader, FrameType};
use super::event::{FrameMeta, HttpEvent, StreamId, request_direction};
use super::limits::{DecoderStats, ProtocolLimits};
use crate::reassembly::Piece;
use crate::vocabulary::{Direction, HeaderField, MessageKind, Role};

/// Largest control frame payload kept (SETTINGS, GOAWAY, ...); the rest is skipped.
const MAX_CONTROL_PAYLOAD: usize = 4096;

/// Both directions of one HTTP/2 connection.
#[derive(Debug)]
pub struct Http2Connection {
    limits: ProtocolLimits,
    /// Indexed by [`dir_index`].
    dirs: [DirectionState; 2],
    /// The request direction started with the client preface: the connection was seen from
    /// its start, so HPACK tables that have been followed since then are known to be exact.
    preface_seen: bool,
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

fn other(direction: Direction) -> Direction {
    match direction {
        Direction::Egress => Direction::Ingress,
        Direction::Ingress => Direction::Egress,
    }
}

#[derive(Debug)]
struct DirectionState {
    direction: Direction,
    /// `Request` on the request direction, `Response` on the other.
    message_kind: MessageKind,
    is_request_direction: bool,
    reader: Reader,
    hpack: hpack::Decoder,
    /// Header block waiting for CONTINUATION frames.
    block: Option<PendingBlock>,
    /// Streams whose head this direction sent and whose message did not end yet; the value
    /// tells whether a final (non-1xx) head was seen.
    open_heads: BTreeMap<StreamId, bool>,
    /// Stream bytes fed so far (bytes and gaps).
    offset: u64,
    /// In frame sync since the direction's first byte, with no header block lost.
    exact_since_start: bool,
    /// Last SETTINGS_HEADER_TABLE_SIZE the other side advertised (it bounds this side's
    /// encoder table).
    peer_table_size: Option<u32>,
    desync_reported: bool,
}

#[derive(Debug)]
enum Reader {
    /// Out of sync: bytes since the oldest piece start that may be a frame boundary.
    Unsynced {
        buf: Vec<u8>,
        /// Piece starts inside `buf` still to try, ascending.
        candidates: Vec<usize>,
        /// Stream offset of `buf[0]`.
        buf_offset: u64,
    },
    Header {
        buf: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    Payload(Payload),
}

impl Reader {
    fn unsynced() -> Reader {
        Reader::Unsynced {
            buf: Vec::new(),
            candidates: Vec::new(),
            buf_offset: 0,
        }
    }

    fn at_frame_start() -> Reader {
        Reader::Header {
            buf: [0; FRAME_HEADER_LEN],
            have: 0,
        }
    }
}

#[derive(Debug)]
struct Payload {
    header: FrameHeader,
    remaining: u32,
    /// Wire bytes of this frame not yet reported in an event.
    unreported_wire: u64,
    body: PayloadBody,
}

#[derive(Debug)]
enum PayloadBody {
    Data {
        /// Data bytes still to come before the padding; `None` until the pad length byte.
        data_left: Option<u32>,
        data: Vec<u8>,
        missing: u32,
    },
    /// Kept up to `cap`. Past `cap`, control frames keep their first `cap` bytes (all that
    /// is read of them), header block frames are `lost`; a gap loses either.
    Buffered {
        buf: Vec<u8>,
        cap: usize,
        keep_prefix: bool,
        lost: bool,
    },
    Skip,
}

#[derive(Debug)]
struct PendingBlock {
    stream: StreamId,
    end_stream: bool,
    /// Set for PUSH_PROMISE: decoded to keep the table in step, not reported.
    promised: bool,
    fragments: Vec<u8>,
    lost: bool,
    wire_bytes: u64,
}

/// What a finished frame asks of the other direction.
enum CrossEffect {
    /// This side advertised SETTINGS_HEADER_TABLE_SIZE: it bounds the other side's encoder.
    TableSizeSetting(u32),
    /// RST_STREAM ends the stream in both directions.
    StreamReset(StreamId),
}

impl Http2Connection {
    pub fn new(role: Role, limits: ProtocolLimits) -> Self {
        let requests = request_direction(role);
        let dirs = [Direction::Egress, Direction::Ingress].map(|direction| {
            let mut hpack = hpack::Decoder::new_joined_late();
            hpack.set_max_decoded_bytes(limits.max_decoded_header_bytes);
            DirectionState {
                direction,
                message_kind: if direction == requests {
                    MessageKind::Request
                } else {
                    MessageKind::Response
                },
                is_request_direction: direction == requests,
                reader: Reader::unsynced(),
                hpack,
                block: None,
                open_heads: BTreeMap::new(),
                offset: 0,
                exact_since_start: false,
                peer_table_size: None,
                desync_reported: false,
            }
        });
        Http2Connection {
            limits,
            dirs,
            preface_seen: false,
        }
    }

    /// Bytes held for incomplete frames, header blocks and resync candidates.
    pub fn buffered_bytes(&self) -> usize {
        self.dirs.iter().map(DirectionState::buffered_bytes).sum()
    }

    /// Whether both directions are in frame sync with every HPACK table entry known: the
    /// wire alone then decodes every header block, and the header hooks in the traced process
    /// (for connections older than the capture) have nothing to add.
    pub fn header_blocks_decodable(&self) -> bool {
        self.dirs
            .iter()
            .all(|d| !matches!(d.reader, Reader::Unsynced { .. }) && d.hpack.is_fully_known())
    }

    /// `len` bytes of `direction` were dropped before this decoder was created (while the
    /// protocol was being detected): they count as stream bytes without frame sync.
    pub fn skip_unsynced(&mut self, direction: Direction, len: u64) {
        let state = &mut self.dirs[dir_index(direction)];
        state.offset = state.offset.saturating_add(len);
    }

    pub fn feed(
        &mut self,
        direction: Direction,
        timestamp_ns: u64,
        piece: Piece<'_>,
        out: &mut Vec<HttpEvent>,
        stats: &mut DecoderStats,
    ) {
        let mut effects = Vec::new();
        let mut context = Context {
            limits: &self.limits,
            timestamp_ns,
            out,
            stats,
            effects: &mut effects,
            preface_seen: &mut self.preface_seen,
        };
        let state = &mut self.dirs[dir_index(direction)];
        match piece {
            Piece::Bytes(bytes) => state.piece_bytes(bytes, &mut context),
            Piece::Gap(len) => state.gap(len, &mut context),
        }
        let other_state = &mut self.dirs[dir_index(other(direction))];
        for effect in effects {
            match effect {
                CrossEffect::TableSizeSetting(size) => {
                    other_state.peer_table_size = Some(size);
                    other_state.hpack.settings_table_size(size);
                }
                CrossEffect::StreamReset(stream) => {
                    other_state.open_heads.remove(&stream);
                }
            }
        }
    }
}

/// Per-call context shared by the direction's helpers.
struct Context<'a> {
    limits: &'a ProtocolLimits,
    timestamp_ns: u64,
    out: &'a mut Vec<HttpEvent>,
    stats: &'a mut DecoderStats,
    effects: &'a mut Vec<CrossEffect>,
    preface_seen: &'a mut bool,
}

impl DirectionState {
    fn buffered_bytes(&self) -> usize {
        let reader = match &self.reader {
            Reader::Unsynced { buf, .. } => buf.len(),
            Reader::Header { have, .. } => *have,
            Reader::Payload(payload) => match &payload.body {
                PayloadBody::Data { data, .. } => data.len(),
                PayloadBody::Buffered { buf, .. } => buf.len(),
                PayloadBody::Skip => 0,
            },
        };
        reader + self.block.as_ref().map_or(0, |block| block.fragments.len())
    }

    fn piece_bytes(&mut self, bytes: &[u8], cx: &mut Context<'_>) {
        let start_offset = self.offset;
        self.offset = self.offset.saturating_add(bytes.len() as u64);
        if let Reader::Unsynced {
            buf,
            candidates,
            buf_offset,
        } = &mut self.reader
        {
            if buf.is_empty() {
                *buf_offset = start_offset;
            }
            candidates.push(buf.len());
            buf.extend_from_slice(bytes);
            if let Some(synced) = self.try_resync(cx) {
                self.consume(&synced, cx);
            }
            return;
        }
        self.consume(bytes, cx);
    }

    /// Tries the pending piece starts in order; on success switches to in-sync reading and
    /// returns the bytes from the sync point on.
    fn try_resync(&mut self, cx: &mut Context<'_>) -> Option<Vec<u8>> {
        let Reader::Unsynced {
            buf,
            candidates,
            buf_offset,
        } = &mut self.reader
        else {
            return None;
        };
        while let Some(&start) = candidates.first() {
            let candidate = buf.get(start..).unwrap_or_default();
            let at_stream_start = *buf_offset + start as u64 == 0;
            if at_stream_start && self.is_request_direction {
                let compared = candidate.len().min(frame::CLIENT_PREFACE.len());
                if candidate.get(..compared) == frame::CLIENT_PREFACE.get(..compared) {
                    if compared < frame::CLIENT_PREFACE.len() {
                        return None;
                    }
                    let rest = candidate.get(compared..).unwrap_or_default().to_vec();
                    self.reader = Reader::at_frame_start();
                    self.exact_since_start = true;
                    *cx.preface_seen = true;
                    return Some(rest);
                }
            }
            // A frame header split over several pieces is only trusted at the start of a
            // connection seen from its preface: otherwise a short piece is more likely the
            // tail of something else (Go writes and reads frame headers whole).
            let own_piece_len = candidates
                .get(1)
                .map_or(buf.len(), |&next| next)
                .saturating_sub(start);
            let connection_start = at_stream_start && *cx.preface_seen;
            if !connection_start && own_piece_len < FRAME_HEADER_LEN {
                candidates.remove(0);
                continue;
            }
            match frame::plausible_frames_at(candidate, cx.limits.resync_max_frame_payload) {
                None => return None,
                Some(true) => {
                    let synced = candidate.to_vec();
                    cx.stats.discarded_bytes =
                        cx.stats.discarded_bytes.saturating_add(start as u64);
                    if !at_stream_start {
                        cx.stats.resyncs = cx.stats.resyncs.saturating_add(1);
                    }
                    self.exact_since_start = at_stream_start;
                    self.reader = Reader::at_frame_start();
                    return Some(synced);
                }
                Some(false) => {
                    candidates.remove(0);
                }
            }
        }
        cx.stats.discarded_bytes = cx.stats.discarded_bytes.saturating_add(buf.len() as u64);
        buf.clear();
        None
    }

    /// Consumes bytes while in sync (a state other than `Unsynced` at entry).
    fn consume(&mut self, mut input: &[u8], cx: &mut Context<'_>) {
        while !input.is_empty() {
            match &mut self.reader {
                Reader::Unsynced { .. } => {
                    // Lost sync inside this piece: the rest cannot start a frame we could trust.
                    cx.stats.discarded_bytes =
                        cx.stats.discarded_bytes.saturating_add(input.len() as u64);
                    return;
                }
                Reader::Header { buf, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(input.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(*have..*have + n), input.get(..n))
                    {
                        dst.copy_from_slice(src);
                    }
                    *have += n;
                    input = input.get(n..).unwrap_or_default();
                    if *have == FRAME_HEADER_LEN {
                        let header = FrameHeader::parse(buf);
                        self.start_frame(header, cx);
                    }
                }
                Reader::Payload(payload) => {
                    let n = (payload.remaining as usize).min(input.len());
                    let (now, rest) = input.split_at(n);
                    input = rest;
                    payload.remaining -= n as u32;
                    payload.unreported_wire += n as u64;
                    payload_bytes(payload, now, self.message_kind, cx);
                    if payload.remaining == 0 {
                        self.finish_frame(cx);
                    }
                }
            }
        }
    }

    fn gap(&mut self, len: u32, cx: &mut Context<'_>) {
        self.offset = self.offset.saturating_add(u64::from(len));
        match &mut self.reader {
            Reader::Unsynced {
                buf, candidates, ..
            } => {
                cx.stats.discarded_bytes = cx
                    .stats
                    .discarded_bytes
                    .saturating_add(buf.len() as u64 + u64::from(len));
                buf.clear();
                candidates.clear();
            }
            Reader::Payload(payload) if len <= payload.remaining => {
                payload.remaining -= len;
                payload.unreported_wire += u64::from(len);
                payload_gap(payload, len);
                if payload.remaining == 0 {
                    self.finish_frame(cx);
                }
            }
            Reader::Payload(payload) => {
                // The gap runs past this frame: finish it, then the next header is lost.
                let inside = payload.remaining;
                payload.remaining = 0;
                payload.unreported_wire += u64::from(inside);
                payload_gap(payload, inside);
                self.finish_frame(cx);
                cx.stats.discarded_bytes = cx
                    .stats
                    .discarded_bytes
                    .saturating_add(u64::from(len - inside));
                self.lose_sync("capture gap across a frame header", cx);
            }
            Reader::Header { .. } => {
                cx.stats.discarded_bytes = cx.stats.discarded_bytes.saturating_add(u64::from(len));
                self.lose_sync("capture gap in a frame header", cx);
            }
        }
    }

    fn start_frame(&mut self, header: FrameHeader, cx: &mut Context<'_>) {
        if let Err(reason) = header.check_in_sync(cx.limits.max_frame_payload) {
            cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
            self.lose_sync(reason, cx);
            return;
        }
        let kind = header.frame_type();
        match kind {
            Some(kind) => {
                if let Some(count) = cx.stats.frames.get_mut(usize::from(kind.code())) {
                    *count = count.saturating_add(1);
                }
            }
            None => cx.stats.unknown_frames = cx.stats.unknown_frames.saturating_add(1),
        }
        // A header block must be followed by its CONTINUATION frames only.
        if self.block.is_some() && kind != Some(FrameType::Continuation) {
            cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
            if let Some(block) = self.block.as_mut() {
                block.lost = true;
            }
            self.finish_block(cx);
        }
        let block_room = cx
            .limits
            .max_header_block_bytes
            .saturating_sub(self.block.as_ref().map_or(0, |b| b.fragments.len()));
        let body = match kind {
            Some(FrameType::Data) => PayloadBody::Data {
                data_left: if header.has(frame::PADDED) {
                    None
                } else {
                    Some(header.length)
                },
                data: Vec::new(),
                missing: 0,
            },
            Some(FrameType::Headers | FrameType::PushPromise | FrameType::Continuation) => {
                PayloadBody::Buffered {
                    buf: Vec::new(),
                    // Room for the pad length, padding and priority fields too.
                    cap: block_room.saturating_add(1 + 255 + 5),
                    keep_prefix: false,
                    lost: false,
                }
            }
            Some(_) => PayloadBody::Buffered {
                buf: Vec::new(),
                cap: MAX_CONTROL_PAYLOAD,
                keep_prefix: true,
                lost: false,
            },
            None => PayloadBody::Skip,
        };
        self.reader = Reader::Payload(Payload {
            header,
            remaining: header.length,
            unreported_wire: FRAME_HEADER_LEN as u64,
            body,
        });
        if header.length == 0 {
            self.finish_frame(cx);
        }
    }

    fn finish_frame(&mut self, cx: &mut Context<'_>) {
        let reader = std::mem::replace(&mut self.reader, Reader::at_frame_start());
        let Reader::Payload(payload) = reader else {
            return;
        };
        let header = payload.header;
        let wire = payload.unreported_wire;
        let ts = cx.timestamp_ns;
        if cx.limits.report_frames && header.stream_id != 0 {
            cx.out.push(HttpEvent::Frame {
                stream: header.stream_id,
                frame: FrameMeta {
                    direction: self.direction,
                    frame_type: header.kind,
                    flags: header.flags,
                    length: header.length,
                    timestamp_ns: ts,
                },
            });
        }
        match (header.frame_type(), payload.body) {
            (Some(FrameType::Data), PayloadBody::Data { data, missing, .. }) => {
                let end_stream = header.has(frame::END_STREAM);
                cx.out.push(HttpEvent::Body {
                    stream: header.stream_id,
                    kind: self.message_kind,
                    data,
                    missing,
                    end_stream,
                    wire_bytes: wire,
                    timestamp_ns: ts,
                });
                if end_stream {
                    self.open_heads.remove(&header.stream_id);
                }
            }
            (Some(kind), PayloadBody::Buffered { buf, lost, .. }) => {
                self.finish_buffered(kind, header, &buf, lost, wire, cx)
            }
            _ => {}
        }
    }

    fn finish_buffered(
        &mut self,
        kind: FrameType,
        header: FrameHeader,
        payload: &[u8],
        lost: bool,
        wire: u64,
        cx: &mut Context<'_>,
    ) {
        let ts = cx.timestamp_ns;
        match kind {
            FrameType::Headers | FrameType::PushPromise => {
                let (fragment, promised) = if kind == FrameType::Headers {
                    (frame::headers_fragment(&header, payload), false)
                } else {
                    cx.stats.push_promises = cx.stats.push_promises.saturating_add(1);
                    (
                        frame::push_promise_fragment(&header, payload).map(|(_, f)| f),
                        true,
                    )
                };
                if fragment.is_none() && !lost {
                    cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
                }
                let too_large =
                    fragment.is_some_and(|f| f.len() > cx.limits.max_header_block_bytes);
                if too_large {
                    cx.stats.buffer_overflows = cx.stats.buffer_overflows.saturating_add(1);
                }
                let fragment = fragment.filter(|_| !too_large);
                self.block = Some(PendingBlock {
                    stream: header.stream_id,
                    end_stream: header.has(frame::END_STREAM),
                    promised,
                    fragments: fragment.unwrap_or_default().to_vec(),
                    lost: lost || fragment.is_none(),
                    wire_bytes: wire,
                });
                if header.has(frame::END_HEADERS) {
                    self.finish_block(cx);
                }
            }
            FrameType::Continuation => {
                let limit = cx.limits.max_header_block_bytes;
                match self.block.as_mut() {
                    Some(block) if block.stream == header.stream_id => {
                        block.wire_bytes = block.wire_bytes.saturating_add(wire);
                        let too_large = block.fragments.len().saturating_add(payload.len()) > limit;
                        if too_large && !block.lost {
                            cx.stats.buffer_overflows = cx.stats.buffer_overflows.saturating_add(1);
                        }
                        if lost || too_large {
                            block.lost = true;
                            block.fragments = Vec::new();
                        } else if !block.lost {
                            block.fragments.extend_from_slice(payload);
                        }
                        if header.has(frame::END_HEADERS) {
                            self.finish_block(cx);
                        }
                    }
                    _ => {
                        // The start of this block was not seen (or belongs to another stream):
                        // the block is lost and with it the table state.
                        cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
                        if let Some(block) = self.block.as_mut() {
                            block.lost = true;
                            self.finish_block(cx);
                        }
                        self.hpack.lose_block();
                        self.exact_since_start = false;
                        self.report_desync("CONTINUATION without its header block", cx);
                    }
                }
            }
            FrameType::RstStream => {
                if let Some(error_code) = frame::read_u32(payload) {
                    cx.out.push(HttpEvent::Reset {
                        stream: header.stream_id,
                        error_code,
                        direction: self.direction,
                        timestamp_ns: ts,
                    });
                }
                self.open_heads.remove(&header.stream_id);
                cx.effects.push(CrossEffect::StreamReset(header.stream_id));
            }
            FrameType::GoAway => {
                if let Some((last_stream_id, error_code)) = frame::goaway(payload) {
                    cx.out.push(HttpEvent::GoAway {
                        last_stream_id,
                        error_code,
                        direction: self.direction,
                        timestamp_ns: ts,
                    });
                }
            }
            FrameType::Settings => {
                if !header.has(frame::ACK) {
                    for (id, value) in frame::settings(payload) {
                        if id == frame::SETTINGS_HEADER_TABLE_SIZE {
                            cx.effects.push(CrossEffect::TableSizeSetting(value));
                        }
                    }
                }
            }
            FrameType::Data | FrameType::Priority | FrameType::Ping | FrameType::WindowUpdate => {}
        }
    }

    /// Decodes (or gives up on) the complete header block and reports it.
    fn finish_block(&mut self, cx: &mut Context<'_>) {
        let Some(block) = self.block.take() else {
            return;
        };
        cx.stats.header_blocks = cx.stats.header_blocks.saturating_add(1);
        if self.hpack.is_pristine() && self.exact_since_start && *cx.preface_seen {
            // Followed since the connection's first byte: the table started empty.
            let mut fresh = hpack::Decoder::new_at_connection_start();
            fresh.set_max_decoded_bytes(cx.limits.max_decoded_header_bytes);
            if let Some(size) = self.peer_table_size {
                fresh.settings_table_size(size);
            }
            self.hpack = fresh;
        }
        let fields = if block.lost {
            self.hpack.lose_block();
            self.exact_since_start = false;
            self.report_desync("header block lost (capture gap or size limit)", cx);
            None
        } else {
            match self.hpack.decode_block(&block.fragments) {
                Ok(fields) if !well_formed(&fields) => {
                    // HTTP/2 never sends this: more likely a false frame sync than a peer
                    // bug. Whatever the block inserted cannot be trusted either.
                    cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
                    self.hpack.lose_block();
                    self.exact_since_start = false;
                    self.report_desync("malformed header list", cx);
                    None
                }
                Ok(fields) => {
                    if self.hpack.is_fully_known() {
                        self.desync_reported = false;
                    }
                    Some(fields)
                }
                Err(error) => {
                    if !error.parsed_to_end() {
                        self.exact_since_start = false;
                    }
                    self.report_desync(error.describe(), cx);
                    None
                }
            }
        };
        if fields.is_none() {
            cx.stats.header_blocks_undecoded = cx.stats.header_blocks_undecoded.saturating_add(1);
        }
        if block.promised {
            return;
        }
        let kind = self.classify(block.stream, fields.as_deref());
        cx.out.push(HttpEvent::Head {
            stream: block.stream,
            kind,
            fields,
            end_stream: block.end_stream,
            wire_bytes: block.wire_bytes,
            timestamp_ns: cx.timestamp_ns,
        });
        if block.end_stream {
            self.open_heads.remove(&block.stream);
        }
    }

    /// Which message a header block on `stream` starts, and records it. Decoded fields decide
    /// (a request has `:method`, a response `:status`, trailers neither); otherwise what this
    /// direction sent on the stream before.
    fn classify(&mut self, stream: StreamId, fields: Option<&[HeaderField]>) -> MessageKind {
        let find = |name: &str| {
            fields.map(|fields| {
                fields
                    .iter()
                    .find(|field| field.name == name)
                    .map(|field| field.value.clone())
            })
        };
        let (kind, final_head) = match self.message_kind {
            MessageKind::Request => match find(":method") {
                Some(Some(_)) => (MessageKind::Request, true),
                Some(None) => (MessageKind::Trailers, true),
                None if self.open_heads.contains_key(&stream) => (MessageKind::Trailers, true),
                None => (MessageKind::Request, true),
            },
            _ => match find(":status") {
                Some(Some(status)) => (MessageKind::Response, !status.starts_with('1')),
                Some(None) => (MessageKind::Trailers, true),
                None if self.open_heads.get(&stream) == Some(&true) => {
                    (MessageKind::Trailers, true)
                }
                None => (MessageKind::Response, true),
            },
        };
        self.open_heads.insert(stream, final_head);
        if self.open_heads.len() > MAX_OPEN_STREAMS {
            self.open_heads.pop_first();
        }
        kind
    }

    fn lose_sync(&mut self, reason: &'static str, cx: &mut Context<'_>) {
        if let Some(block) = self.block.as_mut() {
            block.lost = true;
            self.finish_block(cx);
        }
        // Frames skipped while out of sync may carry header blocks.
        self.hpack.lose_block();
        self.exact_since_start = false;
        self.reader = Reader::unsynced();
        self.report_desync(reason, cx);
    }

    fn report_desync(&mut self, reason: &str, cx: &mut Context<'_>) {
        cx.stats.desyncs = cx.stats.desyncs.saturating_add(1);
        if self.desync_reported {
            return;
        }
        self.desync_reported = true;
        cx.out.push(HttpEvent::Desync {
            direction: self.direction,
            reason: reason.to_string(),
            timestamp_ns: cx.timestamp_ns,
        });
    }
}

/// RFC 9113 §8.2: lower-case token names, pseudo-fields (known ones) before regular fields.
fn well_formed(fields: &[HeaderField]) -> bool {
    const PSEUDO: [&str; 6] = [
        ":method",
        ":scheme",
        ":path",
        ":authority",
        ":status",
        ":protocol",
    ];
    let mut regular_seen = false;
    fields.iter().all(|field| {
        if field.name.starts_with(':') {
            !regular_seen && PSEUDO.contains(&field.name.as_str())
        } else {
            regular_seen = true;
            !field.name.is_empty()
                && field.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
                })
        }
    })
}

/// Streams tracked per direction for head/trailers classification; the oldest are forgotten.
const MAX_OPEN_STREAMS: usize = 4096;

fn payload_bytes(
    payload: &mut Payload,
    mut bytes: &[u8],
    message_kind: MessageKind,
    cx: &mut Context<'_>,
) {
    match &mut payload.body {
        PayloadBody::Data {
            data_left,
            data,
            missing,
        } => {
            if data_left.is_none() {
                let Some((&pad_len, rest)) = bytes.split_first() else {
                    return;
                };
                bytes = rest;
                // `remaining` already excludes this piece; what follows the pad length byte in
                // the frame is the bytes of this piece after it plus `remaining`.
                let after = (bytes.len() as u32).saturating_add(payload.remaining);
                if u32::from(pad_len) > after {
                    cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
                }
                *data_left = Some(after.saturating_sub(u32::from(pad_len)));
            }
            let left = data_left.unwrap_or(0);
            let n = (left as usize).min(bytes.len());
            data.extend_from_slice(bytes.get(..n).unwrap_or_default());
            *data_left = Some(left - n as u32);
            if data.len() >= cx.limits.max_body_event_bytes && payload.remaining > 0 {
                // Long DATA frame: report what we have, keep going.
                cx.out.push(HttpEvent::Body {
                    stream: payload.header.stream_id,
                    kind: message_kind,
                    data: std::mem::take(data),
                    missing: std::mem::take(missing),
                    end_stream: false,
                    wire_bytes: std::mem::take(&mut payload.unreported_wire),
                    timestamp_ns: cx.timestamp_ns,
                });
            }
        }
        PayloadBody::Buffered {
            buf,
            cap,
            keep_prefix,
            lost,
        } => {
            if *keep_prefix {
                let room = cap.saturating_sub(buf.len()).min(bytes.len());
                buf.extend_from_slice(bytes.get(..room).unwrap_or_default());
            } else if buf.len().saturating_add(bytes.len()) > *cap {
                if !*lost {
                    cx.stats.buffer_overflows = cx.stats.buffer_overflows.saturating_add(1);
                }
                *lost = true;
                *buf = Vec::new();
            } else if !*lost {
                buf.extend_from_slice(bytes);
            }
        }
        PayloadBody::Skip => {}
    }
}

fn payload_gap(payload: &mut Payload, mut len: u32) {
    match &mut payload.body {
        PayloadBody::Data {
            data_left, missing, ..
        } => {
            if data_left.is_none() {
                // The pad length byte is lost: assume no padding.
                len = len.saturating_sub(1);
                *data_left = Some(len.saturating_add(payload.remaining));
            }
            let left = data_left.unwrap_or(0);
            let inside = left.min(len);
            *missing = missing.saturating_add(inside);
            *data_left = Some(left - inside);
        }
        PayloadBody::Buffered { lost, buf, .. } => {
            *lost = true;
            *buf = Vec::new();
        }
        PayloadBody::Skip => {}
    }
}

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
