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

use super::detect::{self, Detection};
use super::event::{HttpEvent, StreamId, request_direction};
use super::limits::{DecoderStats, ProtocolLimits};
use crate::reassembly::Piece;
use crate::vocabulary::{Direction, HeaderField, MessageKind, Role};

/// Unanswered requests remembered for pairing; older ones are forgotten.
const MAX_PENDING_REQUESTS: usize = 1024;
/// Longest request or status line accepted.
const MAX_START_LINE: usize = 16 * 1024;
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
        /// The start line was checked (as soon as it is complete, so that garbage is refused
        /// early rather than after a whole head's worth of bytes).
        start_line_ok: bool,
    },
    Body(Body),
}

impl State {
    fn new_head() -> State {
        State::Head {
            buf: Vec::new(),
            start_line_ok: false,
        }
    }
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
                State::Head { buf, .. } => buf.len(),
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
                    dir.state = State::new_head();
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
                State::Head { buf, start_line_ok } => {
                    let old = buf.len();
                    let room = max_head.saturating_sub(old).saturating_add(1);
                    let take = input.len().min(room);
                    buf.extend_from_slice(input.get(..take).unwrap_or_default());
                    if !*start_line_ok {
                        let line_region = buf.get(..MAX_START_LINE + 2).unwrap_or(buf);
                        match detect::http1_start_line(
                            line_region,
                            dir.is_request_direction,
                            MAX_START_LINE,
                        ) {
                            Detection::Found(_) => *start_line_ok = true,
                            Detection::NeedMore => {}
                            Detection::NotRecognized => {
                                cx.stats.discarded_bytes =
                                    cx.stats.discarded_bytes.saturating_add(input.len() as u64);
                                cx.stats.protocol_errors =
                                    cx.stats.protocol_errors.saturating_add(1);
                                self.lose_sync(index, "not an HTTP/1 start line", cx);
                                return;
                            }
                        }
                    }
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
                            let room = max_head.saturating_sub(old).saturating_add(1);
                            let input = input.get(..room.min(input.len())).unwrap_or_default();
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
            dir.state = State::new_head();
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
        // A head whose start line was seen is a message that existed; garbage is not.
        let lost_head = matches!(
            dir.state,
            State::Head {
                start_line_ok: true,
                ..
            }
        );
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
            if !lost_head {
                return;
            }
            // One request was lost: keep its place so that its response does not take the
            // next request's number.
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
            Framing::None => (State::new_head(), true),
            Framing::Length(0) => (State::new_head(), true),
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
        self.state = State::new_head();
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::http::{Protocol, ProtocolDecoder, ProtocolLimits};

    const IN: Direction = Direction::Ingress;
    const OUT: Direction = Direction::Egress;

    fn run(pieces: &[(Direction, Piece<'_>)]) -> (Vec<HttpEvent>, ProtocolDecoder) {
        let mut decoder = ProtocolDecoder::new(Role::Server, ProtocolLimits::default());
        let mut out = Vec::new();
        for (direction, piece) in pieces {
            decoder.feed(*direction, 3, *piece, &mut out);
        }
        (out, decoder)
    }

    fn head(
        stream: u32,
        kind: MessageKind,
        pairs: &[(&str, &str)],
        end: bool,
        wire: usize,
    ) -> HttpEvent {
        HttpEvent::Head {
            stream,
            kind,
            fields: Some(
                pairs
                    .iter()
                    .map(|(n, v)| HeaderField::new(*n, *v))
                    .collect(),
            ),
            end_stream: end,
            wire_bytes: wire as u64,
            timestamp_ns: 3,
        }
    }

    fn body(stream: u32, kind: MessageKind, data: &[u8], end: bool, wire: usize) -> HttpEvent {
        HttpEvent::Body {
            stream,
            kind,
            data: data.to_vec(),
            missing: 0,
            end_stream: end,
            wire_bytes: wire as u64,
            timestamp_ns: 3,
        }
    }

    const REQUESTS: &[u8] =
        b"GET /api/v1/pods?limit=5 HTTP/1.1\r\nHost: k8s:6443\r\nUser-Agent: curl/8\r\n\r\n\
POST /api/v1/namespaces/a/pods HTTP/1.1\r\nHost: k8s\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n\
HEAD /x HTTP/1.1\r\nhost: k8s\r\n\r\n";
    const RESPONSES: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde\
HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";

    #[test]
    fn pipelined_requests_chunked_bodies_trailers_and_head() {
        let (events, decoder) =
            run(&[(IN, Piece::Bytes(REQUESTS)), (OUT, Piece::Bytes(RESPONSES))]);
        use MessageKind::*;
        assert_eq!(
            events,
            vec![
                head(
                    1,
                    Request,
                    &[
                        (":method", "GET"),
                        (":path", "/api/v1/pods?limit=5"),
                        (":authority", "k8s:6443"),
                        ("host", "k8s:6443"),
                        ("user-agent", "curl/8"),
                    ],
                    true,
                    73
                ),
                head(
                    2,
                    Request,
                    &[
                        (":method", "POST"),
                        (":path", "/api/v1/namespaces/a/pods"),
                        (":authority", "k8s"),
                        ("host", "k8s"),
                        ("transfer-encoding", "chunked"),
                    ],
                    false,
                    82
                ),
                body(2, Request, b"hello", false, 8),
                body(2, Request, b" world", false, 2 + 9 + 6),
                head(2, Trailers, &[("x-trailer", "t")], true, 2 + 3 + 16),
                head(
                    3,
                    Request,
                    &[
                        (":method", "HEAD"),
                        (":path", "/x"),
                        (":authority", "k8s"),
                        ("host", "k8s")
                    ],
                    true,
                    31
                ),
                head(
                    1,
                    Response,
                    &[(":status", "200"), ("content-length", "5")],
                    false,
                    38
                ),
                body(1, Response, b"abcde", true, 5),
                head(
                    2,
                    Response,
                    &[(":status", "201"), ("transfer-encoding", "chunked")],
                    false,
                    52
                ),
                body(2, Response, b"xyz", false, 6),
                body(2, Response, b"", true, 2 + 3 + 2),
                head(
                    3,
                    Response,
                    &[(":status", "200"), ("content-length", "100")],
                    true,
                    40
                ),
            ]
        );
        assert_eq!(decoder.protocol(), Protocol::Http1);
        assert_eq!(decoder.stats().http1_heads, 6);
        assert_eq!(decoder.buffered_bytes(), 0);
    }

    /// Heads (and other events) in order, body bytes and wire bytes per (stream, is request),
    /// and the streams whose messages ended, in order.
    type Normalized = (
        Vec<HttpEvent>,
        BTreeMap<(u32, bool), (Vec<u8>, u64)>,
        Vec<u32>,
    );

    fn normalize(events: &[HttpEvent]) -> Normalized {
        let mut heads = Vec::new();
        let mut bodies: BTreeMap<(u32, bool), (Vec<u8>, u64)> = BTreeMap::new();
        let mut ends = Vec::new();
        for event in events {
            match event {
                HttpEvent::Head {
                    stream, end_stream, ..
                } => {
                    heads.push(event.clone());
                    if *end_stream {
                        ends.push(*stream);
                    }
                }
                HttpEvent::Body {
                    stream,
                    kind,
                    data,
                    end_stream,
                    wire_bytes,
                    ..
                } => {
                    let entry = bodies
                        .entry((*stream, *kind == MessageKind::Request))
                        .or_default();
                    entry.0.extend_from_slice(data);
                    entry.1 += wire_bytes;
                    if *end_stream {
                        ends.push(*stream);
                    }
                }
                other => heads.push(other.clone()),
            }
        }
        (heads, bodies, ends)
    }

    #[test]
    fn split_at_every_byte_boundary_gives_the_same_messages() {
        let (reference, _) = run(&[(IN, Piece::Bytes(REQUESTS)), (OUT, Piece::Bytes(RESPONSES))]);
        let reference = normalize(&reference);
        for k in 1..REQUESTS.len() {
            let (a, b) = REQUESTS.split_at(k);
            // The second piece starts mid-message: it must continue, not resync.
            let (events, _) = run(&[
                (IN, Piece::Bytes(a)),
                (IN, Piece::Bytes(b)),
                (OUT, Piece::Bytes(RESPONSES)),
            ]);
            assert_eq!(normalize(&events), reference, "request split at {k}");
        }
        for k in 1..RESPONSES.len() {
            let (a, b) = RESPONSES.split_at(k);
            let (events, _) = run(&[
                (IN, Piece::Bytes(REQUESTS)),
                (OUT, Piece::Bytes(a)),
                (OUT, Piece::Bytes(b)),
            ]);
            assert_eq!(normalize(&events), reference, "response split at {k}");
        }
        let mut bytes: Vec<_> = REQUESTS.chunks(1).map(|b| (IN, Piece::Bytes(b))).collect();
        bytes.extend(RESPONSES.chunks(1).map(|b| (OUT, Piece::Bytes(b))));
        assert_eq!(normalize(&run(&bytes).0), reference);
    }

    #[test]
    fn switching_protocols_makes_the_connection_opaque() {
        let request = b"GET /api/v1/namespaces/a/pods/p/exec?command=sh HTTP/1.1\r\nHost: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x82\x05hello";
        let (events, decoder) = run(&[
            (IN, Piece::Bytes(request)),
            (OUT, Piece::Bytes(response)),
            (IN, Piece::Bytes(b"\x81\x85GET / HTTP/1.1\r\n\r\n")),
        ]);
        assert_eq!(events.len(), 2);
        assert!(matches!(
            &events[1],
            HttpEvent::Head {
                stream: 1,
                kind: MessageKind::Response,
                end_stream: true,
                ..
            }
        ));
        assert_eq!(decoder.protocol(), Protocol::Opaque);
        assert_eq!(decoder.stats().protocol_switches, 1);
        assert_eq!(decoder.stats().opaque_bytes, 20);
    }

    #[test]
    fn connect_success_makes_the_connection_opaque() {
        let (events, decoder) = run(&[
            (
                IN,
                Piece::Bytes(b"CONNECT etcd:2379 HTTP/1.1\r\nHost: etcd:2379\r\n\r\n"),
            ),
            (IN, Piece::Bytes(b"\x16\x03\x01tunnel")),
            (
                OUT,
                Piece::Bytes(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            ),
            (OUT, Piece::Bytes(b"\x16\x03\x03tunnel")),
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(decoder.protocol(), Protocol::Opaque);
        assert_eq!(decoder.stats().protocol_switches, 1);
    }

    #[test]
    fn interim_no_body_and_close_delimited_responses() {
        let requests = b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi\
DELETE /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /d HTTP/1.0\r\n\r\n";
        let responses =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n\
HTTP/1.0 200 OK\r\n\r\nuntil close";
        let mut decoder = ProtocolDecoder::new(Role::Server, ProtocolLimits::default());
        let mut events = Vec::new();
        decoder.feed(IN, 3, Piece::Bytes(requests), &mut events);
        decoder.feed(OUT, 3, Piece::Bytes(responses), &mut events);
        decoder.close(4, &mut events);
        let summary: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HttpEvent::Head {
                    stream,
                    kind: MessageKind::Response,
                    fields: Some(f),
                    end_stream,
                    ..
                } => Some((*stream, f[0].value.clone(), *end_stream)),
                HttpEvent::Body {
                    stream,
                    kind: MessageKind::Response,
                    data,
                    end_stream,
                    ..
                } => Some((
                    *stream,
                    String::from_utf8_lossy(data).into_owned(),
                    *end_stream,
                )),
                _ => None,
            })
            .collect();
        let expected: Vec<(u32, String, bool)> = vec![
            (1, "100".into(), false),
            (1, "200".into(), true),
            (2, "204".into(), true),
            (3, "304".into(), true),
            (4, "200".into(), false),
            (4, "until close".into(), false),
            (4, "".into(), true),
        ];
        assert_eq!(summary, expected);
        assert!(matches!(
            events.last(),
            Some(HttpEvent::Body {
                timestamp_ns: 4,
                ..
            })
        ));
    }

    #[test]
    fn gaps_in_bodies_are_reported_as_missing() {
        let request = b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
        let (events, decoder) = run(&[
            (IN, Piece::Bytes(request)),
            (IN, Piece::Bytes(b"abc")),
            (IN, Piece::Gap(4)),
            (IN, Piece::Bytes(b"hij")),
            (IN, Piece::Bytes(b"GET /next HTTP/1.1\r\n\r\n")),
        ]);
        let bodies: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HttpEvent::Body {
                    data,
                    missing,
                    end_stream,
                    ..
                } => Some((data.clone(), *missing, *end_stream)),
                _ => None,
            })
            .collect();
        assert_eq!(
            bodies,
            vec![
                (b"abc".to_vec(), 0, false),
                (vec![], 4, false),
                (b"hij".to_vec(), 0, true)
            ]
        );
        assert!(matches!(
            events.last(),
            Some(HttpEvent::Head {
                stream: 2,
                end_stream: true,
                ..
            })
        ));
        assert_eq!(decoder.stats().desyncs, 0);
    }

    #[test]
    fn gap_in_a_head_resyncs_on_the_next_start_line() {
        let (events, decoder) = run(&[
            (IN, Piece::Bytes(b"GET /a HTTP/1.1\r\nHo")),
            (IN, Piece::Gap(50)),
            (IN, Piece::Bytes(b"st: x\r\n\r\n")),
            (IN, Piece::Bytes(b"GET /b HTTP/1.1\r\n\r\n")),
            (
                OUT,
                Piece::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            ),
            (
                OUT,
                Piece::Bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            ),
        ]);
        assert!(matches!(events[0], HttpEvent::Desync { direction: IN, .. }));
        // The lost request keeps its place: /b is request 1 as far as numbering goes (the
        // lost one had none), and its response is the second one.
        let heads: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                HttpEvent::Head {
                    stream,
                    fields: Some(f),
                    ..
                } => Some((*stream, f[0].value.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(heads, vec![(1, "GET".to_string()), (1, "404".to_string())]);
        assert_eq!(decoder.stats().http1_unpaired_responses, 1);
    }

    #[test]
    fn joining_mid_body_waits_for_a_start_line() {
        let (events, decoder) = run(&[
            (OUT, Piece::Bytes(b"{\"items\":[]}")),
            (IN, Piece::Bytes(b"ze\": 5}")),
            (IN, Piece::Bytes(b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n")),
            (
                OUT,
                Piece::Bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
            ),
        ]);
        assert_eq!(decoder.protocol(), Protocol::Http1);
        assert_eq!(events.len(), 3);
        assert!(matches!(
            &events[2],
            HttpEvent::Body {
                stream: 1,
                end_stream: true,
                ..
            }
        ));
        assert_eq!(decoder.stats().discarded_bytes, 12 + 7);
    }

    #[test]
    fn malformed_and_oversized_heads_do_not_panic() {
        let limits = ProtocolLimits {
            max_http1_head_bytes: 64,
            ..ProtocolLimits::default()
        };
        let mut decoder = ProtocolDecoder::new(Role::Server, limits);
        let mut out = Vec::new();
        decoder.feed(
            IN,
            1,
            Piece::Bytes(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"),
            &mut out,
        );
        decoder.feed(
            IN,
            1,
            Piece::Bytes(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            &mut out,
        );
        decoder.feed(
            IN,
            1,
            Piece::Bytes(&[b"GET / HTTP/1.1\r\nA: ".as_slice(), &[b'a'; 200]].concat()),
            &mut out,
        );
        decoder.feed(
            IN,
            1,
            Piece::Bytes(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            &mut out,
        );
        assert!(decoder.buffered_bytes() <= 65);
        assert!(out.iter().all(|e| !matches!(e, HttpEvent::Body { .. })));
        assert!(decoder.stats().protocol_errors >= 2);
        assert!(decoder.stats().buffer_overflows >= 1);
    }

    #[test]
    fn garbage_after_a_message_is_refused_at_once() {
        let mut piece = b"GET /a HTTP/1.1\r\n\r\n".to_vec();
        piece.extend_from_slice(&[0x17; 5000]);
        let (events, decoder) = run(&[
            (IN, Piece::Bytes(&piece)),
            (IN, Piece::Bytes(&[0x17; 100])),
            (IN, Piece::Bytes(b"GET /b HTTP/1.1\r\n\r\n")),
        ]);
        assert_eq!(events.len(), 3);
        assert!(matches!(events[1], HttpEvent::Desync { direction: IN, .. }));
        // The lost bytes may have held a request: it gets no number.
        assert!(matches!(events[2], HttpEvent::Head { stream: 2, .. }));
        assert_eq!(decoder.stats().discarded_bytes, 5100);
        // Garbage is no lost request: the next response pairs with /b.
        let mut out = Vec::new();
        let mut decoder = decoder;
        decoder.feed(
            OUT,
            3,
            Piece::Bytes(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            ),
            &mut out,
        );
        let streams: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                HttpEvent::Head { stream, .. } => Some(*stream),
                _ => None,
            })
            .collect();
        assert_eq!(streams, vec![1, 2]);
        assert_eq!(decoder.buffered_bytes(), 0);
    }
}
