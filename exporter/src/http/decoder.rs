//! Per-connection entry point of the protocol stage: detects HTTP/1.1 or HTTP/2 from the first
//! bytes of either direction (or gives up: [`Protocol::Opaque`]), then hands every piece to the
//! protocol's connection decoder.
//!
//! Until the protocol is known, pieces are queued (bounded); pieces that cannot start anything
//! recognisable are dropped and counted. Once decided, the queue is replayed in arrival order,
//! so the connection decoder sees the same piece boundaries.

use std::collections::VecDeque;

use super::detect::{self, Detection, Start};
use super::event::{HttpEvent, request_direction};
use super::http1::Http1Connection;
use super::http2::Http2Connection;
use super::limits::{DecoderStats, ProtocolLimits};
use crate::reassembly::Piece;
use crate::vocabulary::{Direction, Role};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Not recognised yet.
    Unknown,
    Http1,
    Http2,
    /// Not HTTP, or no longer (after 101 Switching Protocols or CONNECT): bytes are counted only.
    Opaque,
}

/// Decodes both directions of one connection into [`HttpEvent`]s.
#[derive(Debug)]
pub struct ProtocolDecoder {
    role: Role,
    limits: ProtocolLimits,
    stage: Stage,
    stats: DecoderStats,
}

#[derive(Debug)]
enum Stage {
    Detecting(Detector),
    Http1(Box<Http1Connection>),
    Http2(Box<Http2Connection>),
    Opaque,
}

#[derive(Debug, Default)]
struct Detector {
    queue: VecDeque<QueuedPiece>,
    /// Bytes of each direction in `queue` ([egress, ingress]).
    queued_bytes: [usize; 2],
    /// Bytes of each direction dropped before `queue`.
    dropped: [u64; 2],
}

#[derive(Debug)]
struct QueuedPiece {
    direction: Direction,
    timestamp_ns: u64,
    piece: OwnedPiece,
}

#[derive(Debug)]
enum OwnedPiece {
    Bytes(Vec<u8>),
    Gap(u32),
}

impl OwnedPiece {
    fn len(&self) -> u64 {
        match self {
            OwnedPiece::Bytes(bytes) => bytes.len() as u64,
            OwnedPiece::Gap(len) => u64::from(*len),
        }
    }
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

impl ProtocolDecoder {
    /// `limits` are clamped so that no single buffer can pass
    /// `max_buffered_bytes_per_direction`.
    pub fn new(role: Role, mut limits: ProtocolLimits) -> Self {
        let per_direction = limits.max_buffered_bytes_per_direction;
        limits.max_header_block_bytes = limits.max_header_block_bytes.min(per_direction / 2);
        limits.max_body_event_bytes = limits.max_body_event_bytes.min(per_direction / 4).max(1);
        limits.max_http1_head_bytes = limits.max_http1_head_bytes.min(per_direction / 2);
        ProtocolDecoder {
            role,
            limits,
            stage: Stage::Detecting(Detector::default()),
            stats: DecoderStats::default(),
        }
    }

    /// Feeds the next piece of one direction (pieces of a direction arrive in order, and
    /// pieces of the two directions in capture order); appends resulting events.
    pub fn feed(
        &mut self,
        direction: Direction,
        timestamp_ns: u64,
        piece: Piece<'_>,
        out: &mut Vec<HttpEvent>,
    ) {
        match piece {
            Piece::Bytes(bytes) => {
                self.stats.bytes = self.stats.bytes.saturating_add(bytes.len() as u64)
            }
            Piece::Gap(len) => {
                self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(u64::from(len))
            }
        }
        match &mut self.stage {
            Stage::Detecting(detector) => {
                detector.push(direction, timestamp_ns, piece);
                self.detect(direction, out);
            }
            Stage::Http1(connection) => {
                connection.feed(direction, timestamp_ns, piece, out, &mut self.stats);
                if connection.switched_protocols() {
                    self.stage = Stage::Opaque;
                }
            }
            Stage::Http2(connection) => {
                connection.feed(direction, timestamp_ns, piece, out, &mut self.stats)
            }
            Stage::Opaque => {
                let len = match piece {
                    Piece::Bytes(bytes) => bytes.len() as u64,
                    Piece::Gap(len) => u64::from(len),
                };
                self.stats.opaque_bytes = self.stats.opaque_bytes.saturating_add(len);
            }
        }
    }

    /// The connection closed: finishes a close-delimited HTTP/1 body.
    pub fn close(&mut self, timestamp_ns: u64, out: &mut Vec<HttpEvent>) {
        if let Stage::Http1(connection) = &mut self.stage {
            connection.close(timestamp_ns, out);
        }
    }

    /// HTTP/2 whose every header block the wire decodes (see
    /// [`Http2Connection::header_blocks_decodable`]).
    pub fn header_blocks_decodable(&self) -> bool {
        matches!(&self.stage, Stage::Http2(connection) if connection.header_blocks_decodable())
    }

    pub fn protocol(&self) -> Protocol {
        match self.stage {
            Stage::Detecting(_) => Protocol::Unknown,
            Stage::Http1(_) => Protocol::Http1,
            Stage::Http2(_) => Protocol::Http2,
            Stage::Opaque => Protocol::Opaque,
        }
    }

    /// Bytes held by this decoder (queued pieces, partial heads, frames and header blocks).
    pub fn buffered_bytes(&self) -> usize {
        match &self.stage {
            Stage::Detecting(detector) => detector.queued_bytes.iter().sum(),
            Stage::Http1(connection) => connection.buffered_bytes(),
            Stage::Http2(connection) => connection.buffered_bytes(),
            Stage::Opaque => 0,
        }
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats.clone()
    }

    /// Looks for a start in `direction`'s queued pieces; decides the protocol when found.
    fn detect(&mut self, direction: Direction, out: &mut Vec<HttpEvent>) {
        let Stage::Detecting(detector) = &mut self.stage else {
            return;
        };
        let is_request_direction = direction == request_direction(self.role);
        let found = loop {
            let candidate = detector.candidate(direction, self.limits.max_http1_head_bytes);
            let Some(candidate) = candidate else {
                break None;
            };
            let detection = detect::classify(
                &candidate,
                is_request_direction,
                self.limits.max_http1_head_bytes,
                self.limits.resync_max_frame_payload,
            );
            match detection {
                Detection::Found(start) => break Some(start),
                Detection::NeedMore
                    if detector.queued_bytes[dir_index(direction)]
                        <= self.limits.max_buffered_bytes_per_direction =>
                {
                    break None;
                }
                Detection::NeedMore | Detection::NotRecognized => {
                    self.stats.discarded_bytes = self
                        .stats
                        .discarded_bytes
                        .saturating_add(detector.drop_first(direction));
                }
            }
        };
        match found {
            Some(start) => {
                let Stage::Detecting(detector) = std::mem::replace(&mut self.stage, Stage::Opaque)
                else {
                    return;
                };
                self.start(start, detector, out);
            }
            None => {
                if detector.dropped.iter().sum::<u64>() > self.limits.max_undetected_bytes {
                    self.stats.unrecognized = 1;
                    self.stats.opaque_bytes = self
                        .stats
                        .opaque_bytes
                        .saturating_add(detector.queued_bytes.iter().sum::<usize>() as u64);
                    self.stage = Stage::Opaque;
                }
            }
        }
    }

    /// Creates the connection decoder for `start` and replays the queue into it.
    fn start(&mut self, start: Start, detector: Detector, out: &mut Vec<HttpEvent>) {
        let mut stage = match start {
            Start::Http2Preface | Start::Http2Frame => {
                let mut connection = Http2Connection::new(self.role, self.limits.clone());
                for direction in [Direction::Egress, Direction::Ingress] {
                    connection.skip_unsynced(direction, detector.dropped[dir_index(direction)]);
                }
                Stage::Http2(Box::new(connection))
            }
            Start::Http1Request | Start::Http1Response => Stage::Http1(Box::new(
                Http1Connection::new(self.role, self.limits.clone()),
            )),
        };
        for queued in detector.queue {
            let piece = match &queued.piece {
                OwnedPiece::Bytes(bytes) => Piece::Bytes(bytes),
                OwnedPiece::Gap(len) => Piece::Gap(*len),
            };
            match &mut stage {
                Stage::Http1(connection) => {
                    connection.feed(
                        queued.direction,
                        queued.timestamp_ns,
                        piece,
                        out,
                        &mut self.stats,
                    );
                    if connection.switched_protocols() {
                        stage = Stage::Opaque;
                    }
                }
                Stage::Http2(connection) => connection.feed(
                    queued.direction,
                    queued.timestamp_ns,
                    piece,
                    out,
                    &mut self.stats,
                ),
                Stage::Detecting(_) | Stage::Opaque => {
                    self.stats.opaque_bytes =
                        self.stats.opaque_bytes.saturating_add(queued.piece.len());
                }
            }
        }
        self.stage = stage;
    }
}

impl Detector {
    fn push(&mut self, direction: Direction, timestamp_ns: u64, piece: Piece<'_>) {
        let piece = match piece {
            Piece::Bytes(bytes) => OwnedPiece::Bytes(bytes.to_vec()),
            Piece::Gap(len) => OwnedPiece::Gap(len),
        };
        if let OwnedPiece::Bytes(bytes) = &piece {
            self.queued_bytes[dir_index(direction)] += bytes.len();
        }
        self.queue.push_back(QueuedPiece {
            direction,
            timestamp_ns,
            piece,
        });
    }

    /// Bytes of `direction` from its first queued piece on, up to a gap and at most
    /// `max_len` bytes; drops leading gaps. `None` when nothing is queued.
    fn candidate(&mut self, direction: Direction, max_len: usize) -> Option<Vec<u8>> {
        loop {
            let first = self.queue.iter().find(|q| q.direction == direction)?;
            if let OwnedPiece::Gap(_) = first.piece {
                self.drop_first(direction);
                continue;
            }
            break;
        }
        let mut candidate = Vec::new();
        for queued in self.queue.iter().filter(|q| q.direction == direction) {
            match &queued.piece {
                OwnedPiece::Bytes(bytes) => {
                    let room = max_len.saturating_add(1).saturating_sub(candidate.len());
                    candidate
                        .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
                }
                OwnedPiece::Gap(_) => break,
            }
            if candidate.len() > max_len {
                break;
            }
        }
        Some(candidate)
    }

    /// Drops the first queued piece of `direction`; returns its length.
    fn drop_first(&mut self, direction: Direction) -> u64 {
        let Some(position) = self.queue.iter().position(|q| q.direction == direction) else {
            return 0;
        };
        let Some(removed) = self.queue.remove(position) else {
            return 0;
        };
        let len = removed.piece.len();
        if let OwnedPiece::Bytes(bytes) = &removed.piece {
            let queued = &mut self.queued_bytes[dir_index(direction)];
            *queued = queued.saturating_sub(bytes.len());
        }
        let dropped = &mut self.dropped[dir_index(direction)];
        *dropped = dropped.saturating_add(len);
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which protocol the first pieces decide, for both roles.
    #[test]
    fn protocol_detection_table() {
        let settings: &[u8] = &[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let window_update: &[u8] = &[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        let cases: Vec<(Role, Direction, &[u8], Protocol)> = vec![
            (
                Role::Server,
                Direction::Ingress,
                b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n",
                Protocol::Http1,
            ),
            (
                Role::Server,
                Direction::Ingress,
                b"GET /api HTTP/1.1",
                Protocol::Unknown,
            ),
            // A start line alone is not enough: it could be body text.
            (
                Role::Server,
                Direction::Ingress,
                b"GET /api HTTP/1.1\r\nHost: a\r\n",
                Protocol::Unknown,
            ),
            (
                Role::Server,
                Direction::Egress,
                b"HTTP/1.1 200 OK\r\n\r\n",
                Protocol::Http1,
            ),
            // A request line in the response direction is nothing (yet).
            (
                Role::Server,
                Direction::Egress,
                b"GET /api HTTP/1.1\r\n",
                Protocol::Unknown,
            ),
            (
                Role::Client,
                Direction::Egress,
                b"GET /api HTTP/1.1\r\n\r\n",
                Protocol::Http1,
            ),
            (
                Role::Server,
                Direction::Ingress,
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                Protocol::Http2,
            ),
            (
                Role::Client,
                Direction::Egress,
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                Protocol::Http2,
            ),
            (
                Role::Server,
                Direction::Ingress,
                b"PRI * HTTP/2.0\r\n",
                Protocol::Unknown,
            ),
            (Role::Server, Direction::Egress, settings, Protocol::Http2),
            (
                Role::Server,
                Direction::Ingress,
                window_update,
                Protocol::Http2,
            ),
            (
                Role::Server,
                Direction::Ingress,
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1",
                Protocol::Unknown,
            ),
            (
                Role::Server,
                Direction::Ingress,
                b"{\"kind\":\"Status\"}",
                Protocol::Unknown,
            ),
        ];
        for (role, direction, bytes, expected) in cases {
            let mut decoder = ProtocolDecoder::new(role, ProtocolLimits::default());
            let mut out = Vec::new();
            decoder.feed(direction, 1, Piece::Bytes(bytes), &mut out);
            assert_eq!(
                decoder.protocol(),
                expected,
                "{role:?} {direction:?} {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn undetected_bytes_are_bounded_then_opaque() {
        let limits = ProtocolLimits {
            max_undetected_bytes: 1000,
            ..ProtocolLimits::default()
        };
        let mut decoder = ProtocolDecoder::new(Role::Server, limits);
        let mut out = Vec::new();
        for _ in 0..10 {
            decoder.feed(Direction::Ingress, 1, Piece::Bytes(&[0xee; 150]), &mut out);
            assert!(decoder.buffered_bytes() <= 150);
        }
        assert_eq!(decoder.protocol(), Protocol::Opaque);
        assert_eq!(decoder.stats().unrecognized, 1);
        assert_eq!(decoder.stats().discarded_bytes, 1050);
        decoder.feed(
            Direction::Ingress,
            1,
            Piece::Bytes(b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        assert_eq!(decoder.protocol(), Protocol::Opaque);
        assert!(out.is_empty());
    }
}
