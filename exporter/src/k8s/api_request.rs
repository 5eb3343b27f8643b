//! [`ApiRequest`]: one Kubernetes API call, the one type every sink consumes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::vocabulary::{ConnectionId, Role};

/// One Kubernetes API call (or, on a client-role connection, one outgoing call of the
/// apiserver), built from a request/response exchange.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// `Audit-ID` response header (the apiserver sets it on every response).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// Wall-clock times (Unix nanoseconds) of the request's first byte and the response's last
    /// byte (or the reset/close that ended the exchange).
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub duration_seconds: f64,

    // --- RequestInfo (audit event `verb`, `objectRef`) ---
    /// RequestInfo verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// proxy, or the lower-case HTTP method for non-resource requests.
    pub verb: String,
    /// `apiserver_request_total`'s `verb` label: GET, LIST, WATCH, POST, PUT, PATCH, APPLY,
    /// DELETE, CONNECT, ...
    pub metric_verb: String,
    pub is_resource_request: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `resource`, `namespace`, `cluster`, or empty for non-resource requests.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub dry_run: bool,
    pub long_running: bool,

    // --- HTTP ---
    pub method: String,
    /// Request path without the query.
    pub path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// Response status; `None` when the exchange ended without a response head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// "1.1" or "2".
    pub protocol: String,
    pub stream_id: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_content_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_content_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_content_encoding: String,
    /// Body bytes as sent (before gzip decoding).
    pub request_body_bytes: u64,
    pub response_body_bytes: u64,
    /// Bytes on the wire, frame and header overhead included.
    pub request_wire_bytes: u64,
    pub response_wire_bytes: u64,
    /// Where the request's headers came from: `wire` (HPACK / HTTP/1.1) or `hook` (Go's HTTP/2
    /// code, for connections whose HPACK state predates attaching).
    pub headers_source: String,
    /// Why the exchange is not complete, if it is not (reset, connection closed, evicted...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,

    // --- Client identity ---
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// Component from the User-Agent (kubectl, kube-controller-manager, kubelet...), bounded.
    pub component: String,
    /// Identity decoded from a bearer JWT's claims (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ServiceAccountRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonation: Option<Impersonation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<SocketAddr>,
    pub connection: ConnectionId,
    pub role: Role,

    // --- APF and throttling ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_schema_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_level_uid: Option<String>,
    /// `Retry-After` seconds of a 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// W3C `traceparent` the client sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,

    // --- Bodies (decoded) ---
    /// Object named in the request body (create/update/apply) or response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectMeta>,
    /// Status object of an error response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStats>,
    /// Items in a LIST response, when the body was decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_items: Option<u64>,
    /// Problems decoding bodies (gzip over the cap, bad JSON...), for the record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_errors: Vec<String>,

    // --- Capture level (set by the capture policy; see `policy`) ---
    /// `None`, `Metadata` (default), `Request` or `RequestResponse`, as audit policy levels.
    #[serde(default)]
    pub capture_level: CaptureLevel,
    /// The request body, redacted and bounded, when the capture level includes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<CapturedBody>,
    /// The response body, redacted and bounded, at level `RequestResponse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<CapturedBody>,
    /// The HTTP/2 frames of the request's stream (metadata only), when the decoder reported
    /// them (only for the live view). Not part of the record: only the live view's detail
    /// endpoint writes them.
    #[serde(skip)]
    pub frames: Option<StreamFrames>,
}

/// A stream's frames, at most `exchange::MAX_FRAMES_PER_EXCHANGE`; `cut` counts the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamFrames {
    pub frames: Vec<StreamFrame>,
    pub cut: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFrame {
    /// Sent by the side that made the request.
    pub request_direction: bool,
    pub frame_type: u8,
    pub flags: u8,
    pub stream_id: u32,
    pub length: u32,
    pub unix_nano: u64,
}

/// How much of a request leaves the node, like an audit policy level.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum CaptureLevel {
    /// Counted in metrics only: no span, no log record.
    None,
    /// Span and log record without bodies.
    #[default]
    Metadata,
    /// Plus the request body.
    Request,
    /// Plus the response body.
    RequestResponse,
}

/// A body as it may leave the node: decoded to text where possible, secrets redacted, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedBody {
    pub content_type: String,
    /// Text (JSON/YAML as sent, after redaction), or a note for bodies that are not rendered.
    pub text: String,
    /// The body was cut to the size limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Values were replaced by the redaction marker.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// A service account named by a bearer JWT's claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
    /// The JWT `sub` claim, e.g. `system:serviceaccount:kube-system:default`.
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
}

/// `Impersonate-*` request headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impersonation {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a body says about the object it carries (cheap fields only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

/// A `metav1.Status` returned with an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

/// A watch response as a sequence of events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStats {
    pub added: u64,
    pub modified: u64,
    pub deleted: u64,
    pub bookmark: u64,
    pub error: u64,
    /// Events whose type was none of the above, or frames that did not decode.
    pub other: u64,
    /// Body bytes of the watch stream.
    pub bytes: u64,
}

impl WatchStats {
    pub fn events(&self) -> u64 {
        self.added + self.modified + self.deleted + self.bookmark + self.error + self.other
    }
}
