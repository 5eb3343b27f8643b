//! The per-packet metadata: a compact JSON object in each Enhanced Packet Block's comment.
//!
//! A chunk's packets (one per TCP segment, at least one) each carry every field of the chunk but
//! its payload, plus where the segment sits in the chunk:
//!
//! ```json
//! {"apiscope":1,"chunk":7,"segment":0,"segments":1,"timestamp_ns":81234567890,"pid":4242,
//!  "conn_ptr":824634310656,"first_seen_ns":81200000000,"tid":4250,"goroutine":824635000000,
//!  "fd":9,"role":"server","local":"10.0.0.1:6443","remote":"10.0.0.2:51234",
//!  "event":"data","direction":"ingress","len":1200}
//! ```
//!
//! `event` is `data` (with `direction` and `len`, the stream length the chunk stands for),
//! `close`, or `headers` (a hook's decoded header block: `message`, `stream_id`, `fields`). `local` / `remote` are left out when unknown. Synthetic packets that carry no chunk
//! (the TCP handshake) say `{"apiscope":1,"synthetic":"handshake"}`. Unknown fields are ignored,
//! so fields may be added without a version bump; `apiscope` changes only on incompatible change.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::capture::chunk::Bytes;
use crate::capture::{ChunkEventKind, TlsChunk};
use crate::vocabulary::{ConnectionId, Direction, HeaderField, MessageKind, Role};

/// Value of the `apiscope` key: the version of this metadata format.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// Metadata of one packet that carries (a segment of) a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SegmentMeta {
    pub apiscope: u64,
    /// Index of the chunk in the recording; ties a chunk's segments together.
    pub chunk: u64,
    pub segment: u32,
    pub segments: u32,
    pub timestamp_ns: u64,
    pub pid: u32,
    pub conn_ptr: u64,
    pub first_seen_ns: u64,
    pub tid: u32,
    pub goroutine: u64,
    pub fd: i32,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    #[serde(flatten)]
    pub event: MetaEvent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum MetaEvent {
    Data {
        direction: Direction,
        len: u32,
    },
    Close,
    /// A decoded header block from the header-level hooks; its packet carries no payload.
    Headers {
        message: MessageKind,
        stream_id: u32,
        fields: Vec<HeaderField>,
        #[serde(default)]
        dropped_fields: u32,
    },
}

#[derive(Serialize)]
struct SyntheticMeta {
    apiscope: u64,
    synthetic: &'static str,
}

/// What a packet comment turned out to be.
#[derive(Debug)]
pub(crate) enum PacketComment {
    Segment(SegmentMeta),
    /// A packet apiscope made up for tshark's sake (handshake); it carries no chunk.
    Synthetic,
    /// Not apiscope metadata: someone else's comment.
    Foreign,
}

impl SegmentMeta {
    /// Metadata of segment 0; the writer bumps `segment` for the others.
    pub fn for_chunk(chunk: &TlsChunk, index: u64, segments: u32) -> Self {
        SegmentMeta {
            apiscope: FORMAT_VERSION,
            chunk: index,
            segment: 0,
            segments,
            timestamp_ns: chunk.timestamp_ns,
            pid: chunk.connection.pid,
            conn_ptr: chunk.connection.conn_ptr,
            first_seen_ns: chunk.connection.first_seen_ns,
            tid: chunk.tid,
            goroutine: chunk.goroutine,
            fd: chunk.fd,
            role: chunk.role,
            local: chunk.local,
            remote: chunk.remote,
            event: match &chunk.kind {
                ChunkEventKind::Data { direction, len, .. } => MetaEvent::Data {
                    direction: *direction,
                    len: *len,
                },
                ChunkEventKind::Close => MetaEvent::Close,
                ChunkEventKind::Headers {
                    message,
                    stream_id,
                    fields,
                    dropped_fields,
                } => MetaEvent::Headers {
                    message: *message,
                    stream_id: *stream_id,
                    fields: fields.clone(),
                    dropped_fields: *dropped_fields,
                },
            },
        }
    }

    /// The chunk this metadata describes, with the payload reassembled from its segments.
    pub fn into_chunk(self, data: Vec<u8>) -> TlsChunk {
        TlsChunk {
            timestamp_ns: self.timestamp_ns,
            connection: ConnectionId {
                pid: self.pid,
                conn_ptr: self.conn_ptr,
                first_seen_ns: self.first_seen_ns,
            },
            tid: self.tid,
            goroutine: self.goroutine,
            fd: self.fd,
            role: self.role,
            local: self.local,
            remote: self.remote,
            kind: match self.event {
                MetaEvent::Data { direction, len } => ChunkEventKind::Data {
                    direction,
                    len,
                    data: Bytes(data),
                },
                MetaEvent::Close => ChunkEventKind::Close,
                MetaEvent::Headers {
                    message,
                    stream_id,
                    fields,
                    dropped_fields,
                } => ChunkEventKind::Headers {
                    message,
                    stream_id,
                    fields,
                    dropped_fields,
                },
            },
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of plain numbers, strings and addresses always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub(crate) fn synthetic_comment(what: &'static str) -> String {
    serde_json::to_string(&SyntheticMeta {
        apiscope: FORMAT_VERSION,
        synthetic: what,
    })
    .unwrap_or_default()
}

/// The comment of a segment as this version writes it, read in one typed pass: `SegmentMeta`'s
/// flattened, internally tagged `event` makes serde buffer every field first, and the generic
/// path below builds a `Value` before that, which was ~40% of a replay's instructions.
#[derive(Deserialize)]
struct WrittenSegment {
    apiscope: u64,
    #[serde(default)]
    synthetic: Option<serde::de::IgnoredAny>,
    chunk: u64,
    segment: u32,
    segments: u32,
    timestamp_ns: u64,
    pid: u32,
    conn_ptr: u64,
    first_seen_ns: u64,
    tid: u32,
    goroutine: u64,
    fd: i32,
    role: Role,
    #[serde(default)]
    local: Option<SocketAddr>,
    #[serde(default)]
    remote: Option<SocketAddr>,
    event: WrittenEvent,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    len: Option<u32>,
    #[serde(default)]
    message: Option<MessageKind>,
    #[serde(default)]
    stream_id: Option<u32>,
    #[serde(default)]
    fields: Option<Vec<HeaderField>>,
    #[serde(default)]
    dropped_fields: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WrittenEvent {
    Data,
    Close,
    Headers,
}

impl WrittenSegment {
    /// The metadata, if this is a complete segment of this format version.
    fn into_meta(self) -> Option<SegmentMeta> {
        if self.apiscope != FORMAT_VERSION || self.synthetic.is_some() {
            return None;
        }
        let event = match self.event {
            WrittenEvent::Data => MetaEvent::Data {
                direction: self.direction?,
                len: self.len?,
            },
            WrittenEvent::Close => MetaEvent::Close,
            WrittenEvent::Headers => MetaEvent::Headers {
                message: self.message?,
                stream_id: self.stream_id?,
                fields: self.fields?,
                dropped_fields: self.dropped_fields,
            },
        };
        Some(SegmentMeta {
            apiscope: self.apiscope,
            chunk: self.chunk,
            segment: self.segment,
            segments: self.segments,
            timestamp_ns: self.timestamp_ns,
            pid: self.pid,
            conn_ptr: self.conn_ptr,
            first_seen_ns: self.first_seen_ns,
            tid: self.tid,
            goroutine: self.goroutine,
            fd: self.fd,
            role: self.role,
            local: self.local,
            remote: self.remote,
            event,
        })
    }
}

/// Classifies a packet comment. Errors only for comments that claim to be apiscope metadata but
/// are not valid metadata of a version this reader knows.
pub(crate) fn parse_comment(comment: &str) -> Result<PacketComment, String> {
    if !comment.trim_start().starts_with('{') {
        return Ok(PacketComment::Foreign);
    }
    // What this version wrote, in one pass; anything else (synthetic, foreign, another version,
    // malformed) is classified by the generic path, which gives the same answers as before.
    if let Some(meta) = serde_json::from_str::<WrittenSegment>(comment)
        .ok()
        .and_then(WrittenSegment::into_meta)
    {
        return Ok(PacketComment::Segment(meta));
    }
    parse_comment_generic(comment)
}

/// [`parse_comment`] for any comment, through a `Value`.
pub(crate) fn parse_comment_generic(comment: &str) -> Result<PacketComment, String> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(comment)
    else {
        return Ok(PacketComment::Foreign);
    };
    let Some(version) = object.get("apiscope") else {
        return Ok(PacketComment::Foreign);
    };
    if version.as_u64() != Some(FORMAT_VERSION) {
        return Err(format!(
            "apiscope metadata version {version} is not {FORMAT_VERSION}"
        ));
    }
    if object.contains_key("synthetic") {
        return Ok(PacketComment::Synthetic);
    }
    serde_json::from_value(serde_json::Value::Object(object))
        .map(PacketComment::Segment)
        .map_err(|e| format!("invalid apiscope metadata: {e}"))
}
