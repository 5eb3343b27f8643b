//! Redaction of credentials in decoded bodies and in free text.
//!
//! Structural redaction works on a parsed JSON/YAML document: it needs no schema, only the
//! shapes that carry credentials in the Kubernetes API:
//! - Secrets (`kind: Secret`, items of a `SecretList`, and every body of a request on the
//!   `secrets` resource, which may lack `kind`: merge patches, list items, JSON patches): every
//!   value but `apiVersion`, `kind`, `type`, `immutable`, the metadata and JSON-patch
//!   `op`/`path`/`from` — that is `data` and `stringData` (keys kept: operators want to know which
//!   keys changed), JSON-patch `value`s, and anything unknown — plus the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation (a copy of the whole Secret).
//! - `TokenRequest` (`serviceaccounts/token`) and `TokenReview` (`tokenreviews`): every `token`
//!   field (`status.token`, `spec.token`).
//!
//! Nested objects are found wherever they are, so an `AdmissionReview` sent to a webhook (with
//! `--include-outgoing`) or a `List` gets the same treatment. Text safety nets run on everything
//! that leaves: JWT-shaped strings and `Bearer` credentials are replaced, and values removed from
//! a request body are scrubbed from the rest of the record (an error message may quote them).

use base64::Engine;
use serde_json::Value;

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Values shorter than this are not scrubbed from free text: replacing every "a" or "1" in a
/// message would destroy it, and such values are not credentials worth the name.
const MIN_SCRUB_LEN: usize = 4;
/// Bound on the values remembered for scrubbing (a large SecretList must not make scrubbing
/// quadratic); structural redaction does not depend on it.
const MAX_SCRUB_VALUES: usize = 256;
/// Shortest credential after `Bearer ` (a bootstrap token `abcdef.0123456789abcdef` is 23).
const MIN_BEARER_LEN: usize = 16;

/// What the request says about its bodies, before they are looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sensitivity {
    /// A request on core `secrets`: every object in its bodies is treated as a Secret.
    pub secrets: bool,
    /// `serviceaccounts/token` or `authentication.k8s.io` `tokenreviews`: `token` fields.
    pub tokens: bool,
}

impl Sensitivity {
    pub fn of(group: &str, resource: &str, subresource: &str) -> Sensitivity {
        Sensitivity {
            secrets: group.is_empty() && resource == "secrets",
            tokens: (group.is_empty() && resource == "serviceaccounts" && subresource == "token")
                || (group == "authentication.k8s.io" && resource == "tokenreviews"),
        }
    }

    pub fn any(self) -> bool {
        self.secrets || self.tokens
    }
}

/// Redaction state of one request: what was replaced and which values to scrub from text.
#[derive(Debug, Default)]
pub struct Redactor {
    /// Values replaced so far.
    pub replaced: usize,
    /// Redacted string values (and their base64-decoded and JSON-escaped forms), to scrub from
    /// free text of the same request.
    pub scrub: Vec<String>,
    /// Whether values are remembered for scrubbing (request bodies: what error messages echo).
    pub remember: bool,
}

impl Redactor {
    /// Redacts a parsed body in place; returns whether anything was replaced.
    pub fn redact_document(&mut self, doc: &mut Value, sensitivity: Sensitivity) -> bool {
        let before = self.replaced;
        self.walk(doc, sensitivity.secrets, sensitivity.tokens, 0);
        self.replaced > before
    }

    fn walk(&mut self, value: &mut Value, secret: bool, tokens: bool, depth: usize) {
        // serde_json and serde_yaml stop parsing at depth 128; this is only a second guard.
        if depth > 256 {
            return;
        }
        if secret {
            self.walk_secret(value, depth);
            return;
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    self.walk(item, false, tokens, depth + 1);
                }
            }
            Value::Object(map) => {
                let kind = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if kind == "secret" || kind == "secretlist" {
                    self.walk_secret(value, depth);
                    return;
                }
                let tokens = tokens || kind == "tokenrequest" || kind == "tokenreview";
                for (key, child) in map.iter_mut() {
                    if tokens && key.eq_ignore_ascii_case("token") {
                        self.redact_leaves(child, 0);
                    } else {
                        self.walk(child, false, tokens, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// A Secret, a SecretList, or any body of a request on `secrets` (patches, list items, JSON
    /// patch operations). An allowlist, not a list of secret fields: only the type fields, the
    /// metadata (less the last-applied copy) and JSON-patch `op`/`path`/`from` stay; every other
    /// value is replaced, so an unknown field (`{"kind":"Secret","extra":"..."}`, a YAML anchor
    /// outside `data`) cannot carry a value out.
    fn walk_secret(&mut self, value: &mut Value, depth: usize) {
        if depth > 256 {
            return;
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    self.walk_secret(item, depth + 1);
                }
            }
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match key.as_str() {
                        "apiVersion" | "kind" | "type" | "immutable" | "op" | "path" | "from"
                            if !child.is_object() && !child.is_array() => {}
                        "metadata" => self.walk_metadata(child, depth + 1),
                        "items" => self.walk_secret(child, depth + 1),
                        _ => self.redact_leaves(child, 0),
                    }
                }
            }
            other => self.redact_leaves(other, 0),
        }
    }

    /// A Secret's metadata: names, labels, annotations and managedFields (keys only) are not
    /// secret; the last-applied annotation is a copy of the whole Secret.
    fn walk_metadata(&mut self, value: &mut Value, depth: usize) {
        if depth > 256 {
            return;
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    self.walk_metadata(item, depth + 1);
                }
            }
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if key == LAST_APPLIED {
                        self.redact_leaves(child, 0);
                    } else {
                        self.walk_metadata(child, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }

    /// Replaces every scalar under `value` by the marker, keeping object keys and array shapes;
    /// `null` stays (a merge patch deleting a key reveals nothing).
    fn redact_leaves(&mut self, value: &mut Value, depth: usize) {
        match value {
            Value::Null => {}
            Value::Object(map) if depth < 256 => {
                for child in map.values_mut() {
                    self.redact_leaves(child, depth + 1);
                }
            }
            Value::Array(items) if depth < 256 => {
                for item in items {
                    self.redact_leaves(item, depth + 1);
                }
            }
            Value::String(s) if s == REDACTED => {}
            other => {
                if let Value::String(s) = other {
                    self.remember_value(s);
                }
                *other = Value::String(REDACTED.to_owned());
                self.replaced += 1;
            }
        }
    }

    fn remember_value(&mut self, s: &str) {
        if !self.remember || self.scrub.len() >= MAX_SCRUB_VALUES {
            return;
        }
        let mut push = |v: String| {
            if v.len() >= MIN_SCRUB_LEN && !self.scrub.contains(&v) {
                self.scrub.push(v);
            }
        };
        push(s.to_owned());
        // Secret `data` is base64: an echo may quote the decoded value.
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s.trim()) {
            if let Ok(text) = String::from_utf8(bytes) {
                push(text);
            }
        }
        // The value as it appears inside JSON text.
        if let Ok(escaped) = serde_json::to_string(s) {
            let inner = escaped
                .strip_prefix('"')
                .and_then(|e| e.strip_suffix('"'))
                .unwrap_or(&escaped);
            if inner != s {
                push(inner.to_owned());
            }
        }
    }

    /// Free-text safety nets: remembered values, JWTs, `Bearer` credentials. Returns whether
    /// anything was replaced.
    pub fn scrub_text(&self, text: &mut String) -> bool {
        let mut changed = false;
        // Longest first, so a value containing another is replaced whole.
        let mut values: Vec<&String> = self.scrub.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for value in values {
            if text.contains(value.as_str()) {
                *text = text.replace(value.as_str(), REDACTED);
                changed = true;
            }
        }
        if let Some(clean) = redact_jwts(text) {
            *text = clean;
            changed = true;
        }
        if let Some(clean) = redact_bearer(text) {
            *text = clean;
            changed = true;
        }
        changed
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Length of a JWT (JWS compact form: `eyJ...` header, payload, optional signature, separated by
/// dots) starting at `bytes[0]`, or 0.
fn jwt_len(bytes: &[u8]) -> usize {
    if !bytes.starts_with(b"eyJ") {
        return 0;
    }
    let mut i = 0;
    for segment in 0..3 {
        let start = i;
        while i < bytes.len() && is_b64url(bytes[i]) {
            i += 1;
        }
        let len = i - start;
        // Header and payload are JSON objects: never short. The signature may be empty
        // (`alg: none`), and is the last segment.
        if segment < 2 && len < 4 {
            return 0;
        }
        if segment < 2 {
            if bytes.get(i) != Some(&b'.') {
                return 0;
            }
            i += 1;
        }
    }
    i
}

/// Replaces JWT-shaped substrings with the marker; `None` when there were none.
pub fn redact_jwts(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if !text.contains("eyJ") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    let mut found = false;
    while i < bytes.len() {
        let len = jwt_len(&bytes[i..]);
        if len > 0 {
            // `i` and `i + len` are on ASCII bytes, hence char boundaries.
            out.push_str(&text[copied..i]);
            out.push_str(REDACTED);
            i += len;
            copied = i;
            found = true;
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// Replaces the credential after `Bearer ` (any case), whatever its shape; `None` when there was
/// none. (Bootstrap tokens, OIDC opaque tokens... are not JWT-shaped.)
pub fn redact_bearer(text: &str) -> Option<String> {
    const SCHEME: &[u8] = b"bearer ";
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    let mut found = false;
    while i + SCHEME.len() <= bytes.len() {
        if bytes[i..i + SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
            let start = i + SCHEME.len();
            let mut end = start;
            while end < bytes.len() && is_token_char(bytes[end]) {
                end += 1;
            }
            // Short words after "bearer " are prose ("the bearer token is..."), not credentials.
            if end - start >= MIN_BEARER_LEN && &text[start..end] != REDACTED {
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = end;
                found = true;
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    if !found {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// RFC 6750 `b64token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Whether unparsed text may carry credentials: it names a kind whose values are redacted.
/// Such text is withheld rather than shown half-redacted.
pub fn mentions_sensitive_kind(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["secret", "tokenrequest", "tokenreview"]
        .iter()
        .any(|k| lower.contains(k))
}

/// Cuts `text` to at most `max` bytes on a char boundary; returns whether it was cut.
pub fn truncate_at_char_boundary(text: &mut String, max: usize) -> bool {
    let kept = crate::vocabulary::text::prefix_on_char_boundary(text, max).len();
    let cut = kept < text.len();
    text.truncate(kept);
    cut
}
