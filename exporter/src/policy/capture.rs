//! Applying a [`CapturePolicy`] to a request the k8s stage built: the level, the captured
//! bodies (redacted, bounded) and the safety nets on free text. The bodies are the k8s stage's
//! own ([`ExchangeBodies`]): a gzip body is inflated once for both.

use serde_json::Value;

use super::CapturePolicy;
use super::redact::{Redactor, Sensitivity, mentions_sensitive_kind, truncate_at_char_boundary};
use crate::k8s::ApiRequest;
use crate::k8s::api_request::{CaptureLevel, CapturedBody};
use crate::k8s::body::{BodyFormat, PROTOBUF_MAGIC, Unreadable, body_format, parse_unknown};
use crate::k8s::message_body::{ExchangeBodies, MessageBody};

/// Size limits of captured bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Longest captured body text (`--max-captured-body-bytes`); longer text is cut on a char
    /// boundary and marked `truncated`.
    pub max_captured_body_bytes: usize,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        CaptureLimits {
            max_captured_body_bytes: 64 << 10,
        }
    }
}

/// Sets `capture_level`, `request_body` and `response_body` of `request` (built with `bodies`)
/// as the policy says, and runs the text safety nets on `status.message` and `decode_errors`.
/// Never panics on input.
pub fn apply(
    policy: &CapturePolicy,
    bodies: &ExchangeBodies<'_>,
    request: &mut ApiRequest,
    limits: &CaptureLimits,
) {
    let decision = policy.decide(request);
    request.capture_level = decision.level;
    request.request_body = None;
    request.response_body = None;
    let allow = decision.allow_secrets;
    let sensitivity = Sensitivity::of(&request.group, &request.resource, &request.subresource);
    let has_free_text = request
        .status
        .as_ref()
        .is_some_and(|s| !s.message.is_empty())
        || !request.decode_errors.is_empty();

    let mut redactor = Redactor {
        remember: true,
        ..Redactor::default()
    };
    let capture_request = decision.level >= CaptureLevel::Request;
    // Below `Request` the request body of a sensitive call is still read when there is free text
    // to clean: an error message may quote the values it carried.
    let learn_request = !allow && sensitivity.any() && has_free_text;
    let request_body = if capture_request || learn_request {
        render(&bodies.request, false, sensitivity, allow, &mut redactor)
    } else {
        None
    };
    redactor.remember = false;
    let response_body = if decision.level >= CaptureLevel::RequestResponse {
        render(
            &bodies.response,
            bodies.response_is_stream,
            sensitivity,
            allow,
            &mut redactor,
        )
    } else {
        None
    };

    if capture_request {
        request.request_body = request_body.map(|r| r.finish(&redactor, allow, limits));
    }
    request.response_body = response_body.map(|r| r.finish(&redactor, allow, limits));

    // Free text of the record: messages from the apiserver or a webhook may echo the input.
    if let Some(status) = request.status.as_mut() {
        redactor.scrub_text(&mut status.message);
    }
    for error in &mut request.decode_errors {
        redactor.scrub_text(error);
    }
    // Client-chosen text: a proxied URL (`.../services/x/proxy/?token=eyJ...`) or a User-Agent
    // can carry a token as well. The nets only touch JWT and Bearer shapes.
    redactor.scrub_text(&mut request.path);
    redactor.scrub_text(&mut request.query);
    redactor.scrub_text(&mut request.user_agent);
}

/// A body decoded and structurally redacted, before the text nets and the size limit.
struct Rendered {
    content_type: String,
    text: String,
    redacted: bool,
    /// The text is the start of a body the capture did not keep whole.
    partial: bool,
}

impl Rendered {
    fn note(content_type: &str, text: String, redacted: bool) -> Rendered {
        Rendered {
            content_type: content_type.to_owned(),
            text,
            redacted,
            partial: false,
        }
    }

    fn finish(mut self, redactor: &Redactor, allow: bool, limits: &CaptureLimits) -> CapturedBody {
        if !allow && redactor.scrub_text(&mut self.text) {
            self.redacted = true;
        }
        // The nets run before the cut, so a cut never leaves half a token unrecognized.
        let cut = truncate_at_char_boundary(&mut self.text, limits.max_captured_body_bytes);
        CapturedBody {
            content_type: self.content_type,
            text: self.text,
            truncated: cut || self.partial,
            redacted: self.redacted,
        }
    }
}

fn render(
    body: &MessageBody<'_>,
    is_watch_response: bool,
    sensitivity: Sensitivity,
    allow: bool,
    redactor: &mut Redactor,
) -> Option<Rendered> {
    let content_type = body.content_type();
    if !body.exists() {
        return None;
    }
    let size = body.size();
    if is_watch_response {
        // Watch streams are unbounded and are summarized by `watch` counts instead.
        return Some(Rendered::note(
            content_type,
            format!("watch stream ({size} bytes) not captured"),
            false,
        ));
    }
    if body.kept().is_empty() {
        return Some(Rendered::note(
            content_type,
            format!("body ({size} bytes) not kept by the capture"),
            false,
        ));
    }
    let partial = body.missing() > 0;
    let data = match body.inflated() {
        Ok(data) => data,
        Err(Unreadable::Gzip(e)) => {
            return Some(Rendered::note(
                content_type,
                format!("gzip body ({size} bytes) not rendered: {e}"),
                false,
            ));
        }
        Err(Unreadable::UnsupportedEncoding(_)) => {
            return Some(Rendered::note(
                content_type,
                format!("body ({size} bytes) with an unsupported content-encoding not rendered"),
                false,
            ));
        }
    };
    let withheld = |why: &str| {
        Some(Rendered::note(
            content_type,
            format!("secret body not rendered ({why}, {size} bytes)"),
            true,
        ))
    };

    let format = body_format(content_type, data);
    if format == BodyFormat::Protobuf {
        if sensitivity.any() {
            return withheld("protobuf");
        }
        // The envelope's type says what it was; the object itself stays on the node.
        let what = data
            .strip_prefix(PROTOBUF_MAGIC.as_slice())
            .and_then(|envelope| parse_unknown(envelope).ok())
            .filter(|u| !u.kind.is_empty())
            .map(|u| {
                let mut name = format!(", {} {}", u.api_version, u.kind);
                truncate_at_char_boundary(&mut name, 128);
                name
            })
            .unwrap_or_default();
        return Some(Rendered::note(
            content_type,
            format!("protobuf body ({size} bytes{what}) not rendered"),
            false,
        ));
    }
    let text = String::from_utf8_lossy(data);
    // The k8s stage read only the top-level fields; redaction needs the whole tree.
    if matches!(format, BodyFormat::Json | BodyFormat::Yaml) && !partial {
        let parsed: Option<Value> = match format {
            BodyFormat::Json => serde_json::from_slice(data).ok(),
            _ => serde_yaml::from_str(&text).ok(),
        };
        if let Some(mut doc) = parsed {
            let redacted = !allow && redactor.redact_document(&mut doc, sensitivity);
            // Rendered from the parsed document, never the original text: duplicate keys
            // (`"kind":"Secret","kind":"ConfigMap"`) cannot hide values from redaction.
            let rendered = match format {
                BodyFormat::Json => serde_json::to_string(&doc).ok(),
                _ => serde_yaml::to_string(&doc).ok(),
            };
            return match rendered {
                Some(text) => Some(Rendered {
                    content_type: content_type.to_owned(),
                    text,
                    redacted,
                    partial: false,
                }),
                None => withheld("not re-encodable"),
            };
        }
    }
    // Unparsed text: cut short by the capture, malformed, or not JSON/YAML at all. It cannot be
    // redacted structurally, so whatever may carry credentials is withheld.
    if !allow && (sensitivity.any() || mentions_sensitive_kind(&text)) {
        return withheld(if partial { "incomplete" } else { "unparsed" });
    }
    if format == BodyFormat::Other && std::str::from_utf8(data).is_err() {
        return Some(Rendered::note(
            content_type,
            format!("binary body ({size} bytes) not rendered"),
            false,
        ));
    }
    Some(Rendered {
        content_type: content_type.to_owned(),
        text: text.into_owned(),
        redacted: false,
        partial,
    })
}
