//! OTLP protobuf records from Kafka (the collector's `otlp_proto` encoding of the traces topic)
//! back into [`ApiRequest`]s: apiscope's spans only (scope `apiscope`, kind SERVER or CLIENT), each
//! through the inverse of the span mapping ([`request_from_attributes`]) plus the span's times.

use opentelemetry::{KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::k8s::ApiRequest;
use crate::sinks::attributes::request_from_attributes;
use crate::sinks::otlp::SCOPE;
use crate::vocabulary::Role;

/// What one Kafka record held.
#[derive(Debug, Default)]
pub struct DecodedRecord {
    pub requests: Vec<ApiRequest>,
    /// Spans of other scopes or kinds (another producer on the topic): skipped, counted.
    pub foreign_spans: u64,
}

/// Decodes one record; an error means the record is not OTLP traces protobuf at all.
pub fn decode_traces_record(payload: &[u8]) -> Result<DecodedRecord, prost::DecodeError> {
    let message = ExportTraceServiceRequest::decode(payload)?;
    let mut decoded = DecodedRecord::default();
    for resource in message.resource_spans {
        for scope in resource.scope_spans {
            let ours = scope.scope.as_ref().is_some_and(|s| s.name == SCOPE);
            for span in scope.spans {
                let role = match SpanKind::try_from(span.kind) {
                    Ok(SpanKind::Server) => Role::Server,
                    Ok(SpanKind::Client) => Role::Client,
                    _ => {
                        decoded.foreign_spans += 1;
                        continue;
                    }
                };
                if !ours {
                    decoded.foreign_spans += 1;
                    continue;
                }
                let attributes: Vec<KeyValue> =
                    span.attributes.into_iter().filter_map(attribute).collect();
                let mut request = request_from_attributes(&attributes, role);
                request.start_unix_nano = span.start_time_unix_nano;
                request.end_unix_nano = span.end_time_unix_nano.max(span.start_time_unix_nano);
                request.duration_seconds =
                    (request.end_unix_nano - request.start_unix_nano) as f64 / 1e9;
                decoded.requests.push(request);
            }
        }
    }
    Ok(decoded)
}

/// The scalar attribute types the span mapping writes; anything else is not ours to read.
fn attribute(kv: opentelemetry_proto::tonic::common::v1::KeyValue) -> Option<KeyValue> {
    let value = match kv.value? {
        AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        } => Value::String(text.into()),
        AnyValue {
            value: Some(any_value::Value::IntValue(number)),
        } => Value::I64(number),
        AnyValue {
            value: Some(any_value::Value::BoolValue(flag)),
        } => Value::Bool(flag),
        AnyValue {
            value: Some(any_value::Value::DoubleValue(number)),
        } => Value::F64(number),
        _ => return None,
    };
    Some(KeyValue::new(kv.key, value))
}

/// The other way: span attributes as the OTLP protobuf the collector writes, for the tests and
/// the relay's benchmark, which build Kafka records without a collector.
pub fn proto_attributes(
    attributes: Vec<KeyValue>,
) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    attributes
        .into_iter()
        .filter_map(|kv| {
            let value = match kv.value {
                Value::String(text) => any_value::Value::StringValue(text.to_string()),
                Value::I64(number) => any_value::Value::IntValue(number),
                Value::Bool(flag) => any_value::Value::BoolValue(flag),
                Value::F64(number) => any_value::Value::DoubleValue(number),
                _ => return None,
            };
            Some(opentelemetry_proto::tonic::common::v1::KeyValue {
                key: kv.key.to_string(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;
    use crate::sinks::attributes::span_attributes;
    use crate::sinks::fixtures::{create_configmap, dry_run_update_by_service_account};

    fn record(scope: &str, spans: Vec<Span>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: scope.to_string(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn span(request: &ApiRequest, kind: SpanKind) -> Span {
        Span {
            kind: kind as i32,
            start_time_unix_nano: request.start_unix_nano,
            end_time_unix_nano: request.end_unix_nano,
            attributes: proto_attributes(span_attributes(request)),
            ..Default::default()
        }
    }

    #[test]
    fn spans_come_back_as_the_requests_their_attributes_describe() {
        let requests = [create_configmap(), dry_run_update_by_service_account()];
        let payload = record(
            SCOPE,
            requests.iter().map(|r| span(r, SpanKind::Server)).collect(),
        );
        let decoded = decode_traces_record(&payload).unwrap();
        assert_eq!(decoded.requests.len(), 2);
        assert_eq!(decoded.foreign_spans, 0);
        for (back, request) in decoded.requests.iter().zip(&requests) {
            // The span mapping writes scalars only: none was left out on the way.
            assert_eq!(
                proto_attributes(span_attributes(request)).len(),
                span_attributes(request).len()
            );
            assert_eq!(span_attributes(back), span_attributes(request));
            assert_eq!(back.start_unix_nano, request.start_unix_nano);
            assert_eq!(back.end_unix_nano, request.end_unix_nano);
            assert_eq!(back.verb, request.verb);
            assert_eq!(back.code, request.code);
            assert_eq!(back.role, Role::Server);
        }
    }

    #[test]
    fn other_scopes_and_internal_spans_are_skipped_and_counted() {
        let request = create_configmap();
        let mut payload = record("someone-else", vec![span(&request, SpanKind::Server)]);
        assert_eq!(decode_traces_record(&payload).unwrap().foreign_spans, 1);
        payload = record(SCOPE, vec![span(&request, SpanKind::Internal)]);
        let decoded = decode_traces_record(&payload).unwrap();
        assert!(decoded.requests.is_empty());
        assert_eq!(decoded.foreign_spans, 1);
    }

    #[test]
    fn a_record_that_is_not_protobuf_is_an_error() {
        assert!(decode_traces_record(b"\xff\xff\xff\xff not otlp").is_err());
        // Empty is a valid (empty) message.
        assert!(decode_traces_record(b"").unwrap().requests.is_empty());
    }
}
