//! HTTP/2 frame layout (RFC 9113 §4 and §6): the 9-byte header, the frame types and flags, the
//! payload layouts of the small frames, and the plausibility checks used to find frame
//! boundaries in a stream the decoder joined in the middle.

pub const FRAME_HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE before a peer raises it.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest frame payload the protocol allows (2^24 - 1).
pub const MAX_FRAME_PAYLOAD: u32 = (1 << 24) - 1;
/// The connection preface a client sends first.
pub const CLIENT_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
}

impl FrameType {
    pub const ALL: [FrameType; 10] = [
        FrameType::Data,
        FrameType::Headers,
        FrameType::Priority,
        FrameType::RstStream,
        FrameType::Settings,
        FrameType::PushPromise,
        FrameType::Ping,
        FrameType::GoAway,
        FrameType::WindowUpdate,
        FrameType::Continuation,
    ];

    pub fn from_u8(code: u8) -> Option<FrameType> {
        FrameType::ALL.get(usize::from(code)).copied()
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// Flags defined for this type; others must be ignored by a receiver, but a sender never
    /// sets them, so they count against a candidate frame boundary.
    fn defined_flags(self) -> u8 {
        match self {
            FrameType::Data => END_STREAM | PADDED,
            FrameType::Headers => END_STREAM | END_HEADERS | PADDED | PRIORITY,
            FrameType::PushPromise => END_HEADERS | PADDED,
            FrameType::Continuation => END_HEADERS,
            FrameType::Settings | FrameType::Ping => ACK,
            FrameType::Priority
            | FrameType::RstStream
            | FrameType::GoAway
            | FrameType::WindowUpdate => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    /// Raw type code; unknown types are legal and skipped.
    pub kind: u8,
    pub flags: u8,
    /// Stream identifier without the reserved bit.
    pub stream_id: u32,
    /// The reserved bit, which senders leave 0.
    pub reserved_bit: bool,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        let raw_stream = u32::from_be_bytes([s0, s1, s2, s3]);
        FrameHeader {
            length: u32::from_be_bytes([0, l0, l1, l2]),
            kind,
            flags,
            stream_id: raw_stream & 0x7fff_ffff,
            reserved_bit: raw_stream & 0x8000_0000 != 0,
        }
    }

    /// Parses the first 9 bytes of `bytes`, if there are that many.
    pub fn from_prefix(bytes: &[u8]) -> Option<FrameHeader> {
        let header: &[u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        Some(FrameHeader::parse(header))
    }

    pub fn frame_type(&self) -> Option<FrameType> {
        FrameType::from_u8(self.kind)
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Protocol rules a frame in sync must meet (RFC 9113 §6), or the reason it breaks them:
    /// a header that breaks them means the decoder lost frame sync.
    pub fn check(&self, max_payload: u32) -> Result<(), &'static str> {
        if self.length > max_payload.min(MAX_FRAME_PAYLOAD) {
            return Err("frame longer than the limit");
        }
        let Some(kind) = self.frame_type() else {
            return Ok(());
        };
        let needs_stream = matches!(
            kind,
            FrameType::Data
                | FrameType::Headers
                | FrameType::Priority
                | FrameType::RstStream
                | FrameType::PushPromise
                | FrameType::Continuation
        );
        let needs_connection = matches!(
            kind,
            FrameType::Settings | FrameType::Ping | FrameType::GoAway
        );
        if needs_stream && self.stream_id == 0 {
            return Err("stream frame on stream 0");
        }
        if needs_connection && self.stream_id != 0 {
            return Err("connection frame on a stream");
        }
        let length_ok = match kind {
            FrameType::Priority => self.length == 5,
            FrameType::RstStream | FrameType::WindowUpdate => self.length == 4,
            FrameType::Ping => self.length == 8,
            FrameType::GoAway => self.length >= 8,
            FrameType::Settings => {
                self.length.is_multiple_of(6) && !(self.has(ACK) && self.length != 0)
            }
            FrameType::PushPromise => self.length >= 4,
            FrameType::Data | FrameType::Headers | FrameType::Continuation => true,
        };
        if !length_ok {
            return Err("frame length invalid for its type");
        }
        Ok(())
    }

    /// [`FrameHeader::check`] plus what peers never send although a receiver would tolerate
    /// it: a set reserved bit, or an unknown frame type longer than the default maximum frame
    /// size (such a header more likely means that sync was lost).
    pub fn check_in_sync(&self, max_payload: u32) -> Result<(), &'static str> {
        self.check(max_payload)?;
        if self.reserved_bit {
            return Err("reserved stream id bit set");
        }
        if self.frame_type().is_none() && self.length > DEFAULT_MAX_FRAME_SIZE {
            return Err("long frame of unknown type");
        }
        Ok(())
    }

    /// Stricter test for a frame boundary candidate found while out of sync: a known type that
    /// can start a unit of decoding (not CONTINUATION), only defined flags, reserved bit clear,
    /// and, for stream frames, an odd (client-initiated) stream id.
    pub fn plausible_sync_point(&self, max_payload: u32) -> bool {
        let Some(kind) = self.frame_type() else {
            return false;
        };
        if kind == FrameType::Continuation
            || self.reserved_bit
            || self.flags & !kind.defined_flags() != 0
            || self.check(max_payload).is_err()
        {
            return false;
        }
        let stream_frame = !matches!(
            kind,
            FrameType::Settings | FrameType::Ping | FrameType::GoAway | FrameType::WindowUpdate
        );
        !stream_frame || self.stream_id % 2 == 1
    }
}

/// Whether `bytes` (starting at a piece start) begins with a plausible frame, and every further
/// frame header that lies completely inside `bytes` passes [`FrameHeader::check`].
/// `None` when fewer than 9 bytes are available.
pub fn plausible_frames_at(bytes: &[u8], max_payload: u32) -> Option<bool> {
    let first = FrameHeader::from_prefix(bytes)?;
    if !first.plausible_sync_point(max_payload) {
        return Some(false);
    }
    let mut offset = FRAME_HEADER_LEN + first.length as usize;
    // Bounded: every step advances by at least 9 bytes.
    while let Some(next) = bytes.get(offset..).and_then(FrameHeader::from_prefix) {
        if next.check_in_sync(max_payload).is_err() {
            return Some(false);
        }
        offset += FRAME_HEADER_LEN + next.length as usize;
    }
    Some(true)
}

/// Splits a HEADERS payload into its header block fragment (padding and priority removed).
pub fn headers_fragment<'a>(header: &FrameHeader, payload: &'a [u8]) -> Option<&'a [u8]> {
    let (body, _) = strip_padding(header, payload)?;
    if header.has(PRIORITY) {
        body.get(5..)
    } else {
        Some(body)
    }
}

/// Splits a PUSH_PROMISE payload into the promised stream id and its header block fragment.
pub fn push_promise_fragment<'a>(
    header: &FrameHeader,
    payload: &'a [u8],
) -> Option<(u32, &'a [u8])> {
    let (body, _) = strip_padding(header, payload)?;
    let promised = read_u32(body)? & 0x7fff_ffff;
    Some((promised, body.get(4..)?))
}

/// Removes the pad length byte and the padding of a PADDED frame: (content, padding length).
pub fn strip_padding<'a>(header: &FrameHeader, payload: &'a [u8]) -> Option<(&'a [u8], usize)> {
    if !header.has(PADDED) {
        return Some((payload, 0));
    }
    let (&pad_len, rest) = payload.split_first()?;
    let content_len = rest.len().checked_sub(usize::from(pad_len))?;
    Some((rest.get(..content_len)?, usize::from(pad_len)))
}

pub fn read_u32(bytes: &[u8]) -> Option<u32> {
    let word: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word))
}

/// SETTINGS parameters as (identifier, value).
pub fn settings(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).filter_map(|entry| {
        let [i0, i1, v0, v1, v2, v3] = <[u8; 6]>::try_from(entry).ok()?;
        Some((
            u16::from_be_bytes([i0, i1]),
            u32::from_be_bytes([v0, v1, v2, v3]),
        ))
    })
}

/// GOAWAY: (last stream id, error code).
pub fn goaway(payload: &[u8]) -> Option<(u32, u32)> {
    Some((
        read_u32(payload)? & 0x7fff_ffff,
        read_u32(payload.get(4..)?)?,
    ))
}
