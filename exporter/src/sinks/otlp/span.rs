//! Span details: the client's `traceparent` as the remote parent, and the span status.

use opentelemetry::trace::{SpanContext, SpanId, Status, TraceFlags, TraceId, TraceState};

use crate::k8s::ApiRequest;
use crate::vocabulary::Role;

/// The W3C `traceparent` a client sent, as a remote parent; `None` when absent or invalid
/// (version `ff`, wrong lengths, upper-case or non-hex digits, all-zero ids), as the W3C Trace
/// Context spec says a receiver must treat it.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let lower_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2) || version == "ff" {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more (forward
    // compatibility), but the first four keep their meaning.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if !lower_hex(trace_id, 32) || !lower_hex(parent_id, 16) || !lower_hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(parent_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        TraceState::NONE,
    ))
}

/// Server spans: Error for 5xx, unset otherwise (4xx is the client's problem, per HTTP semconv).
/// Client spans (the apiserver calling out): Error for 4xx too. No response at all: Error.
pub fn span_status(request: &ApiRequest) -> Option<Status> {
    let error_from = match request.role {
        Role::Server => 500,
        Role::Client => 400,
    };
    match request.code {
        Some(code) if code >= error_from => Some(Status::error(format!("HTTP {code}"))),
        Some(_) => None,
        None => Some(Status::error(
            request
                .incomplete
                .clone()
                .unwrap_or_else(|| "no response".to_string()),
        )),
    }
}
