//! HTTP/1.1 connection decoder (RFC 9112): request and status lines, headers, Content-Length,
//! chunked and close-delimited bodies, pipelining, and the switch to an opaque byte stream after
//! `101 Switching Protocols` or a successful CONNECT.
//!
//! Requests are numbered 1, 2, 3... in order on the connection (the `StreamId`), and responses
//! take the number of the oldest unanswered request. Head fields carry lower-cased names plus
//! the pseudo-fields HTTP/2 uses (`:method`, `:path`, `:authority` from Host, `:status`) so
//! consumers treat both protocols alike. A close-delimited response body ends only when the
//! caller reports the close ([`Http1Connection::close`]). Line endings must be CRLF.

use std::collections::VecDeque;

use super::decoder::{DecoderStats, ProtocolLimits};
use super::detect::{self, Detection};
use super::{HeaderField, HttpEvent, MessageKind, Piece, StreamId, request_direction};
use crate::capture::{Direction, Role};

/// Unanswered requests remembered for pairing; older ones are forgotten.
const MAX_PENDING_REQUESTS: usize = 1024;
/// Longest chunk-size line accepted (with extensions).
const MAX_CHUNK_LINE: usize = 1024;

#[derive(Debug)]
pub struct Http1Connection {
    limits: ProtocolLimits,
    /// Indexed like [`dir_index`].
    dirs: [DirectionState; 2],
    /// Requests whose final response was not seen yet, oldest first.
    pending: VecDeque<PendingRequest>,
    last_request_id: StreamId,
    /// After 101 Switching Protocols or a successful CONNECT: no more HTTP on this connection.
    switched: bool,
}

#[derive(Clone, Copy, Debug)]
struct PendingRequest {
    /// `None` for a request whose head was lost: its response is parsed but not reported.
    stream: Option<StreamId>,
    head_method: bool,
    connect: bool,
}

fn dir_index(direction: Direction) -> usize {
    match direction {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

#[derive(Debug)]
struct DirectionState {
    direction: Direction,
    is_request_direction: bool,
    state: State,
    /// The message being read: stream and whether to report it.
    current: Option<(StreamId, bool)>,
    /// Framing bytes (chunk sizes, CRLFs) not yet counted in an event's `wire_bytes`.
    unreported_wire: u64,
    desync_reported: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for a piece that starts with a start line.
    Unsynced,
    /// Reading a head; `buf` holds it so far.
    Head {
        buf: Vec<u8>,
    },
    Body(Body),
}

#[derive(Debug)]
enum Body {
    Length {
        remaining: u64,
    },
    /// Until the connection closes.
    UntilClose,
    ChunkSize {
        line: Vec<u8>,
    },
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after chunk data; `seen` bytes of it so far.
    ChunkEnd {
        seen: usize,
    },
    /// Trailer section after the last chunk.
    Trailers {
        buf: Vec<u8>,
    },
}

/// A parsed head.
struct Head {
    fields: Vec<HeaderField>,
    /// Method (requests) or status code (responses).
    method: String,
    status: u16,
    framing: Framing,
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

impl Http1Connection {
    pub fn new(role: Role, limits: ProtocolLimits) -> Self {
        let requests = request_direction(role);
        let dirs = [Direction::Egress, Direction::Ingress].map(|direction| DirectionState {
            direction,
            is_request_direction: direction == requests,
            state: State::Unsynced,
            current: None,
            unreported_wire: 0,
            desync_reported: false,
        });
        Http1Connection {
            limits,
            dirs,
            pending: VecDeque::new(),
            last_request_id: 0,
            switched: false,
        }
    }

    /// Whether the connection switched to another protocol (101, CONNECT).
    pub fn switched_protocols(&self) -> bool {
        self.switched
    }

    pub fn buffered_bytes(&self) -> usize {
        self.dirs
            .iter()
            .map(|dir| match &dir.state {
                State::Head { buf } => buf.len(),
                State::Body(Body::ChunkSize { line }) => line.len(),
                State::Body(Body::Trailers { buf }) => buf.len(),
                _ => 0,
            })
            .sum()
    }

    pub fn feed(
        &mut self,
        direction: Direction,
        timestamp_ns: u64,
        piece: Piece<'_>,
        out: &mut Vec<HttpEvent>,
        stats: &mut DecoderStats,
    ) {
        let mut cx = Context {
            timestamp_ns,
            out,
            stats,
        };
        let index = dir_index(direction);
        match piece {
            Piece::Bytes(bytes) => {
                let dir = &mut self.dirs[index];
                if matches!(dir.state, State::Unsynced) {
                    let start = detect::http1_start_line(
                        bytes,
                        dir.is_request_direction,
                        self.limits.max_http1_head_bytes,
                    );
                    if start == Detection::NotRecognized {
                        cx.stats.discarded_bytes =
                            cx.stats.discarded_bytes.saturating_add(bytes.len() as u64);
                        return;
                    }
                    dir.state = State::Head { buf: Vec::new() };
                }
                self.consume(index, bytes, &mut cx);
            }
            Piece::Gap(len) => self.gap(index, len, &mut cx),
        }
    }

    /// The connection closed: ends a close-delimited body.
    pub fn close(&mut self, timestamp_ns: u64, out: &mut Vec<HttpEvent>) {
        for dir in &mut self.dirs {
            if let State::Body(Body::UntilClose) = dir.state {
                if let Some((stream, true)) = dir.current {
                    out.push(HttpEvent::Body {
                        stream,
                        kind: dir.message_kind(),
                        data: Vec::new(),
                        missing: 0,
                        end_stream: true,
                        wire_bytes: std::mem::take(&mut dir.unreported_wire),
                        timestamp_ns,
                    });
                }
                dir.current = None;
                dir.state = State::Unsynced;
            }
        }
    }

    fn consume(&mut self, index: usize, mut input: &[u8], cx: &mut Context<'_>) {
        let max_head = self.limits.max_http1_head_bytes;
        while !input.is_empty() && !self.switched {
            let Some(dir) = self.dirs.get_mut(index) else {
                return;
            };
            match &mut dir.state {
                State::Unsynced => {
                    cx.stats.discarded_bytes =
                        cx.stats.discarded_bytes.saturating_add(input.len() as u64);
                    return;
                }
                State::Head { buf } => {
                    let old = buf.len();
                    let room = max_head.saturating_sub(old).saturating_add(1);
                    let take = input.len().min(room);
                    buf.extend_from_slice(input.get(..take).unwrap_or_default());
                    let scan_from = old.saturating_sub(3);
                    let end = buf
                        .get(scan_from..)
                        .unwrap_or_default()
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|p| scan_from + p + 4);
                    match end {
                        Some(end) if end <= max_head => {
                            let used = end - old;
                            input = input.get(used..).unwrap_or_default();
                            buf.truncate(end);
                            let head = std::mem::take(buf);
                            self.on_head(index, &head, cx);
                        }
                        Some(_) => {
                            input = &[];
                            self.lose_sync(index, "HTTP/1 head too large", cx);
                            cx.stats.buffer_overflows = cx.stats.buffer_overflows.saturating_add(1);
                        }
                        None if buf.len() > max_head => {
                            input = input.get(take..).unwrap_or_default();
                            self.lose_sync(index, "HTTP/1 head too large", cx);
                            cx.stats.buffer_overflows = cx.stats.buffer_overflows.saturating_add(1);
                        }
                        None => input = input.get(take..).unwrap_or_default(),
                    }
                }
                State::Body(body) => {
                    let used = match body {
                        Body::Length { remaining } => {
                            let n = input
                                .len()
                                .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                            *remaining -= n as u64;
                            let done = *remaining == 0;
                            dir.body(input.get(..n).unwrap_or_default(), 0, done, cx);
                            if done {
                                dir.end_message();
                            }
                            n
                        }
                        Body::UntilClose => {
                            dir.body(input, 0, false, cx);
                            input.len()
                        }
                        Body::ChunkData { remaining } => {
                            let n = input
                                .len()
                                .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                            *remaining -= n as u64;
                            if *remaining == 0 {
                                dir.state = State::Body(Body::ChunkEnd { seen: 0 });
                            }
                            dir.body(input.get(..n).unwrap_or_default(), 0, false, cx);
                            n
                        }
                        Body::ChunkEnd { seen } => {
                            let expected = b"\r\n".get(*seen..).unwrap_or_default();
                            let n = expected.len().min(input.len());
                            if input.get(..n) != expected.get(..n) {
                                self.lose_sync(index, "bad chunk terminator", cx);
                                continue;
                            }
                            *seen += n;
                            dir.unreported_wire += n as u64;
                            if *seen == 2 {
                                dir.state = State::Body(Body::ChunkSize { line: Vec::new() });
                            }
                            n
                        }
                        Body::ChunkSize { line } => {
                            let (n, complete) = take_line(line, input);
                            dir.unreported_wire += n as u64;
                            if line.len() > MAX_CHUNK_LINE {
                                self.lose_sync(index, "chunk size line too long", cx);
                                continue;
                            }
                            if complete {
                                match parse_chunk_size(line) {
                                    Some(0) => {
                                        dir.state = State::Body(Body::Trailers { buf: Vec::new() })
                                    }
                                    Some(size) => {
                                        dir.state = State::Body(Body::ChunkData { remaining: size })
                                    }
                                    None => {
                                        self.lose_sync(index, "bad chunk size", cx);
                                        continue;
                                    }
                                }
                            }
                            n
                        }
                        Body::Trailers { buf } => {
                            let old = buf.len();
                            buf.extend_from_slice(input);
                            let end = if buf.starts_with(b"\r\n") {
                                Some(2)
                            } else {
                                let scan_from = old.saturating_sub(3);
                                buf.get(scan_from..)
                                    .unwrap_or_default()
                                    .windows(4)
                                    .position(|w| w == b"\r\n\r\n")
                                    .map(|p| scan_from + p + 4)
                            };
                            match end {
                                Some(end) => {
                                    buf.truncate(end);
                                    let trailers = std::mem::take(buf);
                                    dir.trailers(&trailers, cx);
                                    end.saturating_sub(old)
                                }
                                None if buf.len() > max_head => {
                                    self.lose_sync(index, "HTTP/1 trailers too large", cx);
                                    continue;
                                }
                                None => input.len(),
                            }
                        }
                    };
                    input = input.get(used..).unwrap_or_default();
                }
            }
        }
    }

    fn gap(&mut self, index: usize, len: u32, cx: &mut Context<'_>) {
        let Some(dir) = self.dirs.get_mut(index) else {
            return;
        };
        let len64 = u64::from(len);
        match &mut dir.state {
            State::Unsynced => {
                cx.stats.discarded_bytes = cx.stats.discarded_bytes.saturating_add(len64);
            }
            State::Body(Body::UntilClose) => dir.body(&[], len, false, cx),
            State::Body(Body::Length { remaining }) => {
                let inside = (*remaining).min(len64);
                *remaining -= inside;
                let done = *remaining == 0;
                dir.body(&[], inside as u32, done, cx);
                if done {
                    dir.end_message();
                }
                if len64 > inside {
                    self.lose_sync(index, "capture gap across an HTTP/1 message boundary", cx);
                }
            }
            State::Body(Body::ChunkData { remaining }) if len64 <= *remaining => {
                *remaining -= len64;
                if *remaining == 0 {
                    dir.state = State::Body(Body::ChunkEnd { seen: 0 });
                }
                dir.body(&[], len, false, cx);
            }
            State::Head { .. } | State::Body(_) => {
                self.lose_sync(index, "capture gap in HTTP/1 framing", cx);
            }
        }
    }

    fn on_head(&mut self, index: usize, head: &[u8], cx: &mut Context<'_>) {
        let is_request = self.dirs.get(index).is_some_and(|d| d.is_request_direction);
        let Some(parsed) = parse_head(head, is_request) else {
            cx.stats.protocol_errors = cx.stats.protocol_errors.saturating_add(1);
            self.lose_sync(index, "malformed HTTP/1 head", cx);
            return;
        };
        cx.stats.http1_heads = cx.stats.http1_heads.saturating_add(1);
        let wire_bytes = head.len() as u64;
        if is_request {
            self.last_request_id = self.last_request_id.wrapping_add(1).max(1);
            let stream = self.last_request_id;
            let connect = parsed.method == "CONNECT";
            self.pending.push_back(PendingRequest {
                stream: Some(stream),
                head_method: parsed.method == "HEAD",
                connect,
            });
            if self.pending.len() > MAX_PENDING_REQUESTS {
                self.pending.pop_front();
            }
            let Some(dir) = self.dirs.get_mut(index) else {
                return;
            };
            // A CONNECT request carries no body; what follows is tunnel data (or, if refused,
            // the next request), so wait for a start line.
            let framing = if connect {
                Framing::None
            } else {
                parsed.framing
            };
            dir.start_message(stream, true, parsed.fields, framing, wire_bytes, cx);
            if connect {
                dir.state = State::Unsynced;
            }
            return;
        }
        let status = parsed.status;
        let interim = (100..200).contains(&status) && status != 101;
        let request = if interim {
            self.pending.front().copied()
        } else {
            self.pending.pop_front()
        };
        let (stream, report) = match request.and_then(|r| r.stream) {
            Some(stream) => (stream, true),
            None => {
                cx.stats.http1_unpaired_responses =
                    cx.stats.http1_unpaired_responses.saturating_add(1);
                (0, false)
            }
        };
        let connect = request.is_some_and(|r| r.connect);
        let switching = status == 101 || (connect && (200..300).contains(&status));
        let no_body = interim
            || switching
            || status == 204
            || status == 304
            || request.is_some_and(|r| r.head_method);
        let framing = match parsed.framing {
            _ if no_body => Framing::None,
            // RFC 9112 §6.3: no length and not chunked: the body runs until close.
            Framing::None => Framing::UntilClose,
            framing => framing,
        };
        let Some(dir) = self.dirs.get_mut(index) else {
            return;
        };
        if interim {
            if report {
                cx.out.push(HttpEvent::Head {
                    stream,
                    kind: MessageKind::Response,
                    fields: Some(parsed.fields),
                    end_stream: false,
                    wire_bytes,
                    timestamp_ns: cx.timestamp_ns,
                });
            }
            dir.state = State::Head { buf: Vec::new() };
            return;
        }
        dir.start_message(stream, report, parsed.fields, framing, wire_bytes, cx);
        if switching {
            cx.stats.protocol_switches = cx.stats.protocol_switches.saturating_add(1);
            self.switched = true;
        }
    }

    fn lose_sync(&mut self, index: usize, reason: &str, cx: &mut Context<'_>) {
        let Some(dir) = self.dirs.get_mut(index) else {
            return;
        };
        dir.state = State::Unsynced;
        dir.current = None;
        dir.unreported_wire = 0;
        cx.stats.desyncs = cx.stats.desyncs.saturating_add(1);
        if !dir.desync_reported {
            dir.desync_reported = true;
            cx.out.push(HttpEvent::Desync {
                direction: dir.direction,
                reason: reason.to_string(),
                timestamp_ns: cx.timestamp_ns,
            });
        }
        if dir.is_request_direction {
            // Assume one request was lost, so that its response does not take the next
            // request's number.
            self.pending.push_back(PendingRequest {
                stream: None,
                head_method: false,
                connect: false,
            });
        } else {
            // How many responses were lost is unknown: forget who is waiting.
            self.pending.clear();
        }
    }
}

struct Context<'a> {
    timestamp_ns: u64,
    out: &'a mut Vec<HttpEvent>,
    stats: &'a mut DecoderStats,
}

impl DirectionState {
    fn message_kind(&self) -> MessageKind {
        if self.is_request_direction {
            MessageKind::Request
        } else {
            MessageKind::Response
        }
    }

    fn start_message(
        &mut self,
        stream: StreamId,
        report: bool,
        fields: Vec<HeaderField>,
        framing: Framing,
        wire_bytes: u64,
        cx: &mut Context<'_>,
    ) {
        let (state, end_stream) = match framing {
            Framing::None => (State::Head { buf: Vec::new() }, true),
            Framing::Length(0) => (State::Head { buf: Vec::new() }, true),
            Framing::UntilClose => (State::Body(Body::UntilClose), false),
            Framing::Length(remaining) => (State::Body(Body::Length { remaining }), false),
            Framing::Chunked => (State::Body(Body::ChunkSize { line: Vec::new() }), false),
        };
        if report {
            cx.out.push(HttpEvent::Head {
                stream,
                kind: self.message_kind(),
                fields: Some(fields),
                end_stream,
                wire_bytes,
                timestamp_ns: cx.timestamp_ns,
            });
        }
        self.state = state;
        self.current = if end_stream {
            None
        } else {
            Some((stream, report))
        };
        self.unreported_wire = 0;
    }

    fn body(&mut self, data: &[u8], missing: u32, end_stream: bool, cx: &mut Context<'_>) {
        let wire =
            std::mem::take(&mut self.unreported_wire) + data.len() as u64 + u64::from(missing);
        if let Some((stream, true)) = self.current {
            if data.is_empty() && missing == 0 && !end_stream {
                self.unreported_wire = wire;
                return;
            }
            cx.out.push(HttpEvent::Body {
                stream,
                kind: self.message_kind(),
                data: data.to_vec(),
                missing,
                end_stream,
                wire_bytes: wire,
                timestamp_ns: cx.timestamp_ns,
            });
        }
    }

    fn end_message(&mut self) {
        self.state = State::Head { buf: Vec::new() };
        self.current = None;
    }

    fn trailers(&mut self, block: &[u8], cx: &mut Context<'_>) {
        let wire = std::mem::take(&mut self.unreported_wire) + block.len() as u64;
        if let Some((stream, true)) = self.current {
            let fields = parse_fields(block.strip_suffix(b"\r\n").unwrap_or(block));
            match fields {
                Some(fields) if !fields.is_empty() => cx.out.push(HttpEvent::Head {
                    stream,
                    kind: MessageKind::Trailers,
                    fields: Some(fields),
                    end_stream: true,
                    wire_bytes: wire,
                    timestamp_ns: cx.timestamp_ns,
                }),
                _ => cx.out.push(HttpEvent::Body {
                    stream,
                    kind: self.message_kind(),
                    data: Vec::new(),
                    missing: 0,
                    end_stream: true,
                    wire_bytes: wire,
                    timestamp_ns: cx.timestamp_ns,
                }),
            }
        }
        self.end_message();
    }
}

/// Appends bytes up to and including the next LF to `line` (without the CRLF); returns the
/// bytes used and whether the line is complete.
fn take_line(line: &mut Vec<u8>, input: &[u8]) -> (usize, bool) {
    match input.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            line.extend_from_slice(input.get(..lf).unwrap_or_default());
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            (lf + 1, true)
        }
        None => {
            line.extend_from_slice(input);
            (input.len(), false)
        }
    }
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = std::str::from_utf8(digits).ok()?.trim_matches([' ', '\t']);
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Parses a head (ending in CRLF CRLF) into pseudo-fields and lower-cased header fields.
fn parse_head(head: &[u8], is_request: bool) -> Option<Head> {
    let head = head.strip_suffix(b"\r\n\r\n")?;
    let (start, rest) = match head.windows(2).position(|w| w == b"\r\n") {
        Some(end) => (head.get(..end)?, head.get(end + 2..)?),
        None => (head, &[][..]),
    };
    if detect::http1_start_line(&[start, b"\r\n"].concat(), is_request, start.len() + 2)
        == Detection::NotRecognized
    {
        return None;
    }
    let start = std::str::from_utf8(start).ok()?;
    let headers = parse_fields(rest)?;
    let mut fields = Vec::with_capacity(headers.len() + 3);
    let mut method = String::new();
    let mut status = 0;
    if is_request {
        let mut parts = start.split(' ');
        method = parts.next()?.to_string();
        let target = parts.next()?;
        fields.push(HeaderField::new(":method", method.clone()));
        fields.push(HeaderField::new(":path", target));
        if let Some(host) = headers.iter().find(|f| f.name == "host") {
            fields.push(HeaderField::new(":authority", host.value.clone()));
        }
    } else {
        let code = start.get(9..12)?;
        status = code.parse().ok()?;
        fields.push(HeaderField::new(":status", code));
    }
    let chunked = headers
        .iter()
        .filter(|f| f.name == "transfer-encoding")
        .flat_map(|f| f.value.split(','))
        .next_back()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|f| f.name == "content-length")
        .map(|f| f.value.trim().parse::<u64>());
    let framing = if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(Ok(length)) => Framing::Length(length),
            Some(_) => return None,
            None => Framing::None,
        }
    };
    fields.extend(headers);
    Some(Head {
        fields,
        method,
        status,
        framing,
    })
}

/// Header lines "name: value" separated by CRLF; `None` if a line is not a header.
fn parse_fields(block: &[u8]) -> Option<Vec<HeaderField>> {
    let mut fields = Vec::new();
    if block.is_empty() {
        return Some(fields);
    }
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line.get(..colon)?;
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let value = line.get(colon + 1..)?;
        let value = String::from_utf8_lossy(value);
        fields.push(HeaderField::new(
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            value.trim_matches([' ', '\t']),
        ));
    }
    Some(fields)
}
