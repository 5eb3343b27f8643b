//! The log record of a request: severity, and an audit-event-shaped body.

use opentelemetry::Key;
use opentelemetry::logs::{AnyValue, Severity};

use super::time::rfc3339_micros;
use crate::k8s::ApiRequest;
use crate::k8s::api_request::CapturedBody;
use crate::sinks::attributes;
use crate::vocabulary::Role;

/// ERROR for 5xx, WARN for 4xx and requests without a response, INFO otherwise.
pub fn severity(request: &ApiRequest) -> (Severity, &'static str) {
    match request.code {
        Some(code) if code >= 500 => (Severity::Error, "ERROR"),
        Some(code) if code >= 400 => (Severity::Warn, "WARN"),
        Some(_) => (Severity::Info, "INFO"),
        None => (Severity::Warn, "WARN"),
    }
}

fn map(entries: Vec<(&'static str, AnyValue)>) -> AnyValue {
    AnyValue::Map(Box::new(
        entries
            .into_iter()
            .map(|(k, v)| (Key::from_static_str(k), v))
            .collect(),
    ))
}

/// Span attribute values as log attribute values (the log API has its own value type).
pub(super) fn any_value(value: opentelemetry::Value) -> AnyValue {
    use opentelemetry::{Array, Value};
    match value {
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::String(s) => AnyValue::String(s),
        Value::Array(Array::Bool(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::Boolean).collect()))
        }
        Value::Array(Array::I64(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::Int).collect()))
        }
        Value::Array(Array::F64(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::Double).collect()))
        }
        Value::Array(Array::String(v)) => {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::String).collect()))
        }
        // Value is non-exhaustive: anything new is kept as its text.
        other => AnyValue::String(other.to_string().into()),
    }
}

fn string(value: &str) -> AnyValue {
    AnyValue::String(value.to_string().into())
}

/// The log body: an `audit.k8s.io/v1` Event as the apiserver would log it at stage
/// ResponseComplete (field names as in the audit log), limited to what apiscope knows. Bodies
/// appear only if the capture policy put them in `request_body` / `response_body`.
pub fn audit_event(request: &ApiRequest) -> AnyValue {
    let mut event: Vec<(&'static str, AnyValue)> = vec![
        ("kind", string("Event")),
        ("apiVersion", string("audit.k8s.io/v1")),
        ("level", string(attributes::capture_level_name(request))),
        ("stage", string("ResponseComplete")),
        ("verb", string(&request.verb)),
    ];
    if let Some(id) = request.audit_id.as_deref() {
        event.push(("auditID", string(id)));
    }
    let uri = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    event.push(("requestURI", string(&uri)));
    if let Some(sa) = request.service_account.as_ref() {
        // The service account the bearer token names: the apiserver's `user.username`.
        event.push(("user", map(vec![("username", string(&sa.subject))])));
    }
    if let Some(imp) = request.impersonation.as_ref() {
        let mut user = vec![("username", string(&imp.user))];
        if !imp.groups.is_empty() {
            user.push((
                "groups",
                AnyValue::ListAny(Box::new(imp.groups.iter().map(|g| string(g)).collect())),
            ));
        }
        event.push(("impersonatedUser", map(user)));
    }
    let peer = match request.role {
        Role::Server => request.peer,
        Role::Client => request.local,
    };
    if let Some(peer) = peer {
        event.push((
            "sourceIPs",
            AnyValue::ListAny(Box::new(vec![string(&peer.ip().to_string())])),
        ));
    }
    if !request.user_agent.is_empty() {
        event.push(("userAgent", string(&request.user_agent)));
    }
    if request.is_resource_request {
        let mut object = vec![("resource", string(&request.resource))];
        for (key, value) in [
            ("namespace", &request.namespace),
            ("name", &request.name),
            ("apiGroup", &request.group),
            ("apiVersion", &request.version),
            ("subresource", &request.subresource),
        ] {
            if !value.is_empty() {
                object.push((key, string(value)));
            }
        }
        event.push(("objectRef", map(object)));
    }
    if let Some(code) = request.code {
        let mut status = vec![("code", AnyValue::Int(i64::from(code)))];
        if let Some(s) = request.status.as_ref() {
            for (key, value) in [
                ("status", &s.status),
                ("reason", &s.reason),
                ("message", &s.message),
            ] {
                if !value.is_empty() {
                    status.push((key, string(value)));
                }
            }
        }
        event.push(("responseStatus", map(status)));
    }
    if let Some(body) = request.request_body.as_ref() {
        event.push(("requestObject", captured_body(body)));
    }
    if let Some(body) = request.response_body.as_ref() {
        event.push(("responseObject", captured_body(body)));
    }
    event.push((
        "requestReceivedTimestamp",
        string(&rfc3339_micros(request.start_unix_nano)),
    ));
    event.push((
        "stageTimestamp",
        string(&rfc3339_micros(request.end_unix_nano)),
    ));
    map(event)
}

fn captured_body(body: &CapturedBody) -> AnyValue {
    map(vec![
        ("contentType", string(&body.content_type)),
        ("text", string(&body.text)),
        ("truncated", AnyValue::Boolean(body.truncated)),
        ("redacted", AnyValue::Boolean(body.redacted)),
    ])
}
