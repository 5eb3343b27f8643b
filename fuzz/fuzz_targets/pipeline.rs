//! Arbitrary chunk streams (data with truncation gaps, hook header blocks, closes, on a few
//! connections of both roles) through the whole decode pipeline: reassembly, protocol,
//! exchanges and the Kubernetes model. Small limits so eviction paths are reached.
#![no_main]

use apiscope::capture::chunk::Bytes;
use apiscope::capture::{ChunkEventKind, TlsChunk};
use apiscope::vocabulary::{ConnectionId, Direction, HeaderField, MessageKind, Role};
use apiscope::pipeline::{DecodeConfig, DecodeMetrics, DecodePipeline};
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|input: &[u8]| {
    let config = DecodeConfig {
        max_body_bytes: 256,
        max_decompressed_bytes: 4096,
        max_connection_bytes: 8192,
        max_decoder_bytes: 16384,
        max_decoded_connections: 3,
        include_outgoing: true,
        // The frame lists (`--serve-ui`) are fuzzed with the rest.
        report_frames: true,
        ..DecodeConfig::default()
    };
    let metrics = DecodeMetrics::default();
    let mut pipeline = DecodePipeline::new(config, 0);
    let mut out = Vec::new();
    let mut rest = input;
    let mut timestamp = 0u64;
    // Each op: a control byte (connection, direction, kind), a length byte, then the bytes.
    while let [control, len, tail @ ..] = rest {
        timestamp += 1;
        let conn = u64::from(control & 3);
        let direction = if control & 4 == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let take = usize::from(*len).min(tail.len());
        let (data, tail) = tail.split_at(take);
        rest = tail;
        let kind = match control >> 3 {
            0 => ChunkEventKind::Close,
            1 => ChunkEventKind::Headers {
                message: if control & 4 == 0 {
                    MessageKind::Request
                } else {
                    MessageKind::Response
                },
                stream_id: u32::from(*len),
                fields: data
                    .split(|b| *b == b'\n')
                    .map(|f| {
                        let f = String::from_utf8_lossy(f);
                        let (n, v) = f.split_once('=').unwrap_or((&f, ""));
                        HeaderField::new(n, v)
                    })
                    .collect(),
                dropped_fields: 0,
            },
            2 => ChunkEventKind::Data {
                direction,
                len: PREFACE.len() as u32,
                data: Bytes(PREFACE.to_vec()),
            },
            // A truncated chunk: the length claims more than was copied.
            3 => ChunkEventKind::Data {
                direction,
                len: take as u32 + u32::from(*len) * 31,
                data: Bytes(data.to_vec()),
            },
            _ => ChunkEventKind::Data {
                direction,
                len: take as u32,
                data: Bytes(data.to_vec()),
            },
        };
        let chunk = TlsChunk {
            timestamp_ns: timestamp,
            connection: ConnectionId {
                pid: 1,
                conn_ptr: conn,
                first_seen_ns: 0,
            },
            tid: 1,
            goroutine: 1,
            fd: 3,
            role: if conn == 3 { Role::Client } else { Role::Server },
            local: None,
            remote: None,
            kind,
        };
        pipeline.push(&chunk, &metrics, &mut out);
        out.clear();
    }
    pipeline.finish(&metrics, &mut out);
});
