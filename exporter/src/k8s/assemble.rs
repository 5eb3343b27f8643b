//! Building an [`ApiRequest`] from a finished exchange: the request's Kubernetes meaning
//! (RequestInfo), its client, its bodies and watch events.

use crate::exchange::Exchange;
use crate::http::request_direction;
use crate::k8s::api_request::{ApiRequest, CaptureLevel, StreamFrame, StreamFrames};
use crate::k8s::body::{self, BodyLimits};
use crate::k8s::message_body::{ExchangeBodies, MessageBody};
use crate::k8s::watch::WatchDecoder;
use crate::k8s::{client, request_info};

impl ApiRequest {
    /// Builds the request from a finished exchange, and hands back its bodies as read here
    /// (inflated once) for the capture policy. `realtime_offset_ns` turns the capture's
    /// CLOCK_MONOTONIC timestamps into wall-clock time.
    pub fn from_exchange<'a>(
        exchange: &'a Exchange,
        realtime_offset_ns: i64,
        body_limits: &BodyLimits,
    ) -> (ApiRequest, ExchangeBodies<'a>) {
        let request = &exchange.request;
        let response = &exchange.response;
        let bodies = ExchangeBodies {
            request: MessageBody::new(request, body_limits.max_decoded_bytes),
            response: MessageBody::new(response, body_limits.max_decoded_bytes),
            response_is_stream: exchange.is_stream,
        };
        let method = request.header(":method").unwrap_or_default();
        let target = request.header(":path").unwrap_or_default();
        let request_content_type = bodies.request.content_type();
        let labelled = ApiRequest::from_request_line(method, target, request_content_type);
        let user_agent = request.header("user-agent").unwrap_or_default().to_owned();

        let wall = |ns: u64| (i128::from(ns) + i128::from(realtime_offset_ns)).max(0) as u64;
        let start = exchange.start_ns().unwrap_or_default();
        let end = exchange.end_ns().unwrap_or(start).max(start);

        let mut decode_errors = Vec::new();
        let mut object = None;
        let mut status = None;
        let mut list_items = None;
        if request.body_missing == 0 && !request.body.is_empty() {
            let decoded =
                body::decode_inflated(request_content_type, bodies.request.inflated(), body_limits);
            object = decoded.object;
            decode_errors.extend(decoded.errors);
        }
        let request_object = object.clone();
        let response_content_type = bodies.response.content_type();
        let response_encoding = bodies.response.content_encoding();
        if !exchange.is_stream && !response.body.is_empty() {
            if response.body_missing == 0 {
                let decoded = body::decode_inflated(
                    response_content_type,
                    bodies.response.inflated(),
                    body_limits,
                );
                status = decoded.status;
                list_items = decoded.list_items;
                if object.is_none() {
                    object = decoded.object;
                }
                decode_errors.extend(decoded.errors);
            } else {
                decode_errors.push(format!(
                    "response body not decoded: {} of {} bytes were not kept",
                    response.body_missing, response.body_bytes
                ));
            }
        }

        // Like the audit log's objectRef, a create names its object in the body, not the URL.
        let mut name = labelled.name.clone();
        let mut namespace = labelled.namespace.clone();
        if labelled.is_resource_request {
            if let Some(object) = request_object.as_ref() {
                if name.is_empty() {
                    name = object.name.clone();
                }
                if namespace.is_empty() {
                    namespace = object.namespace.clone();
                }
            }
        }

        let api_request = ApiRequest {
            audit_id: response.header("audit-id").map(str::to_owned),
            start_unix_nano: wall(start),
            end_unix_nano: wall(end),
            duration_seconds: (end - start) as f64 / 1e9,
            namespace,
            name,
            code: exchange.status(),
            protocol: exchange.facts.protocol.to_owned(),
            stream_id: exchange.stream,
            request_content_type: request_content_type.to_owned(),
            response_content_type: response_content_type.to_owned(),
            response_content_encoding: response_encoding.to_owned(),
            request_body_bytes: request.body_bytes,
            response_body_bytes: response.body_bytes,
            request_wire_bytes: request.wire_bytes,
            response_wire_bytes: response.wire_bytes,
            headers_source: request
                .source
                .map(|s| s.as_str())
                .unwrap_or("none")
                .to_owned(),
            incomplete: exchange.ending.incomplete_reason(),
            component: client::component_from_user_agent(&user_agent),
            user_agent,
            service_account: request
                .header("authorization")
                .and_then(client::service_account_from_authorization),
            impersonation: request.fields.as_deref().and_then(client::impersonation),
            peer: exchange.facts.remote,
            local: exchange.facts.local,
            connection: exchange.facts.connection,
            role: exchange.facts.role,
            flow_schema_uid: response
                .header("x-kubernetes-pf-flowschema-uid")
                .map(str::to_owned),
            priority_level_uid: response
                .header("x-kubernetes-pf-prioritylevel-uid")
                .map(str::to_owned),
            retry_after_seconds: response
                .header("retry-after")
                .and_then(|v| v.trim().parse().ok()),
            traceparent: request.header("traceparent").map(str::to_owned),
            object,
            status,
            // A watch with no event yet still reports zero counts.
            watch: exchange.is_stream.then(|| {
                exchange
                    .body_stream
                    .as_ref()
                    .and_then(|s| s.as_any().downcast_ref::<WatchDecoder>())
                    .map(|w| w.stats().clone())
                    .unwrap_or_default()
            }),
            list_items,
            decode_errors,
            // The capture policy decides; until it runs, metadata only.
            capture_level: CaptureLevel::Metadata,
            request_body: None,
            response_body: None,
            frames: stream_frames(exchange, wall),
            ..labelled
        };
        (api_request, bodies)
    }

    /// A request with only what its method, target (path and query) and content type say: the
    /// apiserver's RequestInfo and the metric labels derived from it; everything else default.
    pub fn from_request_line(method: &str, target: &str, content_type: &str) -> ApiRequest {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let info = request_info::resolve(method, target);
        ApiRequest {
            metric_verb: request_info::metric_verb(&info, method, content_type),
            dry_run: request_info::dry_run(query),
            scope: request_info::scope(&info).to_owned(),
            long_running: request_info::is_long_running(&info, method),
            is_resource_request: info.is_resource_request,
            verb: info.verb,
            group: info.api_group,
            version: info.api_version,
            resource: info.resource,
            subresource: info.subresource,
            namespace: info.namespace,
            name: info.name,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..ApiRequest::default()
        }
    }
}

/// The exchange's frames on the wall clock, if the decoder reported any.
fn stream_frames(exchange: &Exchange, wall: impl Fn(u64) -> u64) -> Option<StreamFrames> {
    if exchange.frames.is_empty() {
        return None;
    }
    let requests = request_direction(exchange.facts.role);
    Some(StreamFrames {
        frames: exchange
            .frames
            .iter()
            .map(|frame| StreamFrame {
                request_direction: frame.direction == requests,
                frame_type: frame.frame_type,
                flags: frame.flags,
                stream_id: exchange.stream,
                length: frame.length,
                unix_nano: wall(frame.timestamp_ns),
            })
            .collect(),
        cut: exchange.frames_cut,
    })
}
