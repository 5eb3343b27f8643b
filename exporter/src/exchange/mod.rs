//! Exchange stage: pairs the [`HttpEvent`]s of one connection into [`Exchange`]s, one request and
//! its response per stream, with timings, sizes and (bounded) bodies.
//!
//! Header blocks come from two places: the wire decoder, and the header-level hooks in Go's
//! HTTP/2 code (`ChunkEventKind::Headers`), which still see decoded headers on connections whose
//! HPACK state predates attaching. Wire fields win when both are there; hook fields fill in
//! where the wire block could not be decoded.

pub mod metrics;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::http::{FrameMeta, HttpEvent, StreamId, request_direction};

/// Frames kept per exchange (with `report_frames`); later ones are only counted.
pub const MAX_FRAMES_PER_EXCHANGE: usize = 64;
/// Frames of streams not open yet (a HEADERS frame comes just before its head) held per
/// connection until the stream opens.
const MAX_PENDING_FRAMES: usize = 16;
use crate::vocabulary::{ConnectionId, Direction, HeaderField, MessageKind, Role};

pub use metrics::ExchangeMetrics;

/// Limits of the exchange stage.
#[derive(Clone, Debug)]
pub struct ExchangeLimits {
    /// Body bytes kept per message for decoding (the rest is counted, not kept).
    pub max_body_bytes: usize,
    /// Streams open at once per connection; beyond, the oldest is ended as evicted.
    pub max_open_streams: usize,
}

impl Default for ExchangeLimits {
    fn default() -> Self {
        ExchangeLimits {
            max_body_bytes: 1 << 20,
            max_open_streams: 1024,
        }
    }
}

/// Responses that are open-ended streams of events (Kubernetes watches): their bodies are
/// consumed as they arrive instead of kept. What makes a request one, and how its events are
/// read, is the business of the stage above; it says so through this.
pub trait ResponseStreams: Send + Sync {
    /// Whether the response to this request is a stream (asked once the request head is known).
    fn is_stream(&self, request: &Message) -> bool;
    /// The consumer of one stream, made when its body starts (the response head is known then).
    fn open(&self, request: &Message, response: &Message) -> Box<dyn BodyStream>;
}

/// The consumer of one streamed response body.
pub trait BodyStream: Send + fmt::Debug {
    /// The next piece of the body, in any size.
    fn feed(&mut self, data: &[u8]);
    /// The body ended (or the exchange did).
    fn finish(&mut self);
    /// For the stage that made it, to read its results back.
    fn as_any(&self) -> &dyn Any;
}

/// Where a header block came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersSource {
    Wire,
    Hook,
}

impl HeadersSource {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadersSource::Wire => "wire",
            HeadersSource::Hook => "hook",
        }
    }
}

/// One message (request or response) of an exchange.
#[derive(Debug, Default)]
pub struct Message {
    /// Decoded header fields, pseudo-headers included (`:method`, `:path`, `:status`...).
    pub fields: Option<Vec<HeaderField>>,
    pub source: Option<HeadersSource>,
    /// A head was seen on the wire (even if it could not be decoded).
    pub head_seen: bool,
    pub trailers: Option<Vec<HeaderField>>,
    /// Body bytes kept, at most `max_body_bytes`.
    pub body: Vec<u8>,
    /// Body length as sent (copied or not).
    pub body_bytes: u64,
    /// Body bytes the capture did not copy, plus those over the keep limit.
    pub body_missing: u64,
    /// Body bytes over the keep limit (subset of `body_missing`).
    pub body_over_limit: u64,
    pub wire_bytes: u64,
    pub first_byte_ns: Option<u64>,
    pub last_byte_ns: Option<u64>,
    pub ended: bool,
}

impl Message {
    /// Value of a header field (names are lower case in HTTP/2 and normalized for HTTP/1.1).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.fields
            .as_ref()?
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    }

    /// All values of a header field.
    pub fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .flatten()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    }

    fn touch(&mut self, timestamp_ns: u64) {
        self.first_byte_ns.get_or_insert(timestamp_ns);
        self.last_byte_ns = Some(timestamp_ns);
    }
}

/// How an exchange ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The response ended its stream.
    Complete,
    /// RST_STREAM with this error code, sent in this direction.
    Reset { error_code: u32, by: Direction },
    /// The connection closed before the response ended.
    ConnectionClosed,
    /// GOAWAY said this stream would not be processed.
    GoAway { error_code: u32 },
    /// Dropped to keep memory bounded (too many open streams, idle connection).
    Evicted,
    /// Still open when the capture (or the recording) ended.
    Unfinished,
}

impl Ending {
    /// Why the exchange is incomplete, `None` when it is complete.
    pub fn incomplete_reason(&self) -> Option<String> {
        match self {
            Ending::Complete => None,
            Ending::Reset { error_code, by } => Some(format!(
                "reset (error code {error_code}) by the {}",
                match by {
                    Direction::Ingress => "peer",
                    Direction::Egress => "traced process",
                }
            )),
            Ending::ConnectionClosed => Some("connection closed".into()),
            Ending::GoAway { error_code } => Some(format!("goaway (error code {error_code})")),
            Ending::Evicted => Some("evicted before completion".into()),
            Ending::Unfinished => Some("still open when the capture ended".into()),
        }
    }
}

/// Connection facts every exchange of the connection shares.
#[derive(Clone, Debug, Default)]
pub struct ConnectionFacts {
    pub connection: ConnectionId,
    pub role: Role,
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// "2" or "1.1".
    pub protocol: &'static str,
}

/// One request and its response.
#[derive(Debug)]
pub struct Exchange {
    pub facts: ConnectionFacts,
    pub stream: StreamId,
    pub request: Message,
    pub response: Message,
    /// The response is a stream of events (a watch): its body is consumed as it arrives by
    /// `body_stream`, not kept.
    pub is_stream: bool,
    /// The stream's consumer, made when the response body starts (it needs the content type).
    pub body_stream: Option<Box<dyn BodyStream>>,
    pub ending: Ending,
    /// The stream's HTTP/2 frames, when the decoder reports them: at most
    /// [`MAX_FRAMES_PER_EXCHANGE`], `frames_cut` counts the rest.
    pub frames: Vec<FrameMeta>,
    pub frames_cut: u32,
}

impl Exchange {
    fn new(facts: ConnectionFacts, stream: StreamId) -> Self {
        Exchange {
            facts,
            stream,
            request: Message::default(),
            response: Message::default(),
            is_stream: false,
            body_stream: None,
            ending: Ending::Complete,
            frames: Vec::new(),
            frames_cut: 0,
        }
    }

    /// Final (non-1xx) response status.
    pub fn status(&self) -> Option<u16> {
        self.response.header(":status")?.trim().parse().ok()
    }

    /// Request start: first byte of the request (or of the response if the request was unseen).
    pub fn start_ns(&self) -> Option<u64> {
        self.request.first_byte_ns.or(self.response.first_byte_ns)
    }

    /// End: last byte seen of either message.
    pub fn end_ns(&self) -> Option<u64> {
        match (self.request.last_byte_ns, self.response.last_byte_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Pairs the events of one connection into exchanges.
pub struct ExchangeAssembler {
    facts: ConnectionFacts,
    limits: ExchangeLimits,
    open: BTreeMap<StreamId, Exchange>,
    /// Body bytes kept by the open exchanges, kept as a running sum: the pipeline asks after
    /// every chunk, and a connection can carry hundreds of open watches.
    held_body_bytes: usize,
    /// Which responses are event streams, and how they are consumed (from the stage above).
    streams: Option<Arc<dyn ResponseStreams>>,
    pending_frames: Vec<(StreamId, FrameMeta)>,
}

impl ExchangeAssembler {
    pub fn new(facts: ConnectionFacts, limits: ExchangeLimits) -> Self {
        ExchangeAssembler {
            facts,
            limits,
            open: BTreeMap::new(),
            held_body_bytes: 0,
            streams: None,
            pending_frames: Vec::new(),
        }
    }

    /// Responses `streams` calls event streams are consumed by its consumers instead of kept.
    pub fn with_response_streams(mut self, streams: Arc<dyn ResponseStreams>) -> Self {
        self.streams = Some(streams);
        self
    }

    /// Takes a stream out of the open table, releasing what its bodies held.
    fn take(&mut self, stream: StreamId) -> Option<Exchange> {
        let exchange = self.open.remove(&stream)?;
        self.held_body_bytes -= exchange.request.body.len() + exchange.response.body.len();
        Some(exchange)
    }

    pub fn facts(&self) -> &ConnectionFacts {
        &self.facts
    }

    pub fn set_protocol(&mut self, protocol: &'static str) {
        self.facts.protocol = protocol;
    }

    /// Bytes held by open exchanges (bodies kept for decoding).
    pub fn buffered_bytes(&self) -> usize {
        self.held_body_bytes
    }

    pub fn open_streams(&self) -> usize {
        self.open.len()
    }

    /// Exchanges whose request has started and whose response has not ended yet.
    pub fn in_flight(&self) -> impl Iterator<Item = &Exchange> {
        self.open
            .values()
            .filter(|e| e.request.fields.is_some() && !e.response.ended)
    }

    /// Applies one protocol event; finished exchanges are appended to `done`.
    pub fn on_event(
        &mut self,
        event: HttpEvent,
        metrics: &ExchangeMetrics,
        done: &mut Vec<Exchange>,
    ) {
        let streams = self.streams.clone();
        match event {
            HttpEvent::Head {
                stream,
                kind,
                fields,
                end_stream,
                wire_bytes,
                timestamp_ns,
            } => {
                let exchange = self.exchange(stream, metrics, done);
                match kind {
                    MessageKind::Trailers => {
                        let message = trailer_target(exchange);
                        message.trailers = fields;
                        message.wire_bytes += wire_bytes;
                        message.touch(timestamp_ns);
                        message.ended |= end_stream;
                    }
                    MessageKind::Request | MessageKind::Response => {
                        let informational = kind == MessageKind::Response
                            && fields.as_deref().is_some_and(is_informational);
                        let message = message_mut(exchange, kind);
                        message.head_seen = true;
                        message.wire_bytes += wire_bytes;
                        message.touch(timestamp_ns);
                        // A 1xx head is followed by the real one; keep the real one.
                        if !informational {
                            if let Some(fields) = fields {
                                message.fields = Some(fields);
                                message.source = Some(HeadersSource::Wire);
                            }
                        }
                        message.ended |= end_stream;
                        if kind == MessageKind::Request {
                            note_stream(exchange, streams.as_deref());
                        }
                    }
                }
                self.finish_if_done(stream, done);
            }
            HttpEvent::Body {
                stream,
                kind,
                data,
                missing,
                end_stream,
                wire_bytes,
                timestamp_ns,
            } => {
                let limits = self.limits.clone();
                let exchange = self.exchange(stream, metrics, done);
                let watching = exchange.is_stream && kind == MessageKind::Response;
                if let (true, Some(streams)) = (watching, streams.as_deref()) {
                    if exchange.body_stream.is_none() {
                        exchange.body_stream =
                            Some(streams.open(&exchange.request, &exchange.response));
                    }
                    if let Some(stream) = exchange.body_stream.as_mut() {
                        stream.feed(&data);
                    }
                }
                let message = message_mut(exchange, kind);
                message.touch(timestamp_ns);
                message.wire_bytes += wire_bytes;
                message.body_bytes += data.len() as u64 + u64::from(missing);
                message.body_missing += u64::from(missing);
                // A watch body is counted by the watch decoder, not kept.
                let room = if watching {
                    0
                } else {
                    limits.max_body_bytes.saturating_sub(message.body.len())
                };
                let kept = data.len().min(room);
                message.body.extend_from_slice(&data[..kept]);
                let over = (data.len() - kept) as u64;
                message.body_over_limit += over;
                message.body_missing += over;
                if over > 0 && !watching {
                    metrics.body_bytes_over_limit.inc_by(over);
                }
                message.ended |= end_stream;
                self.held_body_bytes += kept;
                self.finish_if_done(stream, done);
            }
            HttpEvent::Reset {
                stream,
                error_code,
                direction,
                timestamp_ns,
            } => {
                if let Some(mut exchange) = self.take(stream) {
                    let message = if direction == request_direction(self.facts.role) {
                        &mut exchange.request
                    } else {
                        &mut exchange.response
                    };
                    message.touch(timestamp_ns);
                    exchange.ending = Ending::Reset {
                        error_code,
                        by: direction,
                    };
                    done.push(finish(exchange));
                }
            }
            HttpEvent::GoAway {
                last_stream_id,
                error_code,
                direction,
                ..
            } => {
                // Only streams the sender of GOAWAY would have received are abandoned: those the
                // other side opened above `last_stream_id`.
                if direction == request_direction(self.facts.role) {
                    return;
                }
                let abandoned: Vec<StreamId> = self
                    .open
                    .range(last_stream_id.saturating_add(1)..)
                    .map(|(id, _)| *id)
                    .collect();
                for id in abandoned {
                    if let Some(mut exchange) = self.take(id) {
                        exchange.ending = Ending::GoAway { error_code };
                        done.push(finish(exchange));
                    }
                }
            }
            HttpEvent::Desync { .. } => {
                metrics.desyncs.inc();
            }
            HttpEvent::Frame { stream, frame } => match self.open.get_mut(&stream) {
                Some(exchange) => keep_frame(exchange, frame),
                None => {
                    if self.pending_frames.len() >= MAX_PENDING_FRAMES {
                        self.pending_frames.remove(0);
                    }
                    self.pending_frames.push((stream, frame));
                }
            },
        }
    }

    /// Applies a header block from the hooks in Go's HTTP/2 code.
    pub fn on_hook_headers(
        &mut self,
        stream: StreamId,
        kind: MessageKind,
        fields: Vec<HeaderField>,
        timestamp_ns: u64,
        metrics: &ExchangeMetrics,
        done: &mut Vec<Exchange>,
    ) {
        metrics.hook_header_blocks.inc();
        let streams = self.streams.clone();
        let exchange = self.exchange(stream, metrics, done);
        let message = match kind {
            MessageKind::Request if exchange.request.fields.is_some() => {
                // processHeaders also runs for trailers once the request head is known.
                if exchange.request.source == Some(HeadersSource::Hook) {
                    exchange.request.trailers.get_or_insert(fields);
                }
                return;
            }
            MessageKind::Trailers => return,
            kind => message_mut(exchange, kind),
        };
        if message.fields.is_none() && !(kind == MessageKind::Response && is_informational(&fields))
        {
            message.fields = Some(fields);
            message.source = Some(HeadersSource::Hook);
            metrics.hook_header_blocks_used.inc();
        }
        // The hook runs as the block is processed: a good time for a message with no wire bytes.
        message.first_byte_ns.get_or_insert(timestamp_ns);
        if kind == MessageKind::Request {
            note_stream(exchange, streams.as_deref());
        }
    }

    /// Ends every open exchange (connection closed, evicted, shutdown).
    pub fn close(&mut self, ending: Ending, done: &mut Vec<Exchange>) {
        self.held_body_bytes = 0;
        for (_, mut exchange) in std::mem::take(&mut self.open) {
            exchange.ending = ending.clone();
            done.push(finish(exchange));
        }
    }

    fn exchange(
        &mut self,
        stream: StreamId,
        metrics: &ExchangeMetrics,
        done: &mut Vec<Exchange>,
    ) -> &mut Exchange {
        if !self.open.contains_key(&stream) && self.open.len() >= self.limits.max_open_streams {
            // The lowest stream id is the oldest: watches that never ended, or lost ends.
            let oldest_stream = self.open.first_key_value().map(|(id, _)| *id);
            if let Some(mut oldest) = oldest_stream.and_then(|id| self.take(id)) {
                oldest.ending = Ending::Evicted;
                metrics.streams_evicted.inc();
                done.push(finish(oldest));
            }
        }
        let facts = &self.facts;
        let pending = &mut self.pending_frames;
        self.open.entry(stream).or_insert_with(|| {
            let mut exchange = Exchange::new(facts.clone(), stream);
            // The frames that opened the stream came just before its first event.
            pending.retain(|(id, frame)| {
                if *id == stream {
                    keep_frame(&mut exchange, *frame);
                }
                *id != stream
            });
            exchange
        })
    }

    fn finish_if_done(&mut self, stream: StreamId, done: &mut Vec<Exchange>) {
        let finished = self.open.get(&stream).is_some_and(|e| {
            e.response.ended
                && (e.request.ended || e.request.head_seen || e.request.fields.is_some())
        });
        if finished {
            if let Some(exchange) = self.take(stream) {
                done.push(finish(exchange));
            }
        }
    }
}

fn keep_frame(exchange: &mut Exchange, frame: FrameMeta) {
    if exchange.frames.len() < MAX_FRAMES_PER_EXCHANGE {
        exchange.frames.push(frame);
    } else {
        exchange.frames_cut = exchange.frames_cut.saturating_add(1);
    }
}

fn finish(mut exchange: Exchange) -> Exchange {
    if let Some(stream) = exchange.body_stream.as_mut() {
        stream.finish();
    }
    exchange
}

fn message_mut(exchange: &mut Exchange, kind: MessageKind) -> &mut Message {
    match kind {
        MessageKind::Request => &mut exchange.request,
        MessageKind::Response | MessageKind::Trailers => &mut exchange.response,
    }
}

/// Trailers belong to the message whose body came last: the response once it started.
fn trailer_target(exchange: &mut Exchange) -> &mut Message {
    if exchange.response.head_seen || exchange.response.fields.is_some() {
        &mut exchange.response
    } else {
        &mut exchange.request
    }
}

fn is_informational(fields: &[HeaderField]) -> bool {
    fields
        .iter()
        .find(|f| f.name == ":status")
        .is_some_and(|f| f.value.starts_with('1'))
}

/// Asks the stage above whether this request's response is a stream, once its head is known.
fn note_stream(exchange: &mut Exchange, streams: Option<&dyn ResponseStreams>) {
    if let Some(streams) = streams {
        exchange.is_stream = streams.is_stream(&exchange.request);
    }
}

#[cfg(test)]
mod tests;
