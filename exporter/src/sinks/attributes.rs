//! The one attribute registry every sink uses: OTel HTTP semantic-convention keys plus the
//! documented `k8s.apiserver.*` set, and the mapping from an [`ApiRequest`] to span/log
//! attributes. Spans and log records share [`span_attributes`], so a query written against one
//! works on the other.

use opentelemetry::{KeyValue, Value};

use crate::k8s::ApiRequest;
use crate::vocabulary::Role;

// --- OTel HTTP semantic conventions (stable HTTP semconv) ---
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_ROUTE: &str = "http.route";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_REQUEST_BODY_SIZE: &str = "http.request.body.size";
pub const HTTP_RESPONSE_BODY_SIZE: &str = "http.response.body.size";
pub const URL_SCHEME: &str = "url.scheme";
pub const URL_PATH: &str = "url.path";
pub const URL_QUERY: &str = "url.query";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
pub const CLIENT_ADDRESS: &str = "client.address";
pub const CLIENT_PORT: &str = "client.port";
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const ERROR_TYPE: &str = "error.type";
pub const PROCESS_PID: &str = "process.pid";

// --- k8s.apiserver.* (apiscope's own, documented in the README) ---
pub const K8S_VERB: &str = "k8s.apiserver.verb";
pub const K8S_METRIC_VERB: &str = "k8s.apiserver.metric_verb";
pub const K8S_GROUP: &str = "k8s.apiserver.group";
pub const K8S_VERSION: &str = "k8s.apiserver.version";
pub const K8S_RESOURCE: &str = "k8s.apiserver.resource";
pub const K8S_SUBRESOURCE: &str = "k8s.apiserver.subresource";
pub const K8S_NAMESPACE: &str = "k8s.apiserver.namespace";
pub const K8S_NAME: &str = "k8s.apiserver.name";
pub const K8S_SCOPE: &str = "k8s.apiserver.scope";
pub const K8S_DRY_RUN: &str = "k8s.apiserver.dry_run";
pub const K8S_LONG_RUNNING: &str = "k8s.apiserver.long_running";
pub const K8S_AUDIT_ID: &str = "k8s.apiserver.audit_id";
pub const K8S_COMPONENT: &str = "k8s.apiserver.component";
pub const K8S_SERVICE_ACCOUNT: &str = "k8s.apiserver.service_account";
pub const K8S_IMPERSONATED_USER: &str = "k8s.apiserver.impersonated_user";
pub const K8S_FLOW_SCHEMA_UID: &str = "k8s.apiserver.flow_schema_uid";
pub const K8S_PRIORITY_LEVEL_UID: &str = "k8s.apiserver.priority_level_uid";
pub const K8S_RETRY_AFTER: &str = "k8s.apiserver.retry_after";
pub const K8S_WATCH_EVENTS_ADDED: &str = "k8s.apiserver.watch.events.added";
pub const K8S_WATCH_EVENTS_MODIFIED: &str = "k8s.apiserver.watch.events.modified";
pub const K8S_WATCH_EVENTS_DELETED: &str = "k8s.apiserver.watch.events.deleted";
pub const K8S_WATCH_EVENTS_BOOKMARK: &str = "k8s.apiserver.watch.events.bookmark";
pub const K8S_WATCH_EVENTS_ERROR: &str = "k8s.apiserver.watch.events.error";
pub const K8S_WATCH_EVENTS_OTHER: &str = "k8s.apiserver.watch.events.other";
pub const K8S_WATCH_EVENTS: &str = "k8s.apiserver.watch.events";
pub const K8S_LIST_ITEMS: &str = "k8s.apiserver.list_items";
pub const K8S_REQUEST_WIRE_BYTES: &str = "k8s.apiserver.request.wire_bytes";
pub const K8S_RESPONSE_WIRE_BYTES: &str = "k8s.apiserver.response.wire_bytes";
pub const K8S_REQUEST_CONTENT_TYPE: &str = "k8s.apiserver.request.content_type";
pub const K8S_RESPONSE_CONTENT_TYPE: &str = "k8s.apiserver.response.content_type";
pub const K8S_RESPONSE_CONTENT_ENCODING: &str = "k8s.apiserver.response.content_encoding";
pub const K8S_OBJECT_KIND: &str = "k8s.apiserver.object.kind";
pub const K8S_OBJECT_API_VERSION: &str = "k8s.apiserver.object.api_version";
pub const K8S_OBJECT_RESOURCE_VERSION: &str = "k8s.apiserver.object.resource_version";
pub const K8S_STATUS_REASON: &str = "k8s.apiserver.status.reason";
pub const K8S_STATUS_MESSAGE: &str = "k8s.apiserver.status.message";
pub const K8S_HEADERS_SOURCE: &str = "k8s.apiserver.headers_source";
pub const K8S_INCOMPLETE: &str = "k8s.apiserver.incomplete";
pub const K8S_DECODE_ERRORS: &str = "k8s.apiserver.decode_errors";
pub const K8S_STREAM_ID: &str = "k8s.apiserver.stream_id";
pub const K8S_CAPTURE_LEVEL: &str = "k8s.apiserver.capture_level";

/// OTel's `_OTHER` for methods outside the well-known set (semconv: keeps the attribute bounded).
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// Path segments looked at when building a route template; longer paths end in `{path}`.
const MAX_ROUTE_SEGMENTS: usize = 16;

/// `http.request.method` as semconv wants it: the method, or `_OTHER` for unknown ones.
pub fn semconv_method(method: &str) -> &str {
    if KNOWN_METHODS.contains(&method) {
        method
    } else {
        "_OTHER"
    }
}

/// The apiserver's route template for a request path (`http.route`): literal prefix, group,
/// version and resource, placeholders for the variable parts. Resource requests:
/// `/api/v1/namespaces/{namespace}/configmaps/{name}`,
/// `/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status`,
/// `/api/v1/namespaces/{name}` (the namespace object), `/api/v1/watch/pods`,
/// `/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}`. Non-resource requests are served by
/// literal routes (`/healthz`, `/openapi/v2`, `/apis/apps`), so their template is the path.
pub fn route_template(request: &ApiRequest) -> String {
    if !request.is_resource_request {
        return request.path.clone();
    }
    let segments: Vec<&str> = request
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .take(MAX_ROUTE_SEGMENTS + 1)
        .collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut rest = &segments[..];
    // Prefix: /api/{version} or /apis/{group}/{version}, kept literally (bounded by the
    // server's API surface).
    let prefix_len = match rest.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return request.path.clone(),
    };
    if rest.len() < prefix_len {
        return request.path.clone();
    }
    out.extend_from_slice(&rest[..prefix_len]);
    rest = &rest[prefix_len..];
    // Legacy verb prefixes `/watch/` and `/proxy/`.
    if let Some(first) = rest.first() {
        if *first == "watch" || *first == "proxy" {
            out.push(first);
            rest = &rest[1..];
        }
    }
    // `/namespaces/{ns}/{resource}...` is a namespaced route; `/namespaces/{ns}` and
    // `/namespaces/{ns}/{status|finalize}` are the namespace object itself (RequestInfo's rule).
    if rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && rest[2] != "status"
        && rest[2] != "finalize"
    {
        out.push("namespaces");
        out.push("{namespace}");
        rest = &rest[2..];
    }
    if let Some(resource) = rest.first() {
        out.push(resource);
        rest = &rest[1..];
    }
    if !rest.is_empty() {
        out.push("{name}");
        rest = &rest[1..];
    }
    if let Some(subresource) = rest.first() {
        out.push(subresource);
        rest = &rest[1..];
    }
    if !rest.is_empty() {
        out.push("{path}");
    }
    let mut route = String::with_capacity(request.path.len());
    for segment in out {
        route.push('/');
        route.push_str(segment);
    }
    route
}

/// OTel HTTP span name: `{METHOD} {http.route}`, or the method alone when no route is known.
pub fn span_name(request: &ApiRequest) -> String {
    let method = semconv_method(&request.method);
    let method = if method == "_OTHER" { "HTTP" } else { method };
    let route = route_template(request);
    if route.is_empty() {
        method.to_string()
    } else {
        format!("{method} {route}")
    }
}

/// Every span/log attribute of a request. Empty strings and unknown values are left out (an
/// absent attribute reads better than an empty one). Bodies are never here: they go only into
/// the log record, and only as the capture policy left them (`request_body`/`response_body`).
pub fn span_attributes(request: &ApiRequest) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(48);
    let mut text = |key: &'static str, value: &str| {
        if !value.is_empty() {
            a.push(KeyValue::new(key, value.to_string()));
        }
    };
    text(HTTP_REQUEST_METHOD, semconv_method(&request.method));
    text(HTTP_ROUTE, &route_template(request));
    text(URL_PATH, &request.path);
    text(URL_QUERY, &request.query);
    text(USER_AGENT_ORIGINAL, &request.user_agent);
    text(K8S_VERB, &request.verb);
    text(K8S_METRIC_VERB, &request.metric_verb);
    text(K8S_GROUP, &request.group);
    text(K8S_VERSION, &request.version);
    text(K8S_RESOURCE, &request.resource);
    text(K8S_SUBRESOURCE, &request.subresource);
    text(K8S_NAMESPACE, &request.namespace);
    text(K8S_NAME, &request.name);
    text(K8S_SCOPE, &request.scope);
    text(K8S_AUDIT_ID, request.audit_id.as_deref().unwrap_or(""));
    text(K8S_COMPONENT, &request.component);
    text(
        K8S_SERVICE_ACCOUNT,
        request
            .service_account
            .as_ref()
            .map(|sa| sa.subject.as_str())
            .unwrap_or(""),
    );
    text(
        K8S_IMPERSONATED_USER,
        request
            .impersonation
            .as_ref()
            .map(|i| i.user.as_str())
            .unwrap_or(""),
    );
    text(
        K8S_FLOW_SCHEMA_UID,
        request.flow_schema_uid.as_deref().unwrap_or(""),
    );
    text(
        K8S_PRIORITY_LEVEL_UID,
        request.priority_level_uid.as_deref().unwrap_or(""),
    );
    text(K8S_REQUEST_CONTENT_TYPE, &request.request_content_type);
    text(K8S_RESPONSE_CONTENT_TYPE, &request.response_content_type);
    text(
        K8S_RESPONSE_CONTENT_ENCODING,
        &request.response_content_encoding,
    );
    text(K8S_HEADERS_SOURCE, &request.headers_source);
    text(K8S_INCOMPLETE, request.incomplete.as_deref().unwrap_or(""));
    if let Some(object) = request.object.as_ref() {
        text(K8S_OBJECT_KIND, &object.kind);
        text(K8S_OBJECT_API_VERSION, &object.api_version);
        text(K8S_OBJECT_RESOURCE_VERSION, &object.resource_version);
    }
    if let Some(status) = request.status.as_ref() {
        text(K8S_STATUS_REASON, &status.reason);
        text(K8S_STATUS_MESSAGE, &status.message);
    }
    // The server's own protocol: apiscope sees the plaintext of a TLS server.
    text(URL_SCHEME, "https");
    text(NETWORK_PROTOCOL_NAME, "http");
    text(NETWORK_PROTOCOL_VERSION, &request.protocol);
    text(K8S_CAPTURE_LEVEL, capture_level_name(request));
    // 5xx is an error for a server span (semconv: `error.type` is the status code).
    let code = request.code;
    if let Some(code) = code.filter(|c| *c >= 500) {
        text(ERROR_TYPE, &code.to_string());
    } else if code.is_none() && request.incomplete.is_some() {
        // No response head at all: semconv's fallback error type.
        text(ERROR_TYPE, "_OTHER");
    }

    let mut int = |key: &'static str, value: i64| a.push(KeyValue::new(key, value));
    if let Some(code) = code {
        int(HTTP_RESPONSE_STATUS_CODE, i64::from(code));
    }
    int(
        HTTP_REQUEST_BODY_SIZE,
        saturating_i64(request.request_body_bytes),
    );
    int(
        HTTP_RESPONSE_BODY_SIZE,
        saturating_i64(request.response_body_bytes),
    );
    int(
        K8S_REQUEST_WIRE_BYTES,
        saturating_i64(request.request_wire_bytes),
    );
    int(
        K8S_RESPONSE_WIRE_BYTES,
        saturating_i64(request.response_wire_bytes),
    );
    if request.stream_id != 0 {
        int(K8S_STREAM_ID, i64::from(request.stream_id));
    }
    if request.connection.pid != 0 {
        int(PROCESS_PID, i64::from(request.connection.pid));
    }
    if let Some(seconds) = request.retry_after_seconds {
        int(K8S_RETRY_AFTER, saturating_i64(seconds));
    }
    if let Some(items) = request.list_items {
        int(K8S_LIST_ITEMS, saturating_i64(items));
    }
    if let Some(watch) = request.watch.as_ref() {
        int(K8S_WATCH_EVENTS, saturating_i64(watch.events()));
        int(K8S_WATCH_EVENTS_ADDED, saturating_i64(watch.added));
        int(K8S_WATCH_EVENTS_MODIFIED, saturating_i64(watch.modified));
        int(K8S_WATCH_EVENTS_DELETED, saturating_i64(watch.deleted));
        int(K8S_WATCH_EVENTS_BOOKMARK, saturating_i64(watch.bookmark));
        int(K8S_WATCH_EVENTS_ERROR, saturating_i64(watch.error));
        int(K8S_WATCH_EVENTS_OTHER, saturating_i64(watch.other));
    }
    if !request.decode_errors.is_empty() {
        int(
            K8S_DECODE_ERRORS,
            saturating_i64(request.decode_errors.len() as u64),
        );
    }
    a.push(KeyValue::new(K8S_DRY_RUN, request.dry_run));
    a.push(KeyValue::new(K8S_LONG_RUNNING, request.long_running));

    // Peer and local addresses: on a server-role connection the peer is the client; on a
    // client-role connection (the apiserver calling out) the peer is the server.
    let (client, server) = match request.role {
        Role::Server => (request.peer, request.local),
        Role::Client => (request.local, request.peer),
    };
    if let Some(client) = client {
        a.push(KeyValue::new(CLIENT_ADDRESS, client.ip().to_string()));
        a.push(KeyValue::new(CLIENT_PORT, i64::from(client.port())));
    }
    if let Some(server) = server {
        a.push(KeyValue::new(SERVER_ADDRESS, server.ip().to_string()));
        a.push(KeyValue::new(SERVER_PORT, i64::from(server.port())));
    }
    a
}

/// The capture level as its audit-policy spelling.
pub fn capture_level_name(request: &ApiRequest) -> &'static str {
    use crate::k8s::api_request::CaptureLevel;
    match request.capture_level {
        CaptureLevel::None => "None",
        CaptureLevel::Metadata => "Metadata",
        CaptureLevel::Request => "Request",
        CaptureLevel::RequestResponse => "RequestResponse",
    }
}

/// The inverse of [`span_attributes`]: the request a span's (or log record's) attributes
/// describe, for readers of what apiscope exported (the relay reads it back from Kafka). `role`
/// comes from the span kind (SERVER or CLIENT). What the attributes do not carry stays at its
/// default: times, the connection pointer, bodies, the object's name and namespace, watch bytes,
/// the service account's issuer, the decode errors' text (their count is kept, as placeholders).
/// Kept next to the mapping so the two change together; `span_attributes` of the result equals
/// the attributes it was read from (tested).
pub fn request_from_attributes(attributes: &[KeyValue], role: Role) -> ApiRequest {
    use crate::k8s::api_request::{
        CaptureLevel, Impersonation, ObjectMeta, ServiceAccountRef, StatusInfo, WatchStats,
    };
    let text = |key: &str| match find(attributes, key) {
        Some(Value::String(value)) => value.as_str().to_string(),
        _ => String::new(),
    };
    let optional = |key: &str| Some(text(key)).filter(|v| !v.is_empty());
    let int = |key: &str| match find(attributes, key) {
        Some(Value::I64(value)) => Some(*value),
        _ => None,
    };
    let count = |key: &str| int(key).and_then(|v| u64::try_from(v).ok());
    let flag = |key: &str| matches!(find(attributes, key), Some(Value::Bool(true)));
    let address = |host: &str, port: &str| {
        let ip = text(host).parse::<std::net::IpAddr>().ok()?;
        let port = int(port).and_then(|p| u16::try_from(p).ok())?;
        Some(std::net::SocketAddr::new(ip, port))
    };
    let (client, server) = (
        address(CLIENT_ADDRESS, CLIENT_PORT),
        address(SERVER_ADDRESS, SERVER_PORT),
    );
    let (peer, local) = match role {
        Role::Server => (client, server),
        Role::Client => (server, client),
    };
    let service_account = optional(K8S_SERVICE_ACCOUNT).map(|subject| {
        let mut parts = subject
            .strip_prefix("system:serviceaccount:")
            .unwrap_or("")
            .splitn(2, ':');
        ServiceAccountRef {
            namespace: parts.next().unwrap_or("").to_string(),
            name: parts.next().unwrap_or("").to_string(),
            subject: subject.clone(),
            issuer: String::new(),
        }
    });
    let object = ObjectMeta {
        kind: text(K8S_OBJECT_KIND),
        api_version: text(K8S_OBJECT_API_VERSION),
        resource_version: text(K8S_OBJECT_RESOURCE_VERSION),
        ..ObjectMeta::default()
    };
    let status = StatusInfo {
        reason: text(K8S_STATUS_REASON),
        message: text(K8S_STATUS_MESSAGE),
        ..StatusInfo::default()
    };
    let watch = int(K8S_WATCH_EVENTS).map(|_| WatchStats {
        added: count(K8S_WATCH_EVENTS_ADDED).unwrap_or(0),
        modified: count(K8S_WATCH_EVENTS_MODIFIED).unwrap_or(0),
        deleted: count(K8S_WATCH_EVENTS_DELETED).unwrap_or(0),
        bookmark: count(K8S_WATCH_EVENTS_BOOKMARK).unwrap_or(0),
        error: count(K8S_WATCH_EVENTS_ERROR).unwrap_or(0),
        other: count(K8S_WATCH_EVENTS_OTHER).unwrap_or(0),
        bytes: 0,
    });
    let decode_errors = count(K8S_DECODE_ERRORS).unwrap_or(0).min(64);
    let resource = text(K8S_RESOURCE);
    ApiRequest {
        audit_id: optional(K8S_AUDIT_ID),
        verb: text(K8S_VERB),
        metric_verb: text(K8S_METRIC_VERB),
        is_resource_request: !resource.is_empty(),
        group: text(K8S_GROUP),
        version: text(K8S_VERSION),
        resource,
        subresource: text(K8S_SUBRESOURCE),
        namespace: text(K8S_NAMESPACE),
        name: text(K8S_NAME),
        scope: text(K8S_SCOPE),
        dry_run: flag(K8S_DRY_RUN),
        long_running: flag(K8S_LONG_RUNNING),
        method: text(HTTP_REQUEST_METHOD),
        path: text(URL_PATH),
        query: text(URL_QUERY),
        code: int(HTTP_RESPONSE_STATUS_CODE).and_then(|c| u16::try_from(c).ok()),
        protocol: text(NETWORK_PROTOCOL_VERSION),
        stream_id: int(K8S_STREAM_ID)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        request_content_type: text(K8S_REQUEST_CONTENT_TYPE),
        response_content_type: text(K8S_RESPONSE_CONTENT_TYPE),
        response_content_encoding: text(K8S_RESPONSE_CONTENT_ENCODING),
        request_body_bytes: count(HTTP_REQUEST_BODY_SIZE).unwrap_or(0),
        response_body_bytes: count(HTTP_RESPONSE_BODY_SIZE).unwrap_or(0),
        request_wire_bytes: count(K8S_REQUEST_WIRE_BYTES).unwrap_or(0),
        response_wire_bytes: count(K8S_RESPONSE_WIRE_BYTES).unwrap_or(0),
        headers_source: text(K8S_HEADERS_SOURCE),
        incomplete: optional(K8S_INCOMPLETE),
        user_agent: text(USER_AGENT_ORIGINAL),
        component: text(K8S_COMPONENT),
        service_account,
        impersonation: optional(K8S_IMPERSONATED_USER).map(|user| Impersonation {
            user,
            ..Impersonation::default()
        }),
        peer,
        local,
        connection: crate::vocabulary::ConnectionId {
            pid: int(PROCESS_PID)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            ..Default::default()
        },
        role,
        flow_schema_uid: optional(K8S_FLOW_SCHEMA_UID),
        priority_level_uid: optional(K8S_PRIORITY_LEVEL_UID),
        retry_after_seconds: count(K8S_RETRY_AFTER),
        object: (object != ObjectMeta::default()).then_some(object),
        status: (status != StatusInfo::default()).then_some(status),
        watch,
        list_items: count(K8S_LIST_ITEMS),
        decode_errors: (0..decode_errors)
            .map(|_| "(not exported: only the count is in the attributes)".to_string())
            .collect(),
        capture_level: match text(K8S_CAPTURE_LEVEL).as_str() {
            "None" => CaptureLevel::None,
            "Request" => CaptureLevel::Request,
            "RequestResponse" => CaptureLevel::RequestResponse,
            _ => CaptureLevel::Metadata,
        },
        ..ApiRequest::default()
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Looks an attribute up by key (tests and the log body use it).
pub fn find<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::fixtures;

    #[test]
    fn the_inverse_reads_back_what_the_mapping_wrote() {
        use crate::k8s::api_request::{CaptureLevel, Impersonation, ObjectMeta, StatusInfo};
        let mut everything = fixtures::create_configmap();
        everything.object = Some(ObjectMeta {
            kind: "ConfigMap".into(),
            api_version: "v1".into(),
            resource_version: "42".into(),
            ..ObjectMeta::default()
        });
        everything.status = Some(StatusInfo {
            reason: "AlreadyExists".into(),
            message: "configmaps \"app-config\" already exists".into(),
            ..StatusInfo::default()
        });
        everything.impersonation = Some(Impersonation {
            user: "alice".into(),
            ..Impersonation::default()
        });
        everything.flow_schema_uid = Some("fs-uid".into());
        everything.priority_level_uid = Some("pl-uid".into());
        everything.request_content_type = "application/json".into();
        everything.response_content_encoding = "gzip".into();
        everything.decode_errors = vec!["bad json".into(), "gzip over cap".into()];
        everything.list_items = Some(12);
        everything.connection.pid = 4242;
        everything.capture_level = CaptureLevel::RequestResponse;
        let mut unfinished = fixtures::request("GET", "/api/v1/pods", 200, 5);
        unfinished.code = None;
        unfinished.incomplete = Some("reset".into());
        let mut outgoing = fixtures::request("POST", "/apis/admission.example/v1/review", 200, 5);
        outgoing.role = Role::Client;
        for request in [
            fixtures::create_configmap(),
            fixtures::watch_pods(),
            fixtures::throttled_list(),
            fixtures::healthz(),
            fixtures::dry_run_update_by_service_account(),
            everything,
            unfinished,
            outgoing,
        ] {
            let attributes = span_attributes(&request);
            let back = request_from_attributes(&attributes, request.role);
            assert_eq!(
                span_attributes(&back),
                attributes,
                "{} {}",
                request.method,
                request.path
            );
            assert_eq!(
                (
                    &back.verb,
                    &back.resource,
                    &back.namespace,
                    &back.name,
                    back.code
                ),
                (
                    &request.verb,
                    &request.resource,
                    &request.namespace,
                    &request.name,
                    request.code
                )
            );
            assert_eq!(
                (back.peer, back.local, back.role),
                (request.peer, request.local, request.role)
            );
            assert_eq!(
                back.service_account
                    .as_ref()
                    .map(|sa| (&sa.namespace, &sa.name)),
                request
                    .service_account
                    .as_ref()
                    .map(|sa| (&sa.namespace, &sa.name))
            );
            assert_eq!(
                back.watch.as_ref().map(|w| w.events()),
                request.watch.as_ref().map(|w| w.events())
            );
        }
    }

    fn s(v: &str) -> Value {
        Value::from(v.to_string())
    }

    /// Checks `expected` entries exactly and that `absent` keys are not there.
    fn check(request: &ApiRequest, expected: &[(&str, Value)], absent: &[&str]) {
        let attributes = span_attributes(request);
        for (key, value) in expected {
            assert_eq!(
                find(&attributes, key),
                Some(value),
                "{key} of {} {}",
                request.method,
                request.path
            );
        }
        for key in absent {
            assert_eq!(find(&attributes, key), None, "{key} should be absent");
        }
        // One value per key: spans and logs must not carry duplicates.
        let mut keys: Vec<&str> = attributes.iter().map(|kv| kv.key.as_str()).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len(), "duplicate keys in {attributes:?}");
    }

    #[test]
    fn create_maps_to_semconv_and_k8s_attributes() {
        let r = fixtures::create_configmap();
        check(
            &r,
            &[
                (HTTP_REQUEST_METHOD, s("POST")),
                (HTTP_ROUTE, s("/api/v1/namespaces/{namespace}/configmaps")),
                (URL_PATH, s("/api/v1/namespaces/default/configmaps")),
                (URL_QUERY, s("fieldManager=kubectl-create")),
                (URL_SCHEME, s("https")),
                (HTTP_RESPONSE_STATUS_CODE, Value::I64(201)),
                (
                    USER_AGENT_ORIGINAL,
                    s("kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19"),
                ),
                (CLIENT_ADDRESS, s("10.0.0.7")),
                (CLIENT_PORT, Value::I64(51234)),
                (SERVER_ADDRESS, s("10.0.0.1")),
                (SERVER_PORT, Value::I64(6443)),
                (NETWORK_PROTOCOL_NAME, s("http")),
                (NETWORK_PROTOCOL_VERSION, s("2")),
                (HTTP_REQUEST_BODY_SIZE, Value::I64(180)),
                (HTTP_RESPONSE_BODY_SIZE, Value::I64(2500)),
                (K8S_VERB, s("create")),
                (K8S_METRIC_VERB, s("POST")),
                (K8S_VERSION, s("v1")),
                (K8S_RESOURCE, s("configmaps")),
                (K8S_NAMESPACE, s("default")),
                (K8S_NAME, s("app-config")),
                (K8S_SCOPE, s("resource")),
                (K8S_AUDIT_ID, s("6f1c9e4a-0000-4000-8000-000000000001")),
                (K8S_COMPONENT, s("kubectl")),
                (K8S_DRY_RUN, Value::Bool(false)),
                (K8S_LONG_RUNNING, Value::Bool(false)),
                (K8S_CAPTURE_LEVEL, s("Metadata")),
                (K8S_STREAM_ID, Value::I64(7)),
            ],
            &[
                K8S_GROUP,
                K8S_SUBRESOURCE,
                ERROR_TYPE,
                K8S_WATCH_EVENTS,
                K8S_RETRY_AFTER,
                K8S_SERVICE_ACCOUNT,
            ],
        );
        assert_eq!(
            span_name(&r),
            "POST /api/v1/namespaces/{namespace}/configmaps"
        );
    }

    #[test]
    fn watch_carries_event_counts() {
        let r = fixtures::watch_pods();
        check(
            &r,
            &[
                (HTTP_ROUTE, s("/api/v1/namespaces/{namespace}/pods")),
                (K8S_VERB, s("watch")),
                (K8S_METRIC_VERB, s("WATCH")),
                (K8S_LONG_RUNNING, Value::Bool(true)),
                (K8S_WATCH_EVENTS, Value::I64(11)),
                (K8S_WATCH_EVENTS_ADDED, Value::I64(3)),
                (K8S_WATCH_EVENTS_MODIFIED, Value::I64(5)),
                (K8S_WATCH_EVENTS_DELETED, Value::I64(1)),
                (K8S_WATCH_EVENTS_BOOKMARK, Value::I64(2)),
                (K8S_WATCH_EVENTS_ERROR, Value::I64(0)),
                (K8S_WATCH_EVENTS_OTHER, Value::I64(0)),
            ],
            &[],
        );
        assert_eq!(span_name(&r), "GET /api/v1/namespaces/{namespace}/pods");
    }

    #[test]
    fn throttled_request_has_retry_after_and_apf_uids() {
        let r = fixtures::throttled_list();
        check(
            &r,
            &[
                (HTTP_RESPONSE_STATUS_CODE, Value::I64(429)),
                (HTTP_ROUTE, s("/apis/apps/v1/deployments")),
                (K8S_GROUP, s("apps")),
                (K8S_METRIC_VERB, s("LIST")),
                (K8S_SCOPE, s("cluster")),
                (K8S_RETRY_AFTER, Value::I64(1)),
                (K8S_FLOW_SCHEMA_UID, s("fs-uid-1")),
                (K8S_PRIORITY_LEVEL_UID, s("pl-uid-1")),
                (K8S_STATUS_REASON, s("TooManyRequests")),
                (
                    K8S_STATUS_MESSAGE,
                    s("Too many requests, please try again later."),
                ),
            ],
            // 4xx is not a server error.
            &[ERROR_TYPE],
        );
    }

    #[test]
    fn non_resource_request_uses_its_path_as_route() {
        let r = fixtures::healthz();
        check(
            &r,
            &[
                (HTTP_ROUTE, s("/healthz")),
                (K8S_VERB, s("get")),
                (K8S_METRIC_VERB, s("GET")),
                (K8S_COMPONENT, s("kube-probe")),
            ],
            &[K8S_RESOURCE, K8S_SCOPE, K8S_GROUP, K8S_VERSION, URL_QUERY],
        );
        assert_eq!(span_name(&r), "GET /healthz");
    }

    #[test]
    fn dry_run_by_service_account() {
        let r = fixtures::dry_run_update_by_service_account();
        check(
            &r,
            &[
                (
                    HTTP_ROUTE,
                    s("/apis/apps/v1/namespaces/{namespace}/deployments/{name}"),
                ),
                (K8S_DRY_RUN, Value::Bool(true)),
                (K8S_METRIC_VERB, s("PUT")),
                (
                    K8S_SERVICE_ACCOUNT,
                    s("system:serviceaccount:argocd:argocd-application-controller"),
                ),
                (K8S_COMPONENT, s("argocd-application-controller")),
            ],
            &[],
        );
    }

    #[test]
    fn server_errors_and_missing_responses_set_error_type() {
        let mut r = fixtures::request("GET", "/api/v1/nodes/n1", 503, 5);
        check(&r, &[(ERROR_TYPE, s("503"))], &[]);
        r.code = None;
        r.incomplete = Some("stream reset".into());
        check(
            &r,
            &[
                (ERROR_TYPE, s("_OTHER")),
                (K8S_INCOMPLETE, s("stream reset")),
            ],
            &[HTTP_RESPONSE_STATUS_CODE],
        );
    }

    #[test]
    fn route_templates() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/default/configmaps/cm1",
                "/api/v1/namespaces/{namespace}/configmaps/{name}",
            ),
            (
                "GET",
                "/api/v1/namespaces/default",
                "/api/v1/namespaces/{name}",
            ),
            (
                "PUT",
                "/api/v1/namespaces/default/finalize",
                "/api/v1/namespaces/{name}/finalize",
            ),
            (
                "GET",
                "/api/v1/nodes/n1/status",
                "/api/v1/nodes/{name}/status",
            ),
            ("GET", "/api/v1/watch/pods", "/api/v1/watch/pods"),
            (
                "GET",
                "/api/v1/watch/namespaces/ns/pods/p",
                "/api/v1/watch/namespaces/{namespace}/pods/{name}",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods/p/proxy/a/b",
                "/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path}",
            ),
            ("GET", "/apis/apps/v1", "/apis/apps/v1"),
            ("GET", "/openapi/v2", "/openapi/v2"),
        ];
        for (method, target, route) in cases {
            let r = fixtures::request(method, target, 200, 1);
            assert_eq!(route_template(&r), route, "{target}");
        }
        let mut odd = fixtures::request("GET", "/api/v1/pods", 200, 1);
        odd.method = "PROPFIND".into();
        assert_eq!(semconv_method(&odd.method), "_OTHER");
        assert_eq!(span_name(&odd), "HTTP /api/v1/pods");
    }
}
