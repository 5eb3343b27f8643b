//! Request metrics: the apiserver's own request metrics, rebuilt from what apiscope saw, in the
//! Prometheus registry served at `/metrics` and (optionally) mirrored to OTLP.
//!
//! Names are the apiserver's with `apiserver_` replaced by `apiscope_` (and the unit spelled out
//! on `apiscope_response_sizes_bytes`), labels and buckets are the apiserver's
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go`), so kubernetes-mixin's
//! recording rules and alerts work after renaming the metric only (design.md section 8).
//!
//! What mirrors v1.20's `MonitorRequest`:
//! - `component` is the apiserver's `APIServerComponent`, i.e. `"apiserver"`, for every request
//!   it served through its resource handlers; the calling program (the old `client` label) is the
//!   separate, bounded `client` label.
//! - Only resource requests are counted in `apiscope_request_total` and the histograms: the
//!   apiserver's installer does not instrument non-resource paths (`/healthz`, `/openapi/v2`,
//!   discovery). apiscope counts those in `apiscope_nonresource_request_total` so they do not
//!   distort mixin SLIs.
//! - The duration histogram observes every verb, WATCH and CONNECT included (v1.20 does:
//!   `requestLatencies` is observed unconditionally; the mixin excludes them in its queries).
//! - Response sizes are observed for the verbs the route was registered as GET or LIST: GET,
//!   LIST, and WATCH reached through `?watch=true` on a list route (the installer's verb is LIST
//!   there; only the reported verb becomes WATCH). `/watch/`-prefix watches are not observed.
//! - Only requests the traced apiserver *served* (server-role connections) are counted; its own
//!   outgoing calls (webhooks, aggregated APIs) are not `apiserver_request_total` material.
//!
//! Requests in flight cannot be known from completed requests (an `ApiRequest` exists only once
//! the exchange ended), so there is no in-flight or long-running gauge here; watch events are
//! counted when their watch ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter as OtelCounter, Histogram as OtelHistogram, Meter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::k8s::ApiRequest;
use crate::k8s::client::BoundedLabel;
use crate::k8s::open_requests::OpenRequest;
use crate::k8s::release::{KubernetesRelease, LabelRules};
use crate::k8s::request_info::dry_run_label;
use crate::vocabulary::Role;

/// `apiserver_request_duration_seconds` buckets (design.md section 5; they contain the mixin's
/// 1 s, 5 s and 30 s thresholds).
pub const DURATION_BUCKETS: [f64; 21] = [
    0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0,
    30.0, 45.0, 60.0,
];

/// `apiserver_response_sizes` buckets: `ExponentialBuckets(1000, 10, 7)`, 1 kB to 1 GB.
pub const RESPONSE_SIZE_BUCKETS: [f64; 7] = [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The apiserver's `APIServerComponent`.
pub const APISERVER_COMPONENT: &str = "apiserver";

/// Label value bounds: values past these become `other` (and are counted in
/// `apiscope_request_label_overflow_total`).
#[derive(Clone, Copy, Debug)]
pub struct LabelLimits {
    /// Distinct `client` values (components from the User-Agent) besides the well-known ones.
    pub clients: usize,
    pub groups: usize,
    pub versions: usize,
    pub resources: usize,
    pub subresources: usize,
    /// Distinct APF flow schema UIDs, and separately priority level UIDs.
    pub apf_uids: usize,
    /// Distinct non-resource paths.
    pub paths: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        LabelLimits {
            clients: 64,
            groups: 128,
            versions: 64,
            resources: 512,
            subresources: 64,
            apf_uids: 64,
            paths: 64,
        }
    }
}

/// `apiscope_request_total`: `apiserver_request_total`'s labels plus `client`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
    pub code: String,
    pub client: String,
}

/// `apiscope_request_duration_seconds`: `apiserver_request_duration_seconds`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: String,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

/// `apiscope_response_sizes_bytes` (`apiserver_response_sizes`) and
/// `apiscope_longrunning_requests` (`apiserver_longrunning_gauge`): the same labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

/// `apiscope_inflight_requests` labels, as the apiserver's `apiserver_current_inflight_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InflightLabels {
    /// `readOnly` (GET, HEAD) or `mutating`.
    pub request_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchEventLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
    /// ADDED, MODIFIED, DELETED, BOOKMARK, ERROR, or OTHER (undecodable frames, unknown types).
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchBytesLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottledLabels {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub client: String,
    pub flow_schema_uid: String,
    pub priority_level_uid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApfLabels {
    pub flow_schema_uid: String,
    pub priority_level_uid: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NonResourceLabels {
    pub verb: String,
    pub path: String,
    pub code: String,
    pub client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    pub label: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(RESPONSE_SIZE_BUCKETS)
}

/// The same instruments as OTel metrics, recorded alongside the Prometheus ones.
#[derive(Clone, Debug)]
struct OtelInstruments {
    requests: OtelCounter<u64>,
    duration: OtelHistogram<f64>,
    response_sizes: OtelHistogram<u64>,
    watch_events: OtelCounter<u64>,
    watch_bytes: OtelCounter<u64>,
    throttled: OtelCounter<u64>,
    apf: OtelCounter<u64>,
    nonresource: OtelCounter<u64>,
}

impl OtelInstruments {
    /// OTLP names equal the Prometheus names, so a collector exporting to Prometheus (which
    /// keeps an existing `_total`/unit suffix) produces the same series as the scrape endpoint.
    fn new(meter: &Meter) -> Self {
        OtelInstruments {
            requests: meter
                .u64_counter("apiscope_request_total")
                .with_description(REQUEST_TOTAL_HELP)
                .build(),
            duration: meter
                .f64_histogram("apiscope_request_duration_seconds")
                .with_description(DURATION_HELP)
                .with_unit("s")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            response_sizes: meter
                .u64_histogram("apiscope_response_sizes_bytes")
                .with_description(SIZES_HELP)
                .with_unit("By")
                .with_boundaries(RESPONSE_SIZE_BUCKETS.to_vec())
                .build(),
            watch_events: meter
                .u64_counter("apiscope_watch_events_total")
                .with_description(WATCH_EVENTS_HELP)
                .build(),
            watch_bytes: meter
                .u64_counter("apiscope_watch_response_bytes_total")
                .with_description(WATCH_BYTES_HELP)
                .with_unit("By")
                .build(),
            throttled: meter
                .u64_counter("apiscope_request_throttled_total")
                .with_description(THROTTLED_HELP)
                .build(),
            apf: meter
                .u64_counter("apiscope_apf_requests_total")
                .with_description(APF_HELP)
                .build(),
            nonresource: meter
                .u64_counter("apiscope_nonresource_request_total")
                .with_description(NONRESOURCE_HELP)
                .build(),
        }
    }
}

const REQUEST_TOTAL_HELP: &str = "API requests seen, by apiserver_request_total's labels (verb, dry_run, group, version, resource, subresource, scope, component, code) and the calling client (bounded)";
const DURATION_HELP: &str = "Request duration as seen on the wire (first request byte to last response byte), by apiserver_request_duration_seconds's labels";
const SIZES_HELP: &str = "Response body size as sent (compressed if gzip), for GET and LIST routes, by apiserver_response_sizes's labels";
const WATCH_EVENTS_HELP: &str =
    "Watch events sent, counted when the watch ends, by resource and event type";
const WATCH_BYTES_HELP: &str = "Watch response body bytes, counted when the watch ends";
const THROTTLED_HELP: &str =
    "Requests answered 429 Too Many Requests (max-in-flight or APF rejection)";
const APF_HELP: &str = "Requests classified by API Priority and Fairness (responses carrying X-Kubernetes-PF-* headers), by flow schema and priority level UID and code";
const NONRESOURCE_HELP: &str = "Non-resource requests (/healthz, /openapi, discovery...), by path; those the traced apiserver counts in apiserver_request_total (e.g. /openapi/v3 from v1.2x on) are in apiscope_request_total too";
const OVERFLOW_HELP: &str =
    "Label values replaced by \"other\" because the label's distinct-value bound was reached";

/// The request metrics. Cheap to share (`Arc`); `observe` takes `&self`.
#[derive(Debug)]
pub struct RequestMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: HistogramFamily<DurationLabels>,
    pub response_sizes: HistogramFamily<ResourceLabels>,
    pub watch_events: Family<WatchEventLabels, Counter>,
    pub watch_bytes: Family<WatchBytesLabels, Counter>,
    pub throttled: Family<ThrottledLabels, Counter>,
    pub apf: Family<ApfLabels, Counter>,
    pub nonresource: Family<NonResourceLabels, Counter>,
    pub label_overflow: Family<OverflowLabels, Counter>,
    /// Requests started but not answered yet, long-running ones excluded.
    pub inflight: Family<InflightLabels, Gauge>,
    /// Open long-running requests (watches, exec, proxy...).
    pub longrunning: Family<ResourceLabels, Gauge>,
    clients: BoundedLabel,
    groups: BoundedLabel,
    versions: BoundedLabel,
    resources: BoundedLabel,
    subresources: BoundedLabel,
    flow_schemas: BoundedLabel,
    priority_levels: BoundedLabel,
    paths: BoundedLabel,
    otel: Option<OtelInstruments>,
    /// The traced apiserver's minor release, whose labelling rules apply: 0 while unknown (the
    /// newest rules apply), learnt from the apiserver's loopback User-Agent unless fixed.
    release_minor: AtomicU32,
    /// Set by [`RequestMetrics::set_release`] (`--kubernetes-version`): traffic does not
    /// override it.
    release_fixed: std::sync::atomic::AtomicBool,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics::new(LabelLimits::default())
    }
}

impl RequestMetrics {
    pub fn new(limits: LabelLimits) -> Self {
        RequestMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            response_sizes: Family::new_with_constructor(size_histogram),
            watch_events: Family::default(),
            watch_bytes: Family::default(),
            throttled: Family::default(),
            apf: Family::default(),
            nonresource: Family::default(),
            label_overflow: Family::default(),
            inflight: Family::default(),
            longrunning: Family::default(),
            clients: BoundedLabel::new(limits.clients),
            groups: BoundedLabel::new(limits.groups),
            versions: BoundedLabel::new(limits.versions),
            resources: BoundedLabel::new(limits.resources),
            subresources: BoundedLabel::new(limits.subresources),
            flow_schemas: BoundedLabel::new(limits.apf_uids),
            priority_levels: BoundedLabel::new(limits.apf_uids),
            paths: BoundedLabel::new(limits.paths),
            otel: None,
            release_minor: AtomicU32::new(0),
            release_fixed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Follows the labelling rules of `release` from now on, whatever the traffic says.
    pub fn set_release(&self, release: KubernetesRelease) {
        self.release_minor.store(release.minor, Ordering::Relaxed);
        self.release_fixed.store(true, Ordering::Relaxed);
    }

    /// Whether `set_release` was called (a flag or the binary named the release).
    pub fn release_fixed(&self) -> bool {
        self.release_fixed.load(Ordering::Relaxed)
    }

    /// The rules in force for `request`, learning the release from the apiserver's loopback
    /// client when it is not fixed.
    pub fn label_rules(&self, request: &ApiRequest) -> LabelRules {
        if !self.release_fixed.load(Ordering::Relaxed) {
            if let Some(release) = KubernetesRelease::from_user_agent(&request.user_agent) {
                self.release_minor.store(release.minor, Ordering::Relaxed);
            }
        }
        match self.release_minor.load(Ordering::Relaxed) {
            0 => LabelRules::default(),
            minor => LabelRules::for_release(Some(KubernetesRelease { minor, patch: 0 })),
        }
    }

    /// Also records every observation into OTel instruments made from `meter` (exported by the
    /// OTLP sink's meter provider).
    pub fn with_otel(mut self, meter: &Meter) -> Self {
        self.otel = Some(OtelInstruments::new(meter));
        self
    }

    pub fn into_shared(self) -> Arc<Self> {
        Arc::new(self)
    }

    pub fn register(&self, registry: &mut Registry) {
        // Counters get `_total` from prometheus-client; units are appended by register_with_unit.
        registry.register(
            "apiscope_request",
            REQUEST_TOTAL_HELP,
            self.requests.clone(),
        );
        registry.register_with_unit(
            "apiscope_request_duration",
            DURATION_HELP,
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register_with_unit(
            "apiscope_response_sizes",
            SIZES_HELP,
            Unit::Bytes,
            self.response_sizes.clone(),
        );
        registry.register(
            "apiscope_watch_events",
            WATCH_EVENTS_HELP,
            self.watch_events.clone(),
        );
        registry.register_with_unit(
            "apiscope_watch_response",
            WATCH_BYTES_HELP,
            Unit::Bytes,
            self.watch_bytes.clone(),
        );
        registry.register(
            "apiscope_request_throttled",
            THROTTLED_HELP,
            self.throttled.clone(),
        );
        registry.register("apiscope_apf_requests", APF_HELP, self.apf.clone());
        registry.register(
            "apiscope_nonresource_request",
            NONRESOURCE_HELP,
            self.nonresource.clone(),
        );
        registry.register(
            "apiscope_request_label_overflow",
            OVERFLOW_HELP,
            self.label_overflow.clone(),
        );
        registry.register(
            "apiscope_inflight_requests",
            "Requests the apiserver has started to serve and not answered yet, long-running ones excluded (as apiserver_current_inflight_requests), by request_kind",
            self.inflight.clone(),
        );
        registry.register(
            "apiscope_longrunning_requests",
            "Open long-running requests (watches, exec, attach, proxy, log, portforward), as apiserver_longrunning_gauge",
            self.longrunning.clone(),
        );
    }

    /// Sets the in-flight and long-running gauges to what is open now. Resource labels pass
    /// the same bounds as the counters' (a watch on a client-chosen URL must not add a series
    /// per URL); values over a bound show as `other` without being counted again each time.
    pub fn set_open_requests(&self, open: &[OpenRequest]) {
        let mut read_only = 0;
        let mut mutating = 0;
        let mut longrunning: HashMap<ResourceLabels, i64> = HashMap::new();
        for request in open {
            match request {
                OpenRequest::InFlight { read_only: true } => read_only += 1,
                OpenRequest::InFlight { read_only: false } => mutating += 1,
                OpenRequest::LongRunning {
                    verb,
                    group,
                    version,
                    resource,
                    subresource,
                    scope,
                } => {
                    let labels = ResourceLabels {
                        verb: verb.clone(),
                        group: self.groups.admit(group),
                        version: self.versions.admit(version),
                        resource: self.resources.admit(resource),
                        subresource: self.subresources.admit(subresource),
                        scope: (*scope).to_owned(),
                        component: APISERVER_COMPONENT.to_owned(),
                    };
                    *longrunning.entry(labels).or_default() += 1;
                }
            }
        }
        for (kind, value) in [("readOnly", read_only), ("mutating", mutating)] {
            self.inflight
                .get_or_create(&InflightLabels {
                    request_kind: kind.to_owned(),
                })
                .set(value);
        }
        // Label sets of watches that ended must go, not stay at their last value.
        self.longrunning.clear();
        for (labels, value) in longrunning {
            self.longrunning.get_or_create(&labels).set(value);
        }
    }

    fn bound(&self, bound: &BoundedLabel, label: &str, value: &str) -> String {
        let admitted = bound.admit(value);
        if admitted != value {
            self.label_overflow
                .get_or_create(&OverflowLabels {
                    label: label.to_string(),
                })
                .inc();
        }
        admitted
    }

    /// Counts one request. Requests at capture level `None` are counted too (the level governs
    /// spans and logs, not metrics).
    pub fn observe(&self, request: &ApiRequest) {
        if request.role != Role::Server {
            return;
        }
        let rules = self.label_rules(request);
        // v1.20 counts its watches with code "0" (measured against its own
        // apiserver_request_total: the watch handler writes its status past the instrumented
        // response writer); later releases with the real code. Mirrored so the two counters
        // compare label set by label set.
        let code = if request.metric_verb == "WATCH" && rules.watch_code_zero {
            "0".to_string()
        } else {
            request
                .code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "unknown".to_string())
        };
        let client = self.bound(&self.clients, "client", &request.component);
        if !request.is_resource_request {
            if let Some(subresource) = rules.instrumented_nonresource(&request.path) {
                self.observe_instrumented_nonresource(request, subresource, &code, &client);
            }
            self.observe_nonresource(request, code, client);
            return;
        }
        let group = self.bound(&self.groups, "group", &request.group);
        let version = self.bound(&self.versions, "version", &request.version);
        let resource = self.bound(&self.resources, "resource", &request.resource);
        let subresource = self.bound(&self.subresources, "subresource", &request.subresource);
        let duration_labels = DurationLabels {
            verb: request.metric_verb.clone(),
            dry_run: dry_run_label(&request.query),
            group,
            version,
            resource,
            subresource,
            scope: request.scope.clone(),
            component: APISERVER_COMPONENT.to_string(),
        };
        let request_labels = RequestLabels {
            verb: duration_labels.verb.clone(),
            dry_run: duration_labels.dry_run.clone(),
            group: duration_labels.group.clone(),
            version: duration_labels.version.clone(),
            resource: duration_labels.resource.clone(),
            subresource: duration_labels.subresource.clone(),
            scope: duration_labels.scope.clone(),
            component: duration_labels.component.clone(),
            code: code.clone(),
            client: client.clone(),
        };
        self.requests.get_or_create(&request_labels).inc();
        let seconds = request.duration_seconds.max(0.0);
        self.duration
            .get_or_create(&duration_labels)
            .observe(seconds);
        let size_observed = observes_response_size(request);
        let size_labels = ResourceLabels {
            verb: duration_labels.verb.clone(),
            group: duration_labels.group.clone(),
            version: duration_labels.version.clone(),
            resource: duration_labels.resource.clone(),
            subresource: duration_labels.subresource.clone(),
            scope: duration_labels.scope.clone(),
            component: duration_labels.component.clone(),
        };
        if size_observed {
            self.response_sizes
                .get_or_create(&size_labels)
                .observe(request.response_body_bytes as f64);
        }
        let watch_events = request.watch.as_ref().map(|w| {
            [
                ("ADDED", w.added),
                ("MODIFIED", w.modified),
                ("DELETED", w.deleted),
                ("BOOKMARK", w.bookmark),
                ("ERROR", w.error),
                ("OTHER", w.other),
            ]
        });
        if let Some(events) = watch_events.as_ref() {
            for (kind, count) in events.iter().filter(|(_, n)| *n > 0) {
                self.watch_events
                    .get_or_create(&WatchEventLabels {
                        group: duration_labels.group.clone(),
                        version: duration_labels.version.clone(),
                        resource: duration_labels.resource.clone(),
                        r#type: (*kind).to_string(),
                    })
                    .inc_by(*count);
            }
        }
        let watch_bytes = request.watch.as_ref().map(|w| w.bytes).unwrap_or(0);
        if request.watch.is_some() {
            self.watch_bytes
                .get_or_create(&WatchBytesLabels {
                    group: duration_labels.group.clone(),
                    version: duration_labels.version.clone(),
                    resource: duration_labels.resource.clone(),
                })
                .inc_by(watch_bytes);
        }
        let apf = self.apf_labels(request, &code);
        let throttled = (request.code == Some(429)).then(|| ThrottledLabels {
            verb: duration_labels.verb.clone(),
            group: duration_labels.group.clone(),
            resource: duration_labels.resource.clone(),
            client: client.clone(),
            flow_schema_uid: apf
                .as_ref()
                .map(|a| a.flow_schema_uid.clone())
                .unwrap_or_default(),
            priority_level_uid: apf
                .as_ref()
                .map(|a| a.priority_level_uid.clone())
                .unwrap_or_default(),
        });
        if let Some(labels) = throttled.as_ref() {
            self.throttled.get_or_create(labels).inc();
        }
        if let Some(labels) = apf.as_ref() {
            self.apf.get_or_create(labels).inc();
        }

        let Some(otel) = self.otel.as_ref() else {
            return;
        };
        let duration_attrs = duration_attributes(&duration_labels);
        let mut request_attrs = duration_attrs.clone();
        request_attrs.push(KeyValue::new("code", code));
        request_attrs.push(KeyValue::new("client", client));
        otel.requests.add(1, &request_attrs);
        otel.duration.record(seconds, &duration_attrs);
        if size_observed {
            let attrs: Vec<KeyValue> = duration_attrs
                .iter()
                .filter(|kv| kv.key.as_str() != "dry_run")
                .cloned()
                .collect();
            otel.response_sizes
                .record(request.response_body_bytes, &attrs);
        }
        let resource_attrs = [
            KeyValue::new("group", duration_labels.group.clone()),
            KeyValue::new("version", duration_labels.version.clone()),
            KeyValue::new("resource", duration_labels.resource.clone()),
        ];
        if let Some(events) = watch_events {
            for (kind, count) in events.into_iter().filter(|(_, n)| *n > 0) {
                let mut attrs = resource_attrs.to_vec();
                attrs.push(KeyValue::new("type", kind));
                otel.watch_events.add(count, &attrs);
            }
            otel.watch_bytes.add(watch_bytes, &resource_attrs);
        }
        if let Some(labels) = throttled {
            otel.throttled.add(
                1,
                &[
                    KeyValue::new("verb", labels.verb),
                    KeyValue::new("group", labels.group),
                    KeyValue::new("resource", labels.resource),
                    KeyValue::new("client", labels.client),
                    KeyValue::new("flow_schema_uid", labels.flow_schema_uid),
                    KeyValue::new("priority_level_uid", labels.priority_level_uid),
                ],
            );
        }
        if let Some(labels) = apf {
            otel.apf.add(1, &apf_attributes(labels));
        }
    }

    fn apf_labels(&self, request: &ApiRequest, code: &str) -> Option<ApfLabels> {
        if request.flow_schema_uid.is_none() && request.priority_level_uid.is_none() {
            return None;
        }
        let fs = request.flow_schema_uid.as_deref().unwrap_or("");
        let pl = request.priority_level_uid.as_deref().unwrap_or("");
        Some(ApfLabels {
            flow_schema_uid: self.bound(&self.flow_schemas, "flow_schema_uid", fs),
            priority_level_uid: self.bound(&self.priority_levels, "priority_level_uid", pl),
            code: code.to_string(),
        })
    }

    /// A non-resource request the apiserver counts in `apiserver_request_total` (and its
    /// duration histogram), as `metrics.InstrumentHandlerFunc("GET", "", "", "", path, "", "")`
    /// does: the verb is `CanonicalVerb` of the method (GET and HEAD say GET), everything but
    /// verb, dry_run, subresource and code is empty.
    fn observe_instrumented_nonresource(
        &self,
        request: &ApiRequest,
        subresource: &str,
        code: &str,
        client: &str,
    ) {
        let verb = match request.method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" => "GET".to_string(),
            _ => request.metric_verb.clone(),
        };
        let duration_labels = DurationLabels {
            verb,
            dry_run: dry_run_label(&request.query),
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: subresource.to_string(),
            scope: String::new(),
            component: String::new(),
        };
        let request_labels = RequestLabels {
            verb: duration_labels.verb.clone(),
            dry_run: duration_labels.dry_run.clone(),
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: duration_labels.subresource.clone(),
            scope: String::new(),
            component: String::new(),
            code: code.to_string(),
            client: client.to_string(),
        };
        self.requests.get_or_create(&request_labels).inc();
        let seconds = request.duration_seconds.max(0.0);
        self.duration
            .get_or_create(&duration_labels)
            .observe(seconds);
        if let Some(otel) = self.otel.as_ref() {
            let duration_attrs = duration_attributes(&duration_labels);
            let mut request_attrs = duration_attrs.clone();
            request_attrs.push(KeyValue::new("code", code.to_string()));
            request_attrs.push(KeyValue::new("client", client.to_string()));
            otel.requests.add(1, &request_attrs);
            otel.duration.record(seconds, &duration_attrs);
        }
    }

    fn observe_nonresource(&self, request: &ApiRequest, code: String, client: String) {
        let labels = NonResourceLabels {
            verb: request.metric_verb.clone(),
            path: self.bound(&self.paths, "path", &nonresource_path(&request.path)),
            code,
            client,
        };
        self.nonresource.get_or_create(&labels).inc();
        if let Some(labels) = request.code.filter(|c| *c == 429).and(Some(&labels)) {
            // A throttled non-resource request is still a throttled request.
            self.throttled
                .get_or_create(&ThrottledLabels {
                    verb: labels.verb.clone(),
                    group: String::new(),
                    resource: String::new(),
                    client: labels.client.clone(),
                    flow_schema_uid: request.flow_schema_uid.clone().unwrap_or_default(),
                    priority_level_uid: request.priority_level_uid.clone().unwrap_or_default(),
                })
                .inc();
        }
        let apf = self.apf_labels(request, &labels.code);
        if let Some(apf) = apf.as_ref() {
            self.apf.get_or_create(apf).inc();
        }
        if let Some(otel) = self.otel.as_ref() {
            otel.nonresource.add(
                1,
                &[
                    KeyValue::new("verb", labels.verb),
                    KeyValue::new("path", labels.path),
                    KeyValue::new("code", labels.code),
                    KeyValue::new("client", labels.client),
                ],
            );
            if let Some(apf) = apf {
                otel.apf.add(1, &apf_attributes(apf));
            }
        }
    }
}

fn duration_attributes(labels: &DurationLabels) -> Vec<KeyValue> {
    vec![
        KeyValue::new("verb", labels.verb.clone()),
        KeyValue::new("dry_run", labels.dry_run.clone()),
        KeyValue::new("group", labels.group.clone()),
        KeyValue::new("version", labels.version.clone()),
        KeyValue::new("resource", labels.resource.clone()),
        KeyValue::new("subresource", labels.subresource.clone()),
        KeyValue::new("scope", labels.scope.clone()),
        KeyValue::new("component", labels.component.clone()),
    ]
}

fn apf_attributes(labels: ApfLabels) -> [KeyValue; 3] {
    [
        KeyValue::new("flow_schema_uid", labels.flow_schema_uid),
        KeyValue::new("priority_level_uid", labels.priority_level_uid),
        KeyValue::new("code", labels.code),
    ]
}

/// v1.20 observes response sizes when the route's verb is GET or LIST; a `?watch=true` request
/// on a list route is reported as WATCH but registered as LIST, so it is observed too.
fn observes_response_size(request: &ApiRequest) -> bool {
    match request.metric_verb.as_str() {
        "GET" | "LIST" => true,
        "WATCH" => !legacy_watch_path(&request.path),
        _ => false,
    }
}

/// True for the deprecated `/api/v1/watch/...` and `/apis/{g}/{v}/watch/...` routes.
fn legacy_watch_path(path: &str) -> bool {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let skip = match segments.next() {
        Some("api") => 1,
        Some("apis") => 2,
        _ => return false,
    };
    segments.nth(skip) == Some("watch")
}

/// Non-resource paths cut to three segments (`/apis/apps/v1` discovery, `/healthz/etcd`,
/// `/openapi/v2`), so `/debug/pprof/...` or a stray long path cannot spread the label.
fn nonresource_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()).take(3) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() { "/".to_string() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::fixtures;

    fn encode(metrics: &RequestMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn open_request_gauges_pass_the_label_bounds_and_forget_ended_watches() {
        let m = RequestMetrics::new(LabelLimits {
            resources: 1,
            ..LabelLimits::default()
        });
        let watch = |resource: &str| OpenRequest::LongRunning {
            verb: "WATCH".to_owned(),
            group: String::new(),
            version: "v1".to_owned(),
            resource: resource.to_owned(),
            subresource: String::new(),
            scope: "cluster",
        };
        let open = [
            watch("pods"),
            watch("pods"),
            watch("made-up-by-a-client"),
            OpenRequest::InFlight { read_only: true },
            OpenRequest::InFlight { read_only: false },
            OpenRequest::InFlight { read_only: false },
        ];
        m.set_open_requests(&open);
        let text = encode(&m);
        let longrunning = lines_with(&text, "apiscope_longrunning_requests{");
        assert_eq!(longrunning.len(), 2, "{text}");
        assert!(
            longrunning
                .iter()
                .any(|l| l.contains("resource=\"pods\"") && l.ends_with(" 2")),
            "{text}"
        );
        assert!(
            longrunning
                .iter()
                .any(|l| l.contains("resource=\"other\"") && l.ends_with(" 1")),
            "{text}"
        );
        assert!(text.contains("apiscope_inflight_requests{request_kind=\"mutating\"} 2"));
        assert!(text.contains("apiscope_inflight_requests{request_kind=\"readOnly\"} 1"));
        // The gauge is not a counter of overflows: repeated ticks do not count the same watch.
        assert!(lines_with(&text, "apiscope_request_label_overflow_total{").is_empty());
        // Watches that ended leave the gauge.
        m.set_open_requests(&[]);
        let text = encode(&m);
        assert!(
            lines_with(&text, "apiscope_longrunning_requests{").is_empty(),
            "{text}"
        );
        assert!(text.contains("apiscope_inflight_requests{request_kind=\"mutating\"} 0"));
    }

    fn observe_fixtures() -> RequestMetrics {
        let m = RequestMetrics::default();
        // The fixtures' clients are v1.20; so are these expectations.
        m.set_release(KubernetesRelease::parse("1.20.2").unwrap());
        observe_all(&m);
        m
    }

    fn observe_all(m: &RequestMetrics) {
        for r in [
            fixtures::create_configmap(),
            fixtures::watch_pods(),
            fixtures::throttled_list(),
            fixtures::healthz(),
            fixtures::dry_run_update_by_service_account(),
        ] {
            m.observe(&r);
        }
    }

    /// Later releases count watches with their real code and /healthz in apiserver_request_total
    /// too (measured on v1.34.4 and v1.37.2); unknown releases get these newest rules.
    #[test]
    fn newest_rules_count_watches_with_their_code_and_instrumented_paths() {
        let m = RequestMetrics::default();
        observe_all(&m);
        let text = encode(&m);
        let lines = lines_with(&text, "apiscope_request_total{");
        assert!(
            lines.contains(&r#"apiscope_request_total{verb="WATCH",dry_run="",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver",code="200",client="kubectl"} 1"#),
            "{lines:#?}"
        );
        assert!(
            lines.contains(&r#"apiscope_request_total{verb="GET",dry_run="",group="",version="",resource="",subresource="/healthz",scope="",component="",code="200",client="kube-probe"} 1"#),
            "{lines:#?}"
        );
        assert_eq!(lines.len(), 5, "{lines:#?}");
        // Still in the non-resource counter as well.
        assert_eq!(
            lines_with(&text, "apiscope_nonresource_request_total{").len(),
            1
        );
        assert!(
            lines_with(&text, "apiscope_request_duration_seconds_count{")
                .iter()
                .any(|l| l.contains(r#"subresource="/healthz""#)),
            "{text}"
        );
    }

    /// The apiserver's loopback client names its release; its rules apply from then on.
    #[test]
    fn the_release_is_learnt_from_the_loopback_user_agent() {
        let m = RequestMetrics::default();
        let mut loopback = fixtures::request("GET", "/api/v1/namespaces/default", 200, 1);
        loopback.user_agent = "kube-apiserver/v1.20.2 (linux/amd64) kubernetes/faecb19".into();
        m.observe(&loopback);
        m.observe(&fixtures::watch_pods());
        let text = encode(&m);
        assert!(
            lines_with(&text, "apiscope_request_total{verb=\"WATCH\"")
                .iter()
                .all(|l| l.contains(r#"code="0""#)),
            "{text}"
        );
        // A fixed release is not overridden by traffic.
        let fixed = RequestMetrics::default();
        fixed.set_release(KubernetesRelease::parse("1.37.2").unwrap());
        fixed.observe(&loopback);
        assert!(!fixed.label_rules(&fixtures::watch_pods()).watch_code_zero);
    }

    #[test]
    fn request_total_has_the_apiserver_label_set_plus_client() {
        let text = encode(&observe_fixtures());
        let mut lines = lines_with(&text, "apiscope_request_total{");
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                r#"apiscope_request_total{verb="LIST",dry_run="",group="apps",version="v1",resource="deployments",subresource="",scope="cluster",component="apiserver",code="429",client="kubectl"} 1"#,
                r#"apiscope_request_total{verb="POST",dry_run="",group="",version="v1",resource="configmaps",subresource="",scope="resource",component="apiserver",code="201",client="kubectl"} 1"#,
                r#"apiscope_request_total{verb="PUT",dry_run="All",group="apps",version="v1",resource="deployments",subresource="",scope="resource",component="apiserver",code="200",client="argocd-application-controller"} 1"#,
                r#"apiscope_request_total{verb="WATCH",dry_run="",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver",code="0",client="kubectl"} 1"#,
            ]
        );
        // /healthz is not an apiserver_request_total request: counted on its own.
        assert_eq!(
            lines_with(&text, "apiscope_nonresource_request_total{"),
            [
                r#"apiscope_nonresource_request_total{verb="GET",path="/healthz",code="200",client="kube-probe"} 1"#
            ]
        );
    }

    #[test]
    fn duration_buckets_are_the_apiservers() {
        let text = encode(&observe_fixtures());
        let labels = r#"verb="POST",dry_run="",group="",version="v1",resource="configmaps",subresource="",scope="resource",component="apiserver""#;
        let buckets: Vec<String> = lines_with(&text, "apiscope_request_duration_seconds_bucket{")
            .into_iter()
            .filter(|l| l.contains(labels))
            .map(|l| l.replace(&format!(",{labels}"), ""))
            .collect();
        // A 12 ms create: in every bucket. prometheus-client writes bounds as floats ("1.0").
        let expected: Vec<String> = [
            "0.05", "0.1", "0.2", "0.4", "0.6", "0.8", "1.0", "1.25", "1.5", "2.0", "3.0", "4.0",
            "5.0", "6.0", "8.0", "10.0", "15.0", "20.0", "30.0", "45.0", "60.0", "+Inf",
        ]
        .iter()
        .map(|le| format!(r#"apiscope_request_duration_seconds_bucket{{le="{le}"}} 1"#))
        .collect();
        assert_eq!(buckets, expected);
        assert!(text.contains(&format!(
            "apiscope_request_duration_seconds_sum{{{labels}}} 0.012\n"
        )));
        // v1.20 observes WATCH durations too: a 65 s watch lands only in +Inf.
        let watch = r#"verb="WATCH",dry_run="",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver""#;
        assert!(text.contains(&format!(
            "apiscope_request_duration_seconds_bucket{{le=\"60.0\",{watch}}} 0\n"
        )));
        assert!(text.contains(&format!(
            "apiscope_request_duration_seconds_bucket{{le=\"+Inf\",{watch}}} 1\n"
        )));
    }

    #[test]
    fn response_sizes_only_for_get_and_list_routes() {
        let m = observe_fixtures();
        let legacy_watch = fixtures::request("GET", "/api/v1/watch/namespaces/a/pods", 200, 10);
        m.observe(&legacy_watch);
        let get = fixtures::request("GET", "/api/v1/namespaces/a/pods/p", 200, 10);
        m.observe(&get);
        let text = encode(&m);
        let mut counts = lines_with(&text, "apiscope_response_sizes_bytes_count{");
        counts.sort_unstable();
        assert_eq!(
            counts,
            [
                r#"apiscope_response_sizes_bytes_count{verb="GET",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} 1"#,
                r#"apiscope_response_sizes_bytes_count{verb="LIST",group="apps",version="v1",resource="deployments",subresource="",scope="cluster",component="apiserver"} 1"#,
                // ?watch=true on the list route (registered as LIST); the /watch/ route is not.
                r#"apiscope_response_sizes_bytes_count{verb="WATCH",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver"} 1"#,
            ]
        );
        let get_labels = r#"verb="GET",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver""#;
        for (le, n) in [
            ("1000.0", 0),
            ("10000.0", 1),
            ("1000000000.0", 1),
            ("+Inf", 1),
        ] {
            let line =
                format!("apiscope_response_sizes_bytes_bucket{{le=\"{le}\",{get_labels}}} {n}\n");
            assert!(text.contains(&line), "{line}");
        }
    }

    #[test]
    fn watch_throttling_and_apf_counters() {
        let text = encode(&observe_fixtures());
        let mut events = lines_with(&text, "apiscope_watch_events_total{");
        events.sort_unstable();
        assert_eq!(
            events,
            [
                r#"apiscope_watch_events_total{group="",version="v1",resource="pods",type="ADDED"} 3"#,
                r#"apiscope_watch_events_total{group="",version="v1",resource="pods",type="BOOKMARK"} 2"#,
                r#"apiscope_watch_events_total{group="",version="v1",resource="pods",type="DELETED"} 1"#,
                r#"apiscope_watch_events_total{group="",version="v1",resource="pods",type="MODIFIED"} 5"#,
            ]
        );
        assert_eq!(
            lines_with(&text, "apiscope_watch_response_bytes_total{"),
            [r#"apiscope_watch_response_bytes_total{group="",version="v1",resource="pods"} 9000"#]
        );
        assert_eq!(
            lines_with(&text, "apiscope_request_throttled_total{"),
            [
                r#"apiscope_request_throttled_total{verb="LIST",group="apps",resource="deployments",client="kubectl",flow_schema_uid="fs-uid-1",priority_level_uid="pl-uid-1"} 1"#
            ]
        );
        assert_eq!(
            lines_with(&text, "apiscope_apf_requests_total{"),
            [
                r#"apiscope_apf_requests_total{flow_schema_uid="fs-uid-1",priority_level_uid="pl-uid-1",code="429"} 1"#
            ]
        );
    }

    #[test]
    fn client_label_is_bounded() {
        let m = RequestMetrics::default();
        for i in 0..65 {
            let mut r = fixtures::request("GET", "/api/v1/namespaces/a/pods/p", 200, 1);
            r.component = format!("tool-{i}");
            m.observe(&r);
        }
        // kubectl is well known: admitted even past the bound.
        m.observe(&fixtures::request(
            "GET",
            "/api/v1/namespaces/a/pods/p",
            200,
            1,
        ));
        let text = encode(&m);
        let lines = lines_with(&text, "apiscope_request_total{");
        assert_eq!(lines.len(), 66, "64 tools + other + kubectl");
        assert!(lines.iter().any(|l| l.contains(r#"client="tool-63""#)));
        assert!(!lines.iter().any(|l| l.contains(r#"client="tool-64""#)));
        assert!(lines.iter().any(|l| l.contains(r#"client="other"} 1"#)));
        assert!(lines.iter().any(|l| l.contains(r#"client="kubectl"} 1"#)));
        assert_eq!(
            lines_with(&text, "apiscope_request_label_overflow_total{"),
            [r#"apiscope_request_label_overflow_total{label="client"} 1"#]
        );
    }

    #[test]
    fn capture_level_none_still_counts_and_outgoing_calls_do_not() {
        let m = RequestMetrics::default();
        let mut quiet = fixtures::create_configmap();
        quiet.capture_level = crate::k8s::api_request::CaptureLevel::None;
        m.observe(&quiet);
        let mut outgoing = fixtures::create_configmap();
        outgoing.role = Role::Client;
        m.observe(&outgoing);
        let mut no_response = fixtures::request("GET", "/api/v1/nodes", 200, 1);
        no_response.code = None;
        m.observe(&no_response);
        let text = encode(&m);
        let mut lines = lines_with(&text, "apiscope_request_total{");
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                r#"apiscope_request_total{verb="LIST",dry_run="",group="",version="v1",resource="nodes",subresource="",scope="cluster",component="apiserver",code="unknown",client="kubectl"} 1"#,
                r#"apiscope_request_total{verb="POST",dry_run="",group="",version="v1",resource="configmaps",subresource="",scope="resource",component="apiserver",code="201",client="kubectl"} 1"#,
            ]
        );
    }

    #[test]
    fn helpers() {
        assert!(legacy_watch_path("/api/v1/watch/pods"));
        assert!(legacy_watch_path("/apis/apps/v1/watch/deployments"));
        assert!(!legacy_watch_path("/api/v1/pods"));
        assert!(!legacy_watch_path("/apis/watch/v1/things"));
        assert_eq!(nonresource_path("/debug/pprof/heap/x"), "/debug/pprof/heap");
        assert_eq!(nonresource_path("/"), "/");
    }
}
