//! Watch responses as a sequence of events, decoded incrementally with bounded memory.
//!
//! What the apiserver sends (`apiserver/pkg/endpoints/handlers/watch.go`, apimachinery
//! `runtime/serializer`): the watch handler encodes each `metav1.WatchEvent` with the content
//! type's *stream* serializer and writes it through that serializer's framer.
//! - JSON (`application/json`): the stream serializer is the JSON serializer and the framer
//!   writes documents back to back; each event is `{"type":"ADDED","object":{...}}` followed by a
//!   newline. Documents are found here by a scanner that tracks strings, escapes and nesting, so
//!   newlines (or their absence) do not matter.
//! - Protobuf (`application/vnd.kubernetes.protobuf;stream=watch`): the stream serializer is
//!   `protobuf.RawSerializer` (no `k8s\0` magic, no `runtime.Unknown` envelope) and the framer is
//!   `LengthDelimitedFramer`: a 4-byte big-endian length, then a `WatchEvent{type=1 string,
//!   object=2 RawExtension{raw=1}}` message (the embedded object itself is `k8s\0`+Unknown). A
//!   frame that does start with `k8s\0` is unwrapped too.
//!
//! Memory: only the current event is buffered, up to `BodyLimits::max_watch_frame_bytes`; a
//! longer event is skipped (never buffered whole) and counted as `other`.

use std::any::Any;

use serde::Deserialize;

use crate::exchange::{BodyStream, Message, ResponseStreams};
use crate::k8s::api_request::WatchStats;
use crate::k8s::body::wire::{self, Reader, Value};
use crate::k8s::body::{BodyLimits, PROTOBUF_MAGIC, parse_unknown};

/// Which responses are watches (the apiserver's RequestInfo verb `watch`), decoded as events.
#[derive(Clone, Debug, Default)]
pub struct WatchStreams {
    pub limits: BodyLimits,
}

impl ResponseStreams for WatchStreams {
    fn is_stream(&self, request: &Message) -> bool {
        let (Some(method), Some(path)) = (request.header(":method"), request.header(":path"))
        else {
            return false;
        };
        crate::k8s::request_info::resolve(method, path).verb == "watch"
    }

    fn open(&self, request: &Message, response: &Message) -> Box<dyn BodyStream> {
        let content_type = response
            .header("content-type")
            .or(request.header("accept"))
            .unwrap_or_default();
        Box::new(WatchDecoder::new(content_type, &self.limits))
    }
}

impl BodyStream for WatchDecoder {
    fn feed(&mut self, data: &[u8]) {
        WatchDecoder::feed(self, data);
    }

    fn finish(&mut self) {
        WatchDecoder::finish(self);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Frame buffers larger than this are released after each event, so one large event does not
/// pin its buffer for the life of the watch.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

/// Incremental watch stream decoder: feed the body bytes as they arrive, in any pieces.
#[derive(Debug)]
pub struct WatchDecoder {
    stats: WatchStats,
    max_frame: usize,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    Json(JsonScanner),
    Protobuf(FrameReader),
}

impl WatchDecoder {
    /// A decoder for a watch response of this `Content-Type`: protobuf when the media type is
    /// `application/vnd.kubernetes.protobuf`, JSON otherwise.
    pub fn new(content_type: &str, limits: &BodyLimits) -> Self {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let mode = if media == "application/vnd.kubernetes.protobuf" {
            Mode::Protobuf(FrameReader::default())
        } else {
            Mode::Json(JsonScanner::default())
        };
        WatchDecoder {
            stats: WatchStats::default(),
            max_frame: limits.max_watch_frame_bytes,
            mode,
        }
    }

    /// Consumes the next piece of the body.
    pub fn feed(&mut self, data: &[u8]) {
        self.stats.bytes = self.stats.bytes.saturating_add(data.len() as u64);
        match &mut self.mode {
            Mode::Json(s) => s.feed(data, self.max_frame, &mut self.stats),
            Mode::Protobuf(f) => f.feed(data, self.max_frame, &mut self.stats),
        }
    }

    /// The body ended: a partial event is counted as `other`. Further calls do nothing.
    pub fn finish(&mut self) {
        match &mut self.mode {
            Mode::Json(s) => s.finish(&mut self.stats),
            Mode::Protobuf(f) => f.finish(&mut self.stats),
        }
    }

    pub fn stats(&self) -> &WatchStats {
        &self.stats
    }

    /// Bytes currently buffered for the event in progress (at most the frame cap).
    pub fn buffered(&self) -> usize {
        match &self.mode {
            Mode::Json(s) => s.buf.len(),
            Mode::Protobuf(f) => f.buf.len(),
        }
    }
}

fn count_type(stats: &mut WatchStats, event_type: Option<&str>) {
    let slot = match event_type {
        Some("ADDED") => &mut stats.added,
        Some("MODIFIED") => &mut stats.modified,
        Some("DELETED") => &mut stats.deleted,
        Some("BOOKMARK") => &mut stats.bookmark,
        Some("ERROR") => &mut stats.error,
        _ => &mut stats.other,
    };
    *slot = slot.saturating_add(1);
}

/// Appends to a frame buffer without letting its capacity pass `max`.
fn push_capped(buf: &mut Vec<u8>, data: &[u8], max: usize) {
    let needed = buf.len().saturating_add(data.len());
    if needed > buf.capacity() {
        let target = buf
            .capacity()
            .saturating_mul(2)
            .max(needed)
            .max(256)
            .min(max.max(needed));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(data);
}

fn release(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > KEEP_BUFFER_BYTES {
        *buf = Vec::new();
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

#[derive(Debug, Default)]
struct JsonScanner {
    in_doc: bool,
    depth: usize,
    in_string: bool,
    escape: bool,
    /// The current document was longer than the cap: its bytes are being skipped.
    overflow: bool,
    /// Inside a run of bytes that are not part of any document (counted once as `other`).
    garbage: bool,
    buf: Vec<u8>,
}

#[derive(Deserialize)]
struct JsonEvent {
    #[serde(rename = "type", default)]
    event_type: Option<String>,
}

impl JsonScanner {
    fn feed(&mut self, data: &[u8], max: usize, stats: &mut WatchStats) {
        let mut i = 0;
        while i < data.len() {
            if !self.in_doc {
                let b = data[i];
                i += 1;
                if b.is_ascii_whitespace() {
                    continue;
                }
                if b == b'{' {
                    self.garbage = false;
                    self.in_doc = true;
                    self.depth = 1;
                    self.in_string = false;
                    self.escape = false;
                    self.overflow = false;
                    self.append(b"{", max);
                } else if !self.garbage {
                    self.garbage = true;
                    stats.other = stats.other.saturating_add(1);
                }
                continue;
            }
            // Scan to the end of the document or of the data, then copy that run at once.
            let start = i;
            let mut end_of_doc = false;
            while i < data.len() {
                let b = data[i];
                i += 1;
                if self.in_string {
                    if self.escape {
                        self.escape = false;
                    } else if b == b'\\' {
                        self.escape = true;
                    } else if b == b'"' {
                        self.in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            end_of_doc = true;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            self.append(data.get(start..i).unwrap_or_default(), max);
            if end_of_doc {
                self.complete(stats);
            }
        }
    }

    fn append(&mut self, run: &[u8], max: usize) {
        if self.overflow {
            return;
        }
        if self.buf.len().saturating_add(run.len()) > max {
            self.overflow = true;
            self.buf = Vec::new();
            return;
        }
        push_capped(&mut self.buf, run, max);
    }

    fn complete(&mut self, stats: &mut WatchStats) {
        if self.overflow {
            stats.other = stats.other.saturating_add(1);
        } else {
            match serde_json::from_slice::<JsonEvent>(&self.buf) {
                Ok(ev) => count_type(stats, ev.event_type.as_deref()),
                Err(_) => count_type(stats, None),
            }
        }
        self.in_doc = false;
        self.overflow = false;
        release(&mut self.buf);
    }

    fn finish(&mut self, stats: &mut WatchStats) {
        if self.in_doc {
            stats.other = stats.other.saturating_add(1);
        }
        self.in_doc = false;
        self.overflow = false;
        self.garbage = false;
        self.buf = Vec::new();
    }
}

// ---------------------------------------------------------------------------------------------
// Protobuf

#[derive(Debug, Default)]
struct FrameReader {
    header: [u8; 4],
    header_len: usize,
    in_frame: bool,
    remaining: usize,
    skipping: bool,
    buf: Vec<u8>,
}

impl FrameReader {
    fn feed(&mut self, data: &[u8], max: usize, stats: &mut WatchStats) {
        let mut rest = data;
        while !rest.is_empty() {
            if !self.in_frame {
                let take = (4 - self.header_len).min(rest.len());
                let (head, tail) = rest.split_at(take);
                self.header[self.header_len..self.header_len + take].copy_from_slice(head);
                self.header_len += take;
                rest = tail;
                if self.header_len < 4 {
                    return;
                }
                self.header_len = 0;
                let len = u32::from_be_bytes(self.header) as usize;
                self.in_frame = true;
                self.remaining = len;
                self.skipping = len > max;
                if !self.skipping {
                    self.buf.clear();
                    self.buf.reserve_exact(len);
                }
                if len == 0 {
                    self.complete(stats);
                }
                continue;
            }
            let take = self.remaining.min(rest.len());
            let (body, tail) = rest.split_at(take);
            if !self.skipping {
                self.buf.extend_from_slice(body);
            }
            self.remaining -= take;
            rest = tail;
            if self.remaining == 0 {
                self.complete(stats);
            }
        }
    }

    fn complete(&mut self, stats: &mut WatchStats) {
        if self.skipping {
            stats.other = stats.other.saturating_add(1);
        } else {
            count_type(stats, watch_event_type(&self.buf).as_deref());
        }
        self.in_frame = false;
        self.skipping = false;
        release(&mut self.buf);
    }

    fn finish(&mut self, stats: &mut WatchStats) {
        if self.in_frame || self.header_len > 0 {
            stats.other = stats.other.saturating_add(1);
        }
        self.in_frame = false;
        self.header_len = 0;
        self.skipping = false;
        self.remaining = 0;
        self.buf = Vec::new();
    }
}

/// The `type` of a protobuf `WatchEvent` frame (raw, or wrapped in `k8s\0`+Unknown).
fn watch_event_type(frame: &[u8]) -> Option<String> {
    let message = match frame.strip_prefix(PROTOBUF_MAGIC.as_slice()) {
        Some(envelope) => parse_unknown(envelope).ok()?.raw,
        None => frame,
    };
    let mut r = Reader::new(message);
    let mut event_type = None;
    // The whole message must parse: a frame that is not a WatchEvent counts as other.
    while let Some((field, value)) = r.next_field().ok()? {
        if let (1, Value::Bytes(s)) = (field, value) {
            event_type = Some(wire::string(s, 64));
        }
    }
    event_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::body::tests::{envelope, field_bytes, pod_pb};

    fn limits(max_frame: usize) -> BodyLimits {
        BodyLimits {
            max_watch_frame_bytes: max_frame,
            ..BodyLimits::default()
        }
    }

    fn stats(
        added: u64,
        modified: u64,
        deleted: u64,
        bookmark: u64,
        error: u64,
        other: u64,
        bytes: usize,
    ) -> WatchStats {
        WatchStats {
            added,
            modified,
            deleted,
            bookmark,
            error,
            other,
            bytes: bytes as u64,
        }
    }

    fn run(content_type: &str, pieces: &[&[u8]], max_frame: usize) -> WatchStats {
        let mut d = WatchDecoder::new(content_type, &limits(max_frame));
        for p in pieces {
            d.feed(p);
            assert!(d.buffered() <= max_frame);
        }
        d.finish();
        d.stats().clone()
    }

    /// Every split into two pieces, and byte-at-a-time, give the same stats as one piece.
    fn assert_split_invariant(content_type: &str, stream: &[u8], max_frame: usize) -> WatchStats {
        let whole = run(content_type, &[stream], max_frame);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(run(content_type, &[a, b], max_frame), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            run(content_type, &bytes, max_frame),
            whole,
            "byte at a time"
        );
        whole
    }

    const JSON_STREAM: &str = concat!(
        r#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a{b}","namespace":"x\"}{"},"spec":{"c":[1,2,{"d":"]"}]}}}"#,
        "\n",
        r#"{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"a","annotations":{"k":"line\nbreak \\\" {"}}}}"#,
        "\n",
        r#"{"type":"DELETED","object":{"kind":"Pod","metadata":{"name":"a"}}}"#,
        r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12345"}}}"#,
        "\r\n  \n",
        r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version","reason":"Expired","code":410}}"#,
        "\n",
        r#"{"type":"SOMETHING","object":{}}"#,
        "\n",
        r#"{"object":{}}"#,
        "\n",
        r#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"\u00e9\\"}}}"#,
        "\n",
    );

    #[test]
    fn json_stream_counts() {
        let s = assert_split_invariant("application/json", JSON_STREAM.as_bytes(), 1 << 20);
        assert_eq!(s, stats(2, 1, 1, 1, 1, 2, JSON_STREAM.len()));
        assert_eq!(s.events(), 8);
    }

    #[test]
    fn json_over_cap_event_is_skipped_not_buffered() {
        let big = format!(
            r#"{{"type":"ADDED","object":{{"kind":"ConfigMap","data":{{"k":"{}"}}}}}}"#,
            "}{\\\"".repeat(500)
        );
        let stream = format!(
            "{}\n{big}\n{}\n",
            r#"{"type":"ADDED","object":{}}"#, r#"{"type":"DELETED","object":{}}"#
        );
        let s = assert_split_invariant("application/json", stream.as_bytes(), 200);
        assert_eq!(s, stats(1, 0, 1, 0, 0, 1, stream.len()));
        // With room for it, the big event counts as ADDED.
        let s = run("application/json", &[stream.as_bytes()], 1 << 20);
        assert_eq!(s, stats(2, 0, 1, 0, 0, 0, stream.len()));
    }

    #[test]
    fn json_garbage_truncation_and_malformed() {
        // Garbage between events counts once per run; a malformed event is other.
        let stream = b"xx yy{\"type\":\"ADDED\"}]]{\"type\":1}{\"type\":\"DELETED\",\"object\":{";
        let s = assert_split_invariant("application/json", stream, 1 << 20);
        // "xx yy" (one run), "]]" (one run), {"type":1} malformed, the unfinished DELETED.
        assert_eq!(s, stats(1, 0, 0, 0, 0, 4, stream.len()));
        let mut d = WatchDecoder::new("application/json", &limits(100));
        d.feed(b"{\"type\":\"ADDED\"");
        d.finish();
        d.finish();
        assert_eq!(d.stats().other, 1);
        assert_eq!(d.buffered(), 0);
    }

    fn watch_event(event_type: &str, object: &[u8]) -> Vec<u8> {
        let mut raw_ext = Vec::new();
        field_bytes(1, object, &mut raw_ext);
        let mut ev = Vec::new();
        field_bytes(1, event_type.as_bytes(), &mut ev);
        field_bytes(2, &raw_ext, &mut ev);
        ev
    }

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = (message.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(message);
        out
    }

    const PB_WATCH: &str = "application/vnd.kubernetes.protobuf;stream=watch";

    #[test]
    fn protobuf_stream_counts() {
        let pod = pod_pb("web-0", "default");
        let mut stream = Vec::new();
        stream.extend(frame(&watch_event("ADDED", &pod)));
        stream.extend(frame(&watch_event("MODIFIED", &pod)));
        stream.extend(frame(&watch_event("MODIFIED", &pod)));
        stream.extend(frame(&watch_event("BOOKMARK", &pod)));
        // A frame wrapped in the k8s envelope (accepted too).
        stream.extend(frame(&envelope(
            "v1",
            "WatchEvent",
            &watch_event("DELETED", &pod),
        )));
        stream.extend(frame(&watch_event("ERROR", b"k8s\0")));
        stream.extend(frame(&watch_event("WHATEVER", b"")));
        stream.extend(frame(b"")); // empty frame: no type
        stream.extend(frame(b"\x0b\x0c")); // not a WatchEvent
        let s = assert_split_invariant(PB_WATCH, &stream, 1 << 20);
        assert_eq!(s, stats(1, 2, 1, 1, 1, 3, stream.len()));
    }

    #[test]
    fn protobuf_over_cap_frame_is_skipped() {
        let small = frame(&watch_event("ADDED", b"x"));
        let big = frame(&watch_event("MODIFIED", &vec![7u8; 5000]));
        let mut stream = small.clone();
        stream.extend(&big);
        stream.extend(&small);
        let s = assert_split_invariant(PB_WATCH, &stream, 100);
        assert_eq!(s, stats(2, 0, 0, 0, 0, 1, stream.len()));
        // A length prefix announcing 4 GiB is skipped without allocating.
        let mut d = WatchDecoder::new(PB_WATCH, &limits(100));
        d.feed(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(d.buffered(), 0);
        d.finish();
        assert_eq!(d.stats().other, 1);
    }

    #[test]
    fn protobuf_truncated_stream() {
        let ev = frame(&watch_event("ADDED", b"x"));
        for cut in 1..ev.len() {
            let s = run(PB_WATCH, &[&ev, &ev[..cut]], 1 << 20);
            assert_eq!((s.added, s.other), (1, 1), "cut {cut}");
        }
    }

    #[test]
    fn content_type_selects_the_framing() {
        let pb = frame(&watch_event("ADDED", b""));
        let s = run(
            "application/vnd.kubernetes.protobuf; stream=watch",
            &[&pb],
            100,
        );
        assert_eq!(s.added, 1);
        let s = run(
            "application/json;stream=watch",
            &[br#"{"type":"ADDED"}"#],
            100,
        );
        assert_eq!(s.added, 1);
        let s = run("", &[br#"{"type":"BOOKMARK"}"#], 100);
        assert_eq!(s.bookmark, 1);
    }
}
