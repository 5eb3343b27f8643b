//! Header fields and the message they belong to, as the capture hooks and the HTTP decoders
//! report them.

use serde::{Deserialize, Serialize};

/// Which message of an exchange a header block or body belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Request,
    Response,
    /// Trailers: a header block after the body (gRPC status, for instance).
    Trailers,
}

/// One header field. Values are kept as text (lossy UTF-8): Kubernetes headers are ASCII.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderField {
    pub name: String,
    pub value: String,
    /// HPACK "never indexed" (Go sets it for Authorization and cookies).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl HeaderField {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        HeaderField {
            name: name.into(),
            value: value.into(),
            sensitive: false,
        }
    }
}
