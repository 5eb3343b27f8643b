//! The fields a filter can name: each one an `ApiRequest` field (or a value read straight from
//! one), with its type. Reading a field never allocates.

use crate::k8s::ApiRequest;
use crate::k8s::api_request::CaptureLevel;
use crate::vocabulary::Role;

/// What a field holds, which decides the operators and literals it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Text; absent values read as "".
    String,
    /// Text with a fixed set of values; comparing with any other value is an error.
    Enumerated(&'static [&'static str]),
    /// A number that may be absent (`code` before a response head).
    Number,
    /// Seconds; compares with durations (`250ms`) or plain numbers of seconds.
    Duration,
    Bool,
}

impl FieldType {
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::String | FieldType::Enumerated(_) => "a string",
            FieldType::Number => "a number",
            FieldType::Duration => "a duration",
            FieldType::Bool => "a bool",
        }
    }
}

/// One field's value in one request, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FieldValue<'a> {
    Str(&'a str),
    /// `None`: the request has no such number (no response code, not a watch...).
    Number(Option<f64>),
    Bool(bool),
}

const CAPTURE_LEVELS: &[&str] = &["None", "Metadata", "Request", "RequestResponse"];
const ROLES: &[&str] = &["server", "client"];

/// A field a filter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Verb,
    MetricVerb,
    Group,
    Version,
    Resource,
    Subresource,
    Namespace,
    Name,
    Scope,
    Method,
    Path,
    Query,
    Code,
    Latency,
    Protocol,
    Client,
    UserAgent,
    User,
    ServiceAccountNamespace,
    ServiceAccountName,
    ImpersonatedUser,
    AuditId,
    RequestBytes,
    ResponseBytes,
    RequestWireBytes,
    ResponseWireBytes,
    RequestContentType,
    ResponseContentType,
    Role,
    CaptureLevel,
    HeadersSource,
    Incomplete,
    StatusReason,
    RetryAfter,
    ListItems,
    WatchEvents,
    ResourceRequest,
    LongRunning,
    DryRun,
}

/// Every field: name, field, type, what it is (docs/filter.md lists the same).
#[rustfmt::skip]
pub const FIELDS: &[(&str, Field, FieldType, &str)] = &[
    ("verb", Field::Verb, FieldType::String, "RequestInfo verb: get, list, watch, create, ..."),
    ("metric_verb", Field::MetricVerb, FieldType::String, "apiserver_request_total's verb: GET, LIST, WATCH, APPLY, ..."),
    ("group", Field::Group, FieldType::String, "API group (\"\" for the core group)"),
    ("version", Field::Version, FieldType::String, "API version"),
    ("resource", Field::Resource, FieldType::String, "resource (pods, configmaps, ...)"),
    ("subresource", Field::Subresource, FieldType::String, "subresource (status, log, ...)"),
    ("namespace", Field::Namespace, FieldType::String, "namespace of the request"),
    ("name", Field::Name, FieldType::String, "object name in the path"),
    ("scope", Field::Scope, FieldType::String, "resource, namespace, cluster or \"\""),
    ("method", Field::Method, FieldType::String, "HTTP method"),
    ("path", Field::Path, FieldType::String, "URL path without the query"),
    ("query", Field::Query, FieldType::String, "URL query"),
    ("code", Field::Code, FieldType::Number, "HTTP status (absent without a response head)"),
    ("latency", Field::Latency, FieldType::Duration, "first request byte to last response byte (duration_seconds)"),
    ("protocol", Field::Protocol, FieldType::String, "\"1.1\" or \"2\""),
    ("client", Field::Client, FieldType::String, "component from the User-Agent (kubelet, kubectl, ...)"),
    ("user_agent", Field::UserAgent, FieldType::String, "User-Agent header"),
    ("user", Field::User, FieldType::String, "bearer JWT subject, e.g. system:serviceaccount:kube-system:default"),
    ("service_account_namespace", Field::ServiceAccountNamespace, FieldType::String, "service account namespace from the bearer JWT"),
    ("service_account", Field::ServiceAccountName, FieldType::String, "service account name from the bearer JWT"),
    ("impersonated_user", Field::ImpersonatedUser, FieldType::String, "Impersonate-User header"),
    ("audit_id", Field::AuditId, FieldType::String, "Audit-ID response header"),
    ("request_bytes", Field::RequestBytes, FieldType::Number, "request body bytes as sent"),
    ("response_bytes", Field::ResponseBytes, FieldType::Number, "response body bytes as sent"),
    ("request_wire_bytes", Field::RequestWireBytes, FieldType::Number, "request bytes on the wire, overhead included"),
    ("response_wire_bytes", Field::ResponseWireBytes, FieldType::Number, "response bytes on the wire, overhead included"),
    ("request_content_type", Field::RequestContentType, FieldType::String, "request Content-Type"),
    ("response_content_type", Field::ResponseContentType, FieldType::String, "response Content-Type"),
    ("role", Field::Role, FieldType::Enumerated(ROLES), "server (incoming requests) or client (the apiserver's own calls)"),
    ("capture_level", Field::CaptureLevel, FieldType::Enumerated(CAPTURE_LEVELS), "None, Metadata, Request or RequestResponse"),
    ("headers_source", Field::HeadersSource, FieldType::String, "wire or hook"),
    ("incomplete", Field::Incomplete, FieldType::String, "why the exchange did not complete (\"\" when it did)"),
    ("status_reason", Field::StatusReason, FieldType::String, "reason of an error response's Status (NotFound, ...)"),
    ("retry_after", Field::RetryAfter, FieldType::Number, "Retry-After seconds of a 429"),
    ("list_items", Field::ListItems, FieldType::Number, "items in a decoded LIST response"),
    ("watch_events", Field::WatchEvents, FieldType::Number, "events a watch delivered"),
    ("resource_request", Field::ResourceRequest, FieldType::Bool, "a resource (not a non-resource URL) request"),
    ("long_running", Field::LongRunning, FieldType::Bool, "watch, proxy, exec, ... (not subject to the request timeout)"),
    ("dry_run", Field::DryRun, FieldType::Bool, "dryRun=All"),
];

/// The field called `name` (exact, lower case).
pub fn lookup(name: &str) -> Option<(Field, FieldType)> {
    FIELDS
        .iter()
        .find(|(known, ..)| *known == name)
        .map(|&(_, field, field_type, _)| (field, field_type))
}

/// Known names close to `name` (a typo, a missing underscore, camelCase), closest first.
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let wanted = name.to_ascii_lowercase().replace(['-', '.'], "_");
    let squashed = wanted.replace('_', "");
    let mut close: Vec<(usize, &'static str)> = FIELDS
        .iter()
        .filter_map(|&(known, ..)| {
            let distance = edit_distance(&wanted, known)
                .min(edit_distance(&squashed, &known.replace('_', "")));
            let near = distance <= 2 || (wanted.len() >= 3 && known.starts_with(&wanted));
            near.then_some((distance, known))
        })
        .collect();
    close.sort();
    close.into_iter().take(3).map(|(_, known)| known).collect()
}

/// Levenshtein distance over chars; the names are short (and bounded by the filter's length).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

impl Field {
    pub fn read(self, request: &ApiRequest) -> FieldValue<'_> {
        use FieldValue::{Bool, Number, Str};
        let number = |n: u64| Number(Some(n as f64));
        match self {
            Field::Verb => Str(&request.verb),
            Field::MetricVerb => Str(&request.metric_verb),
            Field::Group => Str(&request.group),
            Field::Version => Str(&request.version),
            Field::Resource => Str(&request.resource),
            Field::Subresource => Str(&request.subresource),
            Field::Namespace => Str(&request.namespace),
            Field::Name => Str(&request.name),
            Field::Scope => Str(&request.scope),
            Field::Method => Str(&request.method),
            Field::Path => Str(&request.path),
            Field::Query => Str(&request.query),
            Field::Code => Number(request.code.map(f64::from)),
            Field::Latency => Number(Some(request.duration_seconds)),
            Field::Protocol => Str(&request.protocol),
            Field::Client => Str(&request.component),
            Field::UserAgent => Str(&request.user_agent),
            Field::User => Str(request
                .service_account
                .as_ref()
                .map_or("", |account| &account.subject)),
            Field::ServiceAccountNamespace => Str(request
                .service_account
                .as_ref()
                .map_or("", |account| &account.namespace)),
            Field::ServiceAccountName => Str(request
                .service_account
                .as_ref()
                .map_or("", |account| &account.name)),
            Field::ImpersonatedUser => Str(request
                .impersonation
                .as_ref()
                .map_or("", |impersonation| &impersonation.user)),
            Field::AuditId => Str(request.audit_id.as_deref().unwrap_or("")),
            Field::RequestBytes => number(request.request_body_bytes),
            Field::ResponseBytes => number(request.response_body_bytes),
            Field::RequestWireBytes => number(request.request_wire_bytes),
            Field::ResponseWireBytes => number(request.response_wire_bytes),
            Field::RequestContentType => Str(&request.request_content_type),
            Field::ResponseContentType => Str(&request.response_content_type),
            Field::Role => Str(match request.role {
                Role::Server => "server",
                Role::Client => "client",
            }),
            Field::CaptureLevel => Str(match request.capture_level {
                CaptureLevel::None => "None",
                CaptureLevel::Metadata => "Metadata",
                CaptureLevel::Request => "Request",
                CaptureLevel::RequestResponse => "RequestResponse",
            }),
            Field::HeadersSource => Str(&request.headers_source),
            Field::Incomplete => Str(request.incomplete.as_deref().unwrap_or("")),
            Field::StatusReason => Str(request.status.as_ref().map_or("", |status| &status.reason)),
            Field::RetryAfter => Number(request.retry_after_seconds.map(|s| s as f64)),
            Field::ListItems => Number(request.list_items.map(|n| n as f64)),
            Field::WatchEvents => Number(request.watch.as_ref().map(|w| w.events() as f64)),
            Field::ResourceRequest => Bool(request.is_resource_request),
            Field::LongRunning => Bool(request.long_running),
            Field::DryRun => Bool(request.dry_run),
        }
    }
}
