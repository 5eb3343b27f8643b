//! Request and response bodies: what object they name, the `Status` of an error, the item count
//! of a list. Pure and bounded: gzip is inflated up to a cap, JSON is read into a small struct
//! (everything else is skipped with `IgnoredAny`), Kubernetes protobuf is read with a minimal
//! wire reader, apply-patch YAML with a line reader. Nothing here panics on input; problems are
//! reported in [`DecodedBody::errors`].
//!
//! Formats (apimachinery): JSON bodies are the object itself. Protobuf bodies are the 4-byte
//! magic `k8s\0` then a `runtime.Unknown` message {typeMeta{apiVersion=1, kind=2}=1, raw=2,
//! contentEncoding=3, contentType=4}, `raw` being the object's own message. Field numbers used
//! (`apimachinery/pkg/apis/meta/v1/generated.proto`): objects carry ObjectMeta as field 1
//! {name=1, generateName=2, namespace=3, selfLink=4, uid=5, resourceVersion=6, ...}; lists carry
//! ListMeta {selfLink=1, resourceVersion=2, continue=3} as field 1 and items as repeated field 2;
//! `metav1.Status` is {metadata(ListMeta)=1, status=2, message=3, reason=4, details=5, code=6}.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::k8s::api_request::{ObjectMeta, StatusInfo};
use crate::vocabulary::text;

/// The Kubernetes protobuf magic prefix.
pub const PROTOBUF_MAGIC: &[u8; 4] = b"k8s\0";

/// Longest string kept from a body (names are at most 253 bytes; messages can be long).
const MAX_STRING_LEN: usize = 1024;

/// Caps for body and watch decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body decoded, after gzip (gzip output beyond it is an error).
    pub max_decoded_bytes: usize,
    /// Largest watch event kept for decoding; longer ones are skipped and counted as `other`.
    pub max_watch_frame_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_decoded_bytes: 16 * 1024 * 1024,
            // etcd's default object limit is 1.5 MiB; an event is the object plus a few bytes.
            max_watch_frame_bytes: 4 << 20,
        }
    }
}

/// Why a gzip body could not be inflated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("decompressed body larger than the {limit}-byte cap")]
    TooLarge { limit: usize },
    #[error("truncated gzip stream")]
    Truncated,
    #[error("corrupt gzip stream: {0}")]
    Corrupt(String),
}

/// What a body says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedBody {
    /// The object the body carries (create/update/apply requests, get responses, lists).
    pub object: Option<ObjectMeta>,
    /// A `Status` body (errors, and some successful deletes).
    pub status: Option<StatusInfo>,
    /// Items of a `*List`.
    pub list_items: Option<u64>,
    pub errors: Vec<String>,
}

/// Inflates a gzip stream (all members, as Go's `gzip.Reader` does) into at most `max_output`
/// bytes. The output buffer never grows past `max_output`; more output is [`BodyError::TooLarge`]
/// as soon as it is seen, so a small bomb costs at most `max_output` bytes and the time to
/// inflate them.
pub fn gunzip_capped(data: &[u8], max_output: usize) -> Result<Vec<u8>, BodyError> {
    if data.is_empty() {
        return Err(BodyError::Truncated);
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(data);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(BodyError::Truncated);
            }
            Err(e) => return Err(BodyError::Corrupt(e.to_string())),
        };
        let needed = out.len().saturating_add(n);
        if needed > max_output {
            return Err(BodyError::TooLarge { limit: max_output });
        }
        if needed > out.capacity() {
            // Double as usual, but never past the cap.
            let target = out
                .capacity()
                .saturating_mul(2)
                .max(needed)
                .max(64 * 1024)
                .min(max_output);
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    Ok(out)
}

/// How a body is written, from its media type and first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Protobuf,
    Yaml,
    /// Anything else: pod logs, exec streams, plain text, unknown media types.
    Other,
}

/// The media type without parameters, lower-cased.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn first_non_ws(data: &[u8]) -> Option<u8> {
    data.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// The format of a body (after content-encoding), used by the decoders here and by the capture
/// policy when it renders the same bytes.
pub fn body_format(content_type: &str, data: &[u8]) -> BodyFormat {
    let media = media_type(content_type);
    // The magic cannot start JSON or YAML text, so it wins over a mislabelled media type.
    if data.starts_with(PROTOBUF_MAGIC) || media == "application/vnd.kubernetes.protobuf" {
        return BodyFormat::Protobuf;
    }
    match media.as_str() {
        "application/json" => BodyFormat::Json,
        m if m.ends_with("+json") => BodyFormat::Json,
        "application/apply-patch+yaml" | "application/yaml" | "application/x-yaml" => {
            // JSON is YAML: a JSON apply patch is read as JSON.
            if first_non_ws(data) == Some(b'{') {
                BodyFormat::Json
            } else {
                BodyFormat::Yaml
            }
        }
        "" if matches!(first_non_ws(data), Some(b'{') | Some(b'[')) => BodyFormat::Json,
        _ => BodyFormat::Other,
    }
}

/// Why a body's bytes could not be had as sent before content-encoding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("gzip: {0}")]
    Gzip(BodyError),
    #[error("unsupported content-encoding {0:?}")]
    UnsupportedEncoding(String),
}

/// A body with its content-encoding undone: borrowed when there was none, gzip inflated up to
/// `max_decoded_bytes` otherwise.
pub fn inflate<'a>(
    content_encoding: &str,
    body: &'a [u8],
    max_decoded_bytes: usize,
) -> Result<Cow<'a, [u8]>, Unreadable> {
    let encoding = content_encoding.trim().to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(Cow::Borrowed(body)),
        "gzip" | "x-gzip" => gunzip_capped(body, max_decoded_bytes)
            .map(Cow::Owned)
            .map_err(Unreadable::Gzip),
        other => Err(Unreadable::UnsupportedEncoding(truncate(other, 64))),
    }
}

/// Decodes a body given its `Content-Type` and `Content-Encoding`. Unknown content types (pod
/// logs, exec streams...) give an empty result without errors.
pub fn decode_body(
    content_type: &str,
    content_encoding: &str,
    body: &[u8],
    limits: &BodyLimits,
) -> DecodedBody {
    if body.is_empty() {
        return DecodedBody::default();
    }
    decode_inflated(
        content_type,
        inflate(content_encoding, body, limits.max_decoded_bytes).as_deref(),
        limits,
    )
}

/// Decodes a body whose content-encoding was undone already (see [`inflate`]), or reports why
/// it could not be.
pub fn decode_inflated(
    content_type: &str,
    data: Result<&[u8], &Unreadable>,
    limits: &BodyLimits,
) -> DecodedBody {
    let mut out = DecodedBody::default();
    let data = match data {
        Ok(data) => data,
        Err(unreadable) => {
            out.errors.push(unreadable.to_string());
            return out;
        }
    };
    if data.is_empty() {
        return out;
    }
    if data.len() > limits.max_decoded_bytes {
        out.errors.push(format!(
            "body of {} bytes over the {}-byte cap, not decoded",
            data.len(),
            limits.max_decoded_bytes
        ));
        return out;
    }
    if content_type.to_ascii_lowercase().contains("stream=watch") {
        out.errors
            .push("watch stream: decode with WatchDecoder".to_string());
        return out;
    }
    match body_format(content_type, data) {
        BodyFormat::Json => decode_json(data, &mut out),
        BodyFormat::Protobuf => decode_protobuf(data, &mut out),
        BodyFormat::Yaml => decode_apply_yaml(data, &mut out),
        BodyFormat::Other => {}
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Builds the result from the top-level fields common to JSON, protobuf and YAML.
fn fill(out: &mut DecodedBody, top: TopFields) {
    if top.kind == "Status" {
        out.status = Some(StatusInfo {
            status: top.status,
            reason: top.reason,
            message: top.message,
            code: top.code.and_then(|c| u16::try_from(c).ok()),
        });
        return;
    }
    if top.kind.ends_with("List") && top.items.is_some() {
        out.list_items = top.items;
    }
    let meta = ObjectMeta {
        api_version: top.api_version,
        kind: top.kind,
        name: top.name,
        namespace: top.namespace,
        resource_version: top.resource_version,
    };
    if meta != ObjectMeta::default() {
        out.object = Some(meta);
    }
}

#[derive(Debug, Default)]
struct TopFields {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
    resource_version: String,
    status: String,
    reason: String,
    message: String,
    code: Option<i64>,
    items: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsonDoc {
    #[serde(rename = "apiVersion")]
    api_version: LenientStr,
    kind: LenientStr,
    metadata: LenientMeta,
    status: LenientStr,
    reason: LenientStr,
    message: LenientStr,
    code: LenientInt,
    items: ItemCount,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsonMeta {
    name: LenientStr,
    namespace: LenientStr,
    #[serde(rename = "resourceVersion")]
    resource_version: LenientStr,
}

fn decode_json(data: &[u8], out: &mut DecodedBody) {
    // A JSON patch is an array of operations: it names no object.
    if first_non_ws(data) != Some(b'{') {
        return;
    }
    match serde_json::from_slice::<JsonDoc>(data) {
        Ok(doc) => {
            let meta = doc.metadata.0.unwrap_or_default();
            fill(
                out,
                TopFields {
                    api_version: doc.api_version.0.unwrap_or_default(),
                    kind: doc.kind.0.unwrap_or_default(),
                    name: meta.name.0.unwrap_or_default(),
                    namespace: meta.namespace.0.unwrap_or_default(),
                    resource_version: meta.resource_version.0.unwrap_or_default(),
                    status: doc.status.0.unwrap_or_default(),
                    reason: doc.reason.0.unwrap_or_default(),
                    message: doc.message.0.unwrap_or_default(),
                    code: doc.code.0,
                    items: doc.items.0,
                },
            );
        }
        Err(e) => out.errors.push(format!("json: {e}")),
    }
}

/// Drains whatever value is next so that a field of an unexpected type is ignored, not an error.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Generates a lenient deserializer: `$on_str`, `$on_i64`, `$on_u64`, `$on_seq`, `$on_map`
/// produce the value; any other JSON type gives the default.
macro_rules! lenient {
    ($name:ident, $inner:ty, $expect:literal,
     str: |$s:ident| $on_str:expr,
     i64: |$i:ident| $on_i64:expr,
     u64: |$u:ident| $on_u64:expr,
     seq: |$sq:ident| $on_seq:expr,
     map: |$mp:ident| $on_map:expr) => {
        #[derive(Default)]
        struct $name(Option<$inner>);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expect)
                    }
                    fn visit_str<E: de::Error>(self, $s: &str) -> Result<$name, E> {
                        Ok($name($on_str))
                    }
                    fn visit_i64<E: de::Error>(self, $i: i64) -> Result<$name, E> {
                        Ok($name($on_i64))
                    }
                    fn visit_u64<E: de::Error>(self, $u: u64) -> Result<$name, E> {
                        Ok($name($on_u64))
                    }
                    fn visit_f64<E: de::Error>(self, _: f64) -> Result<$name, E> {
                        Ok($name(None))
                    }
                    fn visit_bool<E: de::Error>(self, _: bool) -> Result<$name, E> {
                        Ok($name(None))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name(None))
                    }
                    fn visit_none<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name(None))
                    }
                    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<$name, D2::Error> {
                        $name::deserialize(d)
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, $sq: A) -> Result<$name, A::Error> {
                        Ok($name($on_seq))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, $mp: A) -> Result<$name, A::Error> {
                        Ok($name($on_map))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

lenient!(LenientStr, String, "a string",
    str: |s| Some(truncate(s, MAX_STRING_LEN)),
    i64: |_i| None,
    u64: |_u| None,
    seq: |seq| { drain_seq(seq)?; None },
    map: |map| { drain_map(map)?; None });

lenient!(LenientInt, i64, "an integer",
    str: |_s| None,
    i64: |i| Some(i),
    u64: |u| i64::try_from(u).ok(),
    seq: |seq| { drain_seq(seq)?; None },
    map: |map| { drain_map(map)?; None });

lenient!(ItemCount, u64, "an array",
    str: |_s| None,
    i64: |_i| None,
    u64: |_u| None,
    seq: |seq| Some(count_seq(seq)?),
    map: |map| { drain_map(map)?; None });

lenient!(LenientMeta, JsonMeta, "an object",
    str: |_s| None,
    i64: |_i| None,
    u64: |_u| None,
    seq: |seq| { drain_seq(seq)?; None },
    map: |map| Some(JsonMeta::deserialize(de::value::MapAccessDeserializer::new(map))?));

fn count_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<u64, A::Error> {
    let mut n = 0u64;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Protobuf

/// A minimal protobuf wire-format reader over a slice: no allocation, every read bounds-checked.
pub(crate) mod wire {
    use std::fmt;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Value<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
        Fixed32(u32),
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum WireError {
        Truncated,
        BadVarint,
        BadWireType(u8),
        FieldZero,
    }

    impl fmt::Display for WireError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                WireError::Truncated => f.write_str("truncated message"),
                WireError::BadVarint => f.write_str("varint longer than 10 bytes"),
                WireError::BadWireType(t) => write!(f, "unsupported wire type {t}"),
                WireError::FieldZero => f.write_str("field number 0"),
            }
        }
    }

    pub struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        pub fn new(buf: &'a [u8]) -> Self {
            Reader { buf, pos: 0 }
        }

        fn varint(&mut self) -> Result<u64, WireError> {
            let mut v: u64 = 0;
            for i in 0..10 {
                let b = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
                self.pos += 1;
                v |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err(WireError::BadVarint)
        }

        fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
            let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
            let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
            self.pos = end;
            Ok(s)
        }

        /// The next field, `None` at the end of the buffer. Groups (wire types 3 and 4, unused by
        /// Kubernetes) are errors.
        pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, WireError> {
            if self.pos >= self.buf.len() {
                return Ok(None);
            }
            let key = self.varint()?;
            let field = u32::try_from(key >> 3).map_err(|_| WireError::BadVarint)?;
            if field == 0 {
                return Err(WireError::FieldZero);
            }
            let value = match (key & 7) as u8 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    Value::Fixed64(u64::from_le_bytes(a))
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                    Value::Bytes(self.take(len)?)
                }
                5 => {
                    let b = self.take(4)?;
                    let mut a = [0u8; 4];
                    a.copy_from_slice(b);
                    Value::Fixed32(u32::from_le_bytes(a))
                }
                t => return Err(WireError::BadWireType(t)),
            };
            Ok(Some((field, value)))
        }
    }

    /// Lossy UTF-8, truncated.
    pub fn string(b: &[u8], max: usize) -> String {
        super::truncate(&String::from_utf8_lossy(b), max)
    }
}

use wire::{Reader, Value, WireError};

/// A decoded `runtime.Unknown` envelope.
pub(crate) struct Unknown<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
    pub content_encoding: String,
}

/// Parses `runtime.Unknown` (after the magic).
pub(crate) fn parse_unknown(buf: &[u8]) -> Result<Unknown<'_>, WireError> {
    let mut u = Unknown {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
    };
    let mut r = Reader::new(buf);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Bytes(type_meta)) => {
                let mut t = Reader::new(type_meta);
                while let Some((f, v)) = t.next_field()? {
                    match (f, v) {
                        (1, Value::Bytes(s)) => u.api_version = wire::string(s, MAX_STRING_LEN),
                        (2, Value::Bytes(s)) => u.kind = wire::string(s, MAX_STRING_LEN),
                        _ => {}
                    }
                }
            }
            (2, Value::Bytes(raw)) => u.raw = raw,
            (3, Value::Bytes(s)) => u.content_encoding = wire::string(s, MAX_STRING_LEN),
            _ => {}
        }
    }
    Ok(u)
}

fn decode_protobuf(data: &[u8], out: &mut DecodedBody) {
    let Some(envelope) = data.strip_prefix(PROTOBUF_MAGIC.as_slice()) else {
        out.errors.push("protobuf: no k8s magic prefix".to_string());
        return;
    };
    let unknown = match parse_unknown(envelope) {
        Ok(u) => u,
        Err(e) => {
            out.errors.push(format!("protobuf envelope: {e}"));
            return;
        }
    };
    if !unknown.content_encoding.is_empty() {
        out.errors.push(format!(
            "protobuf: unsupported inner content encoding {:?}",
            unknown.content_encoding
        ));
        return;
    }
    let mut top = TopFields {
        api_version: unknown.api_version,
        kind: unknown.kind,
        ..TopFields::default()
    };
    if let Err(e) = read_pb_object(unknown.raw, &mut top) {
        out.errors.push(format!("protobuf {}: {e}", top.kind));
        // Keep the type: it was decoded.
        top = TopFields {
            api_version: top.api_version,
            kind: top.kind,
            ..TopFields::default()
        };
    }
    fill(out, top);
}

/// Reads the fields of `raw` that [`TopFields`] needs, by kind.
fn read_pb_object(raw: &[u8], top: &mut TopFields) -> Result<(), WireError> {
    let mut r = Reader::new(raw);
    if top.kind == "Status" {
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (2, Value::Bytes(s)) => top.status = wire::string(s, MAX_STRING_LEN),
                (3, Value::Bytes(s)) => top.message = wire::string(s, MAX_STRING_LEN),
                (4, Value::Bytes(s)) => top.reason = wire::string(s, MAX_STRING_LEN),
                // int32: negative values are sign-extended to 64 bits on the wire.
                (6, Value::Varint(v)) => top.code = Some(i64::from(v as i32)),
                _ => {}
            }
        }
    } else if top.kind.ends_with("List") {
        let mut items = 0u64;
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1, Value::Bytes(list_meta)) => {
                    let mut m = Reader::new(list_meta);
                    while let Some((f, v)) = m.next_field()? {
                        if let (2, Value::Bytes(s)) = (f, v) {
                            top.resource_version = wire::string(s, MAX_STRING_LEN);
                        }
                    }
                }
                (2, Value::Bytes(_)) => items += 1,
                _ => {}
            }
        }
        top.items = Some(items);
    } else {
        while let Some((field, value)) = r.next_field()? {
            if let (1, Value::Bytes(meta)) = (field, value) {
                let mut m = Reader::new(meta);
                while let Some((f, v)) = m.next_field()? {
                    match (f, v) {
                        (1, Value::Bytes(s)) => top.name = wire::string(s, MAX_STRING_LEN),
                        (3, Value::Bytes(s)) => top.namespace = wire::string(s, MAX_STRING_LEN),
                        (6, Value::Bytes(s)) => {
                            top.resource_version = wire::string(s, MAX_STRING_LEN)
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Apply-patch YAML

/// A line reader for the first YAML document of an apply patch: top-level `apiVersion:` and
/// `kind:`, and `name:`/`namespace:` directly under a top-level `metadata:` (block form, or a
/// one-line flow mapping `metadata: {name: x, namespace: y}`).
///
/// Limits (documented, by design): no anchors/aliases, tags other than a leading `!!str`,
/// multi-line or block scalars (`|`, `>`), multi-line flow mappings, or keys written in other
/// styles (`? key`); such values are left empty. Scalars may be plain, single- or
/// double-quoted (simple escapes), with trailing ` #` comments. The first document ends at `---`
/// or `...`.
fn decode_apply_yaml(data: &[u8], out: &mut DecodedBody) {
    let text = String::from_utf8_lossy(data);
    let mut top = TopFields::default();
    let mut in_metadata = false;
    let mut child_indent: Option<usize> = None;
    let mut seen_content = false;
    for raw_line in text.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.trim().is_empty() {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && (trimmed.starts_with("---") || trimmed.starts_with("...")) {
            if seen_content {
                break;
            }
            continue;
        }
        seen_content = true;
        if indent == 0 {
            in_metadata = false;
            child_indent = None;
            let Some((key, value)) = split_key(trimmed) else {
                continue;
            };
            match key.as_str() {
                "apiVersion" => top.api_version = yaml_scalar(value),
                "kind" => top.kind = yaml_scalar(value),
                "metadata" => {
                    let value = strip_comment(value).trim();
                    if value.is_empty() {
                        in_metadata = true;
                    } else if let Some(inner) =
                        value.strip_prefix('{').and_then(|v| v.strip_suffix('}'))
                    {
                        for entry in inner.split(',') {
                            if let Some((k, v)) = split_key(entry.trim()) {
                                match k.as_str() {
                                    "name" => top.name = yaml_scalar(v),
                                    "namespace" => top.namespace = yaml_scalar(v),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        } else if in_metadata {
            let ci = *child_indent.get_or_insert(indent);
            if indent != ci {
                continue; // deeper (labels, annotations...) or odd indentation
            }
            if let Some((key, value)) = split_key(trimmed) {
                match key.as_str() {
                    "name" => top.name = yaml_scalar(value),
                    "namespace" => top.namespace = yaml_scalar(value),
                    _ => {}
                }
            }
        }
    }
    fill(out, top);
}

/// `key: value` -> (unquoted key, raw value). `None` when the line is not a mapping entry.
fn split_key(line: &str) -> Option<(String, &str)> {
    if line.starts_with("- ") || line == "-" {
        return None;
    }
    let (key, rest) = if let Some(q) = line.strip_prefix('"') {
        let end = q.find('"')?;
        (q[..end].to_string(), q.get(end + 1..)?)
    } else if let Some(q) = line.strip_prefix('\'') {
        let end = q.find('\'')?;
        (q[..end].to_string(), q.get(end + 1..)?)
    } else {
        // A plain key ends at ": " or a final ':'.
        let end = match line.find(": ") {
            Some(i) => i,
            None => line.strip_suffix(':').map(str::len)?,
        };
        (line[..end].trim_end().to_string(), &line[end..])
    };
    let rest = rest.trim_start();
    let value = rest.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with(' ') || value.starts_with('\t')) {
        return None;
    }
    Some((key, value.trim()))
}

fn strip_comment(value: &str) -> &str {
    if value.starts_with('#') {
        return "";
    }
    match value.find(" #") {
        Some(i) => &value[..i],
        None => value,
    }
}

/// A one-line YAML scalar as a string; empty for what this reader does not handle.
fn yaml_scalar(value: &str) -> String {
    let value = value.trim();
    let value = value.strip_prefix("!!str ").unwrap_or(value).trim_start();
    if let Some(q) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return truncate(&out, MAX_STRING_LEN),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return String::new(); // unterminated: a multi-line scalar
    }
    if let Some(q) = value.strip_prefix('\'') {
        let mut out = String::new();
        let mut rest = q;
        loop {
            match rest.find('\'') {
                Some(i) if rest[i + 1..].starts_with('\'') => {
                    out.push_str(&rest[..=i]);
                    rest = &rest[i + 2..];
                }
                Some(i) => {
                    out.push_str(&rest[..i]);
                    return truncate(&out, MAX_STRING_LEN);
                }
                None => return String::new(),
            }
        }
    }
    let value = strip_comment(value).trim_end();
    if value.is_empty()
        || value == "~"
        || value == "null"
        || value.starts_with(['|', '>', '&', '*', '!', '{', '[', '@', '`'])
    {
        return String::new();
    }
    truncate(value, MAX_STRING_LEN)
}

fn truncate(s: &str, max: usize) -> String {
    text::prefix_on_char_boundary(s, max).to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, Instant};

    // --- protobuf builders, shared with the watch tests ---

    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn field_bytes(field: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(field) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    pub fn field_varint(field: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(field) << 3, out);
        varint(v, out);
    }

    pub fn object_meta(name: &str, namespace: &str, rv: &str) -> Vec<u8> {
        let mut m = Vec::new();
        field_bytes(1, name.as_bytes(), &mut m);
        field_bytes(2, b"gen-", &mut m);
        field_bytes(3, namespace.as_bytes(), &mut m);
        field_bytes(5, b"5b1f1c3e-uid", &mut m);
        field_bytes(6, rv.as_bytes(), &mut m);
        field_varint(7, 3, &mut m); // generation
        m
    }

    /// `k8s\0` + Unknown{typeMeta, raw}.
    pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        field_bytes(1, api_version.as_bytes(), &mut type_meta);
        field_bytes(2, kind.as_bytes(), &mut type_meta);
        let mut unknown = Vec::new();
        field_bytes(1, &type_meta, &mut unknown);
        field_bytes(2, raw, &mut unknown);
        field_bytes(3, b"", &mut unknown);
        field_bytes(4, b"", &mut unknown);
        let mut out = PROTOBUF_MAGIC.to_vec();
        out.extend_from_slice(&unknown);
        out
    }

    pub fn pod_pb(name: &str, namespace: &str) -> Vec<u8> {
        let mut pod = Vec::new();
        field_bytes(1, &object_meta(name, namespace, "1234"), &mut pod);
        let mut spec = Vec::new();
        field_bytes(2, b"container-bytes", &mut spec);
        field_bytes(2, &spec, &mut pod);
        field_bytes(3, b"\x0a\x07Running", &mut pod);
        envelope("v1", "Pod", &pod)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    const PB: &str = "application/vnd.kubernetes.protobuf";

    fn limits() -> BodyLimits {
        BodyLimits::default()
    }

    fn meta(api_version: &str, kind: &str, name: &str, ns: &str, rv: &str) -> ObjectMeta {
        ObjectMeta {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.into(),
            resource_version: rv.into(),
        }
    }

    // --- gzip ---

    #[test]
    fn gunzip_round_trip_and_exact_cap() {
        let data = b"hello, apiserver".repeat(1000);
        let gz = gzip(&data);
        assert_eq!(gunzip_capped(&gz, data.len()).unwrap(), data);
        assert_eq!(
            gunzip_capped(&gz, data.len() - 1),
            Err(BodyError::TooLarge {
                limit: data.len() - 1
            })
        );
        // Multi-member streams are read whole (Go's gzip.Reader does the same).
        let mut two = gzip(b"ab");
        two.extend_from_slice(&gzip(b"cd"));
        assert_eq!(gunzip_capped(&two, 10).unwrap(), b"abcd");
    }

    #[test]
    fn gzip_bomb_is_stopped_at_the_cap_quickly() {
        // 100 members of 1 MiB of zeros: 100 MiB inflated, under 1 MiB on the wire.
        let member = gzip(&vec![0u8; 1024 * 1024]);
        let bomb: Vec<u8> = member
            .iter()
            .copied()
            .cycle()
            .take(member.len() * 100)
            .collect();
        assert!(bomb.len() < 1024 * 1024, "bomb is {} bytes", bomb.len());
        let start = Instant::now();
        let cap = 4 * 1024 * 1024;
        assert_eq!(
            gunzip_capped(&bomb, cap),
            Err(BodyError::TooLarge { limit: cap })
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        let d = decode_body(
            "application/json",
            "gzip",
            &bomb,
            &BodyLimits {
                max_decoded_bytes: cap,
                ..limits()
            },
        );
        assert_eq!(d.errors.len(), 1);
        assert!(d.errors[0].contains("cap"), "{:?}", d.errors);
    }

    #[test]
    fn truncated_and_corrupt_gzip() {
        let gz = gzip(&b"{\"kind\":\"Pod\"}".repeat(100));
        assert_eq!(gunzip_capped(&[], 100), Err(BodyError::Truncated));
        for cut in [1, 5, 10, gz.len() / 2, gz.len() - 4, gz.len() - 1] {
            let r = gunzip_capped(&gz[..cut], 1 << 20);
            assert!(r.is_err(), "cut at {cut} gave {r:?}");
        }
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 100),
            Err(BodyError::Corrupt(_))
        ));
        let mut bad = gz.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad[mid + 1] ^= 0xff;
        assert!(gunzip_capped(&bad, 1 << 20).is_err());
        let d = decode_body("application/json", "gzip", &gz[..gz.len() / 2], &limits());
        assert_eq!(d.errors, vec!["gzip: truncated gzip stream".to_string()]);
    }

    #[test]
    fn gzip_json_body() {
        let body = gzip(br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","namespace":"n","resourceVersion":"7"}}"#);
        let d = decode_body("application/json", "gzip", &body, &limits());
        assert_eq!(d.object, Some(meta("v1", "ConfigMap", "c", "n", "7")));
        assert!(d.errors.is_empty());
    }

    // --- JSON ---

    #[test]
    fn json_object() {
        let body = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","generateName":"web-","namespace":"default","uid":"u","resourceVersion":"4242","labels":{"app":"web"},"ownerReferences":[{"kind":"StatefulSet"}]},"spec":{"containers":[{"name":"c","image":"nginx"}]},"status":{"phase":"Running"}}"#;
        let d = decode_body("application/json", "", body, &limits());
        assert_eq!(
            d.object,
            Some(meta("v1", "Pod", "web-0", "default", "4242"))
        );
        assert_eq!(d.status, None);
        assert_eq!(d.list_items, None);
        assert!(d.errors.is_empty());
    }

    #[test]
    fn json_status() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#;
        let d = decode_body("application/json; charset=utf-8", "", body, &limits());
        assert_eq!(
            d.status,
            Some(StatusInfo {
                status: "Failure".into(),
                reason: "NotFound".into(),
                message: "pods \"x\" not found".into(),
                code: Some(404),
            })
        );
        assert_eq!(d.object, None);
    }

    #[test]
    fn json_list() {
        let body = br#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"99","continue":"abc"},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}},{}]}"#;
        let d = decode_body("application/json", "", body, &limits());
        assert_eq!(d.list_items, Some(3));
        assert_eq!(d.object, Some(meta("v1", "PodList", "", "", "99")));
        let empty = br#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[]}"#;
        assert_eq!(
            decode_body("application/json", "", empty, &limits()).list_items,
            Some(0)
        );
        let null = br#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{},"items":null}"#;
        assert_eq!(
            decode_body("application/json", "", null, &limits()).list_items,
            None
        );
    }

    #[test]
    fn json_wrong_types_are_ignored() {
        let body = br#"{"kind":5,"apiVersion":["v1"],"metadata":"x","code":"404","items":{"a":1},"message":{"m":[1,2]}}"#;
        let d = decode_body("application/json", "", body, &limits());
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.object, None);
        let status = br#"{"kind":"Status","status":"Failure","code":-1}"#;
        let d = decode_body("application/json", "", status, &limits());
        assert_eq!(d.status.unwrap().code, None);
    }

    #[test]
    fn patches() {
        let merge = br#"{"metadata":{"labels":{"a":"b"}}}"#;
        let d = decode_body("application/merge-patch+json", "", merge, &limits());
        assert_eq!(d, DecodedBody::default());
        let smp = br#"{"metadata":{"name":"d","namespace":"n"},"spec":{"replicas":3}}"#;
        let d = decode_body("application/strategic-merge-patch+json", "", smp, &limits());
        assert_eq!(d.object, Some(meta("", "", "d", "n", "")));
        let json_patch = br#"[{"op":"replace","path":"/spec/replicas","value":3}]"#;
        let d = decode_body("application/json-patch+json", "", json_patch, &limits());
        assert_eq!(d, DecodedBody::default());
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        for body in [&b"{"[..], b"{\"kind\":", b"{\"kind\":\"Pod\"", b"{]"] {
            let d = decode_body("application/json", "", body, &limits());
            assert_eq!(d.errors.len(), 1, "{body:?}");
            assert!(d.errors[0].starts_with("json: "));
        }
        // Invalid UTF-8 inside a skipped string is not an error (Go substitutes U+FFFD).
        let d = decode_body("application/json", "", b"{\"a\":\"\xff\xfe\"}", &limits());
        assert!(d.errors.is_empty());
        // Deep nesting in skipped values is walked without recursion: no stack overflow.
        let deep = format!(
            "{{\"kind\":\"PodList\",\"a\":{}{},\"items\":[{}1{}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000),
            "{\"x\":".repeat(50_000),
            "}".repeat(50_000)
        );
        let d = decode_body("application/json", "", deep.as_bytes(), &limits());
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.list_items, Some(1));
    }

    #[test]
    fn unknown_types_and_encodings() {
        assert_eq!(
            decode_body("text/plain", "", b"log line\n", &limits()),
            DecodedBody::default()
        );
        assert_eq!(
            decode_body("application/json", "", b"", &limits()),
            DecodedBody::default()
        );
        let d = decode_body("application/json", "br", b"xx", &limits());
        assert_eq!(
            d.errors,
            vec!["unsupported content-encoding \"br\"".to_string()]
        );
        let d = decode_body(
            "",
            "",
            br#"{"kind":"Pod","metadata":{"name":"p"}}"#,
            &limits(),
        );
        assert_eq!(d.object, Some(meta("", "Pod", "p", "", "")));
        let d = decode_body(
            "application/json",
            "",
            &[b' '; 100],
            &BodyLimits {
                max_decoded_bytes: 10,
                ..limits()
            },
        );
        assert_eq!(d.errors.len(), 1);
    }

    // --- protobuf ---

    #[test]
    fn protobuf_pod() {
        let d = decode_body(PB, "", &pod_pb("web-0", "default"), &limits());
        assert_eq!(
            d.object,
            Some(meta("v1", "Pod", "web-0", "default", "1234"))
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
    }

    #[test]
    fn protobuf_configmap() {
        let mut cm = Vec::new();
        field_bytes(
            1,
            &object_meta("kube-root-ca.crt", "kube-system", "77"),
            &mut cm,
        );
        // data map entry {key=1, value=2}
        let mut entry = Vec::new();
        field_bytes(1, b"ca.crt", &mut entry);
        field_bytes(2, b"-----BEGIN CERTIFICATE-----", &mut entry);
        field_bytes(2, &entry, &mut cm);
        let body = envelope("v1", "ConfigMap", &cm);
        let d = decode_body("application/vnd.kubernetes.protobuf", "", &body, &limits());
        assert_eq!(
            d.object,
            Some(meta(
                "v1",
                "ConfigMap",
                "kube-root-ca.crt",
                "kube-system",
                "77"
            ))
        );
        let d = decode_body("", "gzip", &gzip(&body), &limits());
        assert_eq!(d.object.unwrap().name, "kube-root-ca.crt");
    }

    #[test]
    fn protobuf_status() {
        let mut st = Vec::new();
        field_bytes(1, b"", &mut st);
        field_bytes(2, b"Failure", &mut st);
        field_bytes(3, b"configmaps \"x\" already exists", &mut st);
        field_bytes(4, b"AlreadyExists", &mut st);
        let mut details = Vec::new();
        field_bytes(1, b"x", &mut details);
        field_bytes(5, &details, &mut st);
        field_varint(6, 409, &mut st);
        let d = decode_body(PB, "", &envelope("v1", "Status", &st), &limits());
        assert_eq!(
            d.status,
            Some(StatusInfo {
                status: "Failure".into(),
                reason: "AlreadyExists".into(),
                message: "configmaps \"x\" already exists".into(),
                code: Some(409),
            })
        );
        // A negative int32 code is a 10-byte varint.
        let mut neg = Vec::new();
        field_varint(6, (-5i64) as u64, &mut neg);
        let d = decode_body(PB, "", &envelope("v1", "Status", &neg), &limits());
        assert_eq!(d.status.unwrap().code, None);
    }

    #[test]
    fn protobuf_list() {
        let mut list = Vec::new();
        let mut list_meta = Vec::new();
        field_bytes(2, b"5555", &mut list_meta);
        field_bytes(3, b"continue-token", &mut list_meta);
        field_bytes(1, &list_meta, &mut list);
        for name in ["a", "b", "c", "d"] {
            let mut pod = Vec::new();
            field_bytes(1, &object_meta(name, "ns", "1"), &mut pod);
            field_bytes(2, &pod, &mut list);
        }
        let d = decode_body(PB, "", &envelope("v1", "PodList", &list), &limits());
        assert_eq!(d.list_items, Some(4));
        assert_eq!(d.object, Some(meta("v1", "PodList", "", "", "5555")));
        let d = decode_body(
            PB,
            "",
            &envelope("apps/v1", "DeploymentList", &[]),
            &limits(),
        );
        assert_eq!(d.list_items, Some(0));
    }

    #[test]
    fn protobuf_errors() {
        let d = decode_body(PB, "", b"\x0a\x02hi", &limits());
        assert_eq!(d.errors, vec!["protobuf: no k8s magic prefix".to_string()]);
        let pod = pod_pb("web-0", "default");
        assert_eq!(
            decode_body(PB, "", &pod[..4], &limits()),
            DecodedBody::default()
        );
        for cut in 5..pod.len() {
            let d = decode_body(PB, "", &pod[..cut], &limits());
            // Either an error, or a prefix that happens to end on a field boundary.
            assert!(!d.errors.is_empty() || d.object.is_some(), "cut {cut}");
        }
        let d = decode_body(PB, "", b"k8s\0\x0b", &limits());
        assert_eq!(
            d.errors,
            vec!["protobuf envelope: unsupported wire type 3".to_string()]
        );
        let d = decode_body(
            PB,
            "",
            b"k8s\0\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            &limits(),
        );
        assert_eq!(
            d.errors,
            vec!["protobuf envelope: varint longer than 10 bytes".to_string()]
        );
        let d = decode_body(PB, "", b"k8s\0\x12\xff\xff\xff\xff\x0f", &limits());
        assert_eq!(
            d.errors,
            vec!["protobuf envelope: truncated message".to_string()]
        );
        // Garbage inside raw keeps the envelope's type.
        let d = decode_body(PB, "", &envelope("v1", "Pod", b"\x0a\x05ab"), &limits());
        assert_eq!(d.object, Some(meta("v1", "Pod", "", "", "")));
        assert_eq!(
            d.errors,
            vec!["protobuf Pod: truncated message".to_string()]
        );
        let d = decode_body(
            "application/vnd.kubernetes.protobuf;stream=watch",
            "",
            &pod,
            &limits(),
        );
        assert_eq!(d.errors.len(), 1);
    }

    // --- YAML ---

    #[test]
    fn apply_yaml() {
        let body = b"# applied by kubectl\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  labels:\n    name: not-this\n  name: web # the name\n  namespace: \"prod\"\n  annotations:\n    namespace: nope\nspec:\n  replicas: 3\n  template:\n    metadata:\n      name: inner\n---\nkind: Service\n";
        let d = decode_body("application/apply-patch+yaml", "", body, &limits());
        assert_eq!(
            d.object,
            Some(meta("apps/v1", "Deployment", "web", "prod", ""))
        );
        assert!(d.errors.is_empty());
    }

    #[test]
    fn apply_yaml_variants() {
        let cases: &[(&[u8], ObjectMeta)] = &[
            (b"apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n    name: 'it''s'\r\n    namespace: default\r\n", meta("v1", "ConfigMap", "it's", "default", "")),
            (b"kind: Namespace\napiVersion: v1\nmetadata: {name: team-a}\n", meta("v1", "Namespace", "team-a", "", "")),
            (b"\"apiVersion\": v1\n'kind': Secret\nmetadata:\n  \"name\": s1\n", meta("v1", "Secret", "s1", "", "")),
            (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: |\n    multi\n", meta("v1", "ConfigMap", "", "", "")),
            (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: !!str 123\n", meta("v1", "ConfigMap", "123", "", "")),
            (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: *alias\n", meta("v1", "ConfigMap", "", "", "")),
            (br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j","namespace":"n"}}"#, meta("v1", "ConfigMap", "j", "n", "")),
        ];
        for (body, want) in cases {
            let d = decode_body("application/apply-patch+yaml", "", body, &limits());
            assert_eq!(
                d.object.as_ref(),
                Some(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for junk in [
            &b"- a\n- b\n"[..],
            b"\xff\xfe:\n",
            b"::::\n",
            b"key:value\n",
            b"---\n---\n",
        ] {
            let d = decode_body("application/apply-patch+yaml", "", junk, &limits());
            assert_eq!(d, DecodedBody::default(), "{junk:?}");
        }
    }
}
