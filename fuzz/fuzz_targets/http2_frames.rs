//! Arbitrary bytes, cut into arbitrary pieces and gaps on both directions, into the protocol
//! decoder for both roles. Small limits so the limit paths are reached.
#![no_main]

use apiscope::http::{ProtocolDecoder, ProtocolLimits};
use apiscope::reassembly::Piece;
use apiscope::vocabulary::{Direction, Role};
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|input: &[u8]| {
    let Some((&mode, mut rest)) = input.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 { Role::Server } else { Role::Client };
    let limits = ProtocolLimits {
        max_header_block_bytes: 512,
        max_decoded_header_bytes: 4096,
        max_buffered_bytes_per_direction: 2048,
        max_http1_head_bytes: 256,
        max_body_event_bytes: 100,
        max_undetected_bytes: 4096,
        ..ProtocolLimits::default()
    };
    let mut decoder = ProtocolDecoder::new(role, limits);
    let mut out = Vec::new();
    let requests = apiscope::http::request_direction(role);
    if mode & 2 != 0 {
        decoder.feed(requests, 0, Piece::Bytes(PREFACE), &mut out);
    }
    let mut timestamp = 0;
    // Each op: a control byte (direction, gap or bytes, length) then that many bytes.
    while let Some((&control, tail)) = rest.split_first() {
        rest = tail;
        timestamp += 1;
        let direction = if control & 1 == 0 {
            Direction::Ingress
        } else {
            Direction::Egress
        };
        let len = usize::from(control >> 2);
        if control & 2 != 0 {
            decoder.feed(direction, timestamp, Piece::Gap(len as u32 * 97), &mut out);
            continue;
        }
        let len = len.min(rest.len());
        let (piece, tail) = rest.split_at(len);
        rest = tail;
        decoder.feed(direction, timestamp, Piece::Bytes(piece), &mut out);
        assert!(decoder.buffered_bytes() <= 64 * 1024);
        out.clear();
    }
    decoder.close(timestamp + 1, &mut out);
    let _ = (decoder.protocol(), decoder.stats());
});
