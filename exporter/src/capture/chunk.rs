//! `TlsChunk`: one piece of plaintext (or a close) on one TLS connection, as the capture stage
//! hands it to the next stage, whether it came live from the ring buffer or from a recording.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use apiscope_common::{
    ChunkHeader, ChunkKind, HEADER_FIELD_FROM_MAP, HEADER_FIELD_SENSITIVE, HEADER_MESSAGE_REQUEST,
    HEADER_MESSAGE_RESPONSE, HEADER_MESSAGE_TRAILERS, HeaderBlockPrefix, HeaderFieldPrefix,
    SocketPair,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::vocabulary::{ConnectionId, Direction, HeaderField, MessageKind, Role};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum ChunkEventKind {
    /// Plaintext bytes; `data.len() < len` means the rest was not copied (a gap of known size).
    Data {
        direction: Direction,
        len: u32,
        data: Bytes,
    },
    /// The process closed the connection.
    Close,
    /// A header block as Go's HTTP/2 code saw it, decoded (from the header-level hooks on
    /// `serverConn.processHeaders` and the response-header writer). It carries what the wire
    /// decoder cannot recover on connections opened before apiscope attached.
    Headers {
        message: MessageKind,
        stream_id: u32,
        fields: Vec<HeaderField>,
        /// Fields the hook saw but could not copy (count or size limit).
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped_fields: u32,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One captured event on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsChunk {
    /// CLOCK_MONOTONIC nanoseconds (the kernel's `bpf_ktime_get_ns`).
    pub timestamp_ns: u64,
    pub connection: ConnectionId,
    pub tid: u32,
    /// Address of the runtime `g` that made the call.
    pub goroutine: u64,
    /// The socket's file descriptor in the traced process, -1 if unknown.
    pub fd: i32,
    pub role: Role,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    #[serde(flatten)]
    pub kind: ChunkEventKind,
}

impl TlsChunk {
    /// Builds a chunk from a kernel header and its payload. `first_seen_ns` comes from the capture
    /// stage's connection table. `None` for a payload that does not parse.
    pub fn from_kernel(header: &ChunkHeader, payload: &[u8], first_seen_ns: u64) -> Option<Self> {
        let kind = match ChunkKind::from_u32(header.kind)? {
            ChunkKind::Close => ChunkEventKind::Close,
            ChunkKind::Headers => parse_header_block(payload)?,
            kind => ChunkEventKind::Data {
                direction: if kind == ChunkKind::Write {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                len: header.len,
                data: Bytes(payload.to_vec()),
            },
        };
        let (local, remote) = socket_addrs(&header.conn.sockets);
        Some(TlsChunk {
            timestamp_ns: header.timestamp_ns,
            connection: ConnectionId {
                pid: header.pid,
                conn_ptr: header.conn_ptr,
                first_seen_ns,
            },
            tid: header.tid,
            goroutine: header.goroutine,
            fd: header.conn.fd,
            role: if header.conn.is_client != 0 {
                Role::Client
            } else {
                Role::Server
            },
            local,
            remote,
            kind,
        })
    }

    /// Payload bytes and the stream length they stand for, or `None` for a close.
    pub fn payload(&self) -> Option<(Direction, u32, &[u8])> {
        match &self.kind {
            ChunkEventKind::Data {
                direction,
                len,
                data,
            } => Some((*direction, *len, &data.0)),
            ChunkEventKind::Close | ChunkEventKind::Headers { .. } => None,
        }
    }
}

/// Decodes a header event's payload: a `HeaderBlockPrefix`, then `fields` packed fields, each a
/// `HeaderFieldPrefix` and its name and value bytes. Every length is checked against the payload.
pub fn parse_header_block(payload: &[u8]) -> Option<ChunkEventKind> {
    fn read<T: Copy>(bytes: &[u8], at: usize) -> Option<T> {
        let bytes = bytes.get(at..at.checked_add(size_of::<T>())?)?;
        // SAFETY: length checked; T is a plain-old-data kernel struct (any bit pattern valid).
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
    }
    let prefix: HeaderBlockPrefix = read(payload, 0)?;
    let message = match prefix.message {
        HEADER_MESSAGE_REQUEST => MessageKind::Request,
        HEADER_MESSAGE_RESPONSE => MessageKind::Response,
        HEADER_MESSAGE_TRAILERS => MessageKind::Trailers,
        _ => return None,
    };
    let mut at = size_of::<HeaderBlockPrefix>();
    let mut fields = Vec::with_capacity(prefix.fields.min(64) as usize);
    // Fields read from a response's header map: (canonical name, field), in map order.
    let mut from_map = Vec::new();
    for _ in 0..prefix.fields {
        let field: HeaderFieldPrefix = read(payload, at)?;
        at += size_of::<HeaderFieldPrefix>();
        let name = payload.get(at..at + field.name_len as usize)?;
        at += field.name_len as usize;
        let value = payload.get(at..at + field.value_len as usize)?;
        at += field.value_len as usize;
        let parsed = HeaderField {
            // HTTP/2 field names are lowercase; a map's are canonical (`Audit-Id`), and the
            // HPACK encoder lowercases them.
            name: String::from_utf8_lossy(name).to_ascii_lowercase(),
            value: String::from_utf8_lossy(value).into_owned(),
            sensitive: field.flags & HEADER_FIELD_SENSITIVE != 0,
        };
        if field.flags & HEADER_FIELD_FROM_MAP != 0 {
            from_map.push((name, parsed));
        } else {
            fields.push(parsed);
        }
    }
    if at != payload.len() {
        return None;
    }
    // The encoder writes a header map sorted by its keys (values of one key in order), before
    // the writer's own fields: the same order here as on the wire.
    from_map.sort_by(|a, b| a.0.cmp(b.0));
    fields.splice(0..0, from_map.into_iter().map(|(_, field)| field));
    // The one-hit response hook sends the status code in the prefix, not as a field.
    if prefix.status != 0 && !fields.iter().any(|f| f.name == ":status") {
        fields.insert(
            0,
            HeaderField {
                name: ":status".into(),
                value: prefix.status.to_string(),
                sensitive: false,
            },
        );
    }
    Some(ChunkEventKind::Headers {
        message,
        stream_id: prefix.stream_id,
        fields,
        dropped_fields: prefix.dropped_fields,
    })
}

fn socket_addrs(pair: &SocketPair) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let ip = |bytes: &[u8; 16]| -> Option<IpAddr> {
        match pair.family {
            4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
            _ => None,
        }
    };
    (
        ip(&pair.local_addr).map(|ip| SocketAddr::new(ip, pair.local_port)),
        ip(&pair.remote_addr).map(|ip| SocketAddr::new(ip, pair.remote_port)),
    )
}

/// Payload bytes, base64 in JSON so that binary HTTP/2 frames survive a text format.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(message: u32, stream_id: u32, fields: &[(&str, &str, bool)], dropped: u32) -> Vec<u8> {
        block_with_status(message, stream_id, fields, dropped, 0)
    }

    fn block_with_status(
        message: u32,
        stream_id: u32,
        fields: &[(&str, &str, bool)],
        dropped: u32,
        status: u32,
    ) -> Vec<u8> {
        let prefix = HeaderBlockPrefix {
            stream_id,
            message,
            fields: fields.len() as u32,
            dropped_fields: dropped,
            status,
            _pad: 0,
        };
        let mut bytes = Vec::new();
        for word in [
            prefix.stream_id,
            prefix.message,
            prefix.fields,
            prefix.dropped_fields,
            prefix.status,
            prefix._pad,
        ] {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        for (name, value, sensitive) in fields {
            // A capitalised name stands for a field read from a header map.
            let from_map = name.starts_with(|c: char| c.is_ascii_uppercase());
            let flags = u32::from(*sensitive) | if from_map { HEADER_FIELD_FROM_MAP } else { 0 };
            bytes.extend_from_slice(&(name.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&flags.to_le_bytes());
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(value.as_bytes());
        }
        bytes
    }

    #[test]
    fn header_blocks_parse() {
        let payload = block(
            HEADER_MESSAGE_REQUEST,
            7,
            &[
                (":method", "GET", false),
                ("authorization", "Bearer x", true),
            ],
            2,
        );
        let parsed = parse_header_block(&payload).unwrap();
        assert_eq!(
            parsed,
            ChunkEventKind::Headers {
                message: MessageKind::Request,
                stream_id: 7,
                fields: vec![
                    HeaderField::new(":method", "GET"),
                    HeaderField {
                        sensitive: true,
                        ..HeaderField::new("authorization", "Bearer x")
                    },
                ],
                dropped_fields: 2,
            }
        );
        let empty = block(HEADER_MESSAGE_TRAILERS, 1, &[], 0);
        assert!(matches!(
            parse_header_block(&empty),
            Some(ChunkEventKind::Headers {
                message: MessageKind::Trailers,
                ..
            })
        ));
    }

    #[test]
    fn a_response_read_from_the_header_map_gets_its_status_and_lowercase_names() {
        let payload = block_with_status(
            HEADER_MESSAGE_RESPONSE,
            3,
            &[
                ("Audit-Id", "a1", false),
                ("content-type", "application/json", false),
            ],
            0,
            429,
        );
        let Some(ChunkEventKind::Headers { fields, .. }) = parse_header_block(&payload) else {
            panic!("not parsed");
        };
        assert_eq!(
            fields,
            [
                HeaderField::new(":status", "429"),
                HeaderField::new("audit-id", "a1"),
                HeaderField::new("content-type", "application/json"),
            ]
        );
        // A block that carries :status itself (field by field) keeps it, once.
        let payload = block_with_status(
            HEADER_MESSAGE_RESPONSE,
            3,
            &[(":status", "200", false)],
            0,
            200,
        );
        let Some(ChunkEventKind::Headers { fields, .. }) = parse_header_block(&payload) else {
            panic!("not parsed");
        };
        assert_eq!(fields, [HeaderField::new(":status", "200")]);
    }

    #[test]
    fn malformed_header_blocks_are_rejected() {
        let payload = block(HEADER_MESSAGE_RESPONSE, 1, &[(":status", "200", false)], 0);
        for len in 0..payload.len() {
            assert!(
                parse_header_block(&payload[..len]).is_none(),
                "cut at {len}"
            );
        }
        let mut trailing = payload.clone();
        trailing.push(0);
        assert!(parse_header_block(&trailing).is_none());
        let mut bad_message = payload.clone();
        bad_message[4] = 9;
        assert!(parse_header_block(&bad_message).is_none());
        let mut too_many = payload.clone();
        too_many[8] = 2;
        assert!(parse_header_block(&too_many).is_none());
    }
}
