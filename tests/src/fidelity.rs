//! Comparing apiscope's ApiRequests with the apiserver's audit log, the reference for fidelity.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use apiscope::k8s::ApiRequest;
use apiscope::k8s::client::component_from_user_agent;

use crate::cluster::AuditEvent;

#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub audited: usize,
    pub matched: usize,
}

#[derive(Default)]
pub struct Report {
    pub by_client: BTreeMap<String, Rate>,
    pub by_verb: BTreeMap<String, Rate>,
    /// ApiRequests whose fields disagree with their audit event.
    pub mismatches: Vec<String>,
    /// ApiRequests with no audit event (or, complete ones, no Audit-ID).
    pub unmatched_requests: Vec<String>,
    /// Audit events (received after the start) with no ApiRequest.
    pub missed: Vec<String>,
    pub incomplete: usize,
    /// Audit events joined on verb, URI and User-Agent (watch responses carry no Audit-ID).
    pub matched_without_audit_id: usize,
    /// ApiRequests whose request headers could not be decoded and had no hook headers.
    pub undecodable: usize,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        for (title, rates) in [("client", &self.by_client), ("verb", &self.by_verb)] {
            let _ = writeln!(
                out,
                "{title:<28} {:>8} {:>8} {:>8}",
                "audited", "matched", "rate"
            );
            for (key, rate) in rates {
                let _ = writeln!(
                    out,
                    "{key:<28} {:>8} {:>8} {:>7.1}%",
                    rate.audited,
                    rate.matched,
                    100.0 * rate.matched as f64 / rate.audited.max(1) as f64
                );
            }
        }
        let _ = writeln!(
            out,
            "incomplete ApiRequests (open at stop, reset): {}\nmatched by verb+URI+User-Agent (no Audit-ID on the response): {}\nApiRequests with undecodable request headers: {}",
            self.incomplete, self.matched_without_audit_id, self.undecodable
        );
        for missed in &self.missed {
            let _ = writeln!(out, "missed: {missed}");
        }
        out
    }
}

/// Compares ApiRequests with the audit log; only events whose RequestReceived stage comes at or
/// after position `window.start` and whose ResponseComplete comes before `window.end` (the
/// capture was still running then) must have an ApiRequest. `join_without_audit_id` allows the
/// fallback join for apiservers that send no Audit-ID on watch responses (v1.20); for those that
/// do, an ApiRequest without one is a failure, not something to join by guesswork.
pub fn compare(
    audit: &[AuditEvent],
    window: std::ops::Range<usize>,
    requests: &[ApiRequest],
    join_without_audit_id: bool,
) -> Report {
    let audit_start = window.start;
    let mut report = Report::default();
    let received_after: HashSet<&str> = audit[audit_start.min(audit.len())..]
        .iter()
        .filter(|e| e.stage == "RequestReceived")
        .map(|e| e.audit_id.as_str())
        .collect();
    let complete: HashMap<&str, &AuditEvent> = audit
        .iter()
        .filter(|e| e.stage == "ResponseComplete" && e.sequence < window.end)
        .map(|e| (e.audit_id.as_str(), e))
        .collect();
    let by_audit_id: HashMap<&str, &ApiRequest> = requests
        .iter()
        .filter_map(|r| Some((r.audit_id.as_deref()?, r)))
        .collect();

    // The v1.20 apiserver sends no Audit-ID on watch responses: those are joined on what the
    // request itself says (verb, request URI, User-Agent), each ApiRequest used once.
    let mut without_audit_id: Vec<&ApiRequest> = requests
        .iter()
        .filter(|r| join_without_audit_id && r.audit_id.is_none() && !r.method.is_empty())
        .collect();
    let mut ordered: Vec<(&&str, &&AuditEvent)> = complete.iter().collect();
    ordered.sort_by_key(|(_, e)| e.sequence);
    for (id, event) in ordered {
        if !received_after.contains(id) {
            continue;
        }
        let client = component_from_user_agent(event.user_agent.as_deref().unwrap_or_default());
        let found = by_audit_id.get(id).copied().or_else(|| {
            let position = without_audit_id
                .iter()
                .position(|r| same_request(event, r))?;
            report.matched_without_audit_id += 1;
            Some(without_audit_id.remove(position))
        });
        let matched = match found {
            Some(request) => match differences(event, request) {
                None => true,
                Some(diff) => {
                    report.mismatches.push(format!("{id}: {diff}"));
                    false
                }
            },
            None => {
                report.missed.push(format!(
                    "{id} {} {} {} (code {:?})",
                    client, event.verb, event.request_uri, event.response_code
                ));
                false
            }
        };
        for rate in [
            report.by_client.entry(client.clone()).or_default(),
            report.by_verb.entry(event.verb.clone()).or_default(),
        ] {
            rate.audited += 1;
            rate.matched += usize::from(matched);
        }
    }
    for request in &without_audit_id {
        if request.incomplete.is_none() {
            report.unmatched_requests.push(format!(
                "no Audit-ID and no audit event: {} {}?{} (code {:?})",
                request.method, request.path, request.query, request.code
            ));
        }
    }
    for request in requests {
        let Some(id) = request.audit_id.as_deref() else {
            if request.incomplete.is_some() {
                report.incomplete += 1;
            } else if !join_without_audit_id && !request.method.is_empty() {
                report.unmatched_requests.push(format!(
                    "no Audit-ID (this apiserver sends one on every response): {} {}?{} (code {:?})",
                    request.method, request.path, request.query, request.code
                ));
            } else if request.method.is_empty() {
                // Request headers neither decodable (HPACK state older than the capture) nor
                // supplied by the header hooks.
                report.undecodable += 1;
            }
            continue;
        };
        if request.incomplete.is_some() {
            report.incomplete += 1;
        }
        if !audit.iter().any(|e| e.audit_id == id) {
            report.unmatched_requests.push(format!(
                "{id}: {} {} (code {:?}) not in the audit log",
                request.method, request.path, request.code
            ));
        } else if let Some(event) = complete.get(id) {
            if !received_after.contains(id) {
                // Received in the margin right after attaching: compared anyway.
                if let Some(diff) = differences(event, request) {
                    report.mismatches.push(format!("{id}: {diff}"));
                }
            }
        }
    }
    report.missed.sort();
    report
}

/// The same request by what it says about itself (for responses without Audit-ID).
fn same_request(event: &AuditEvent, request: &ApiRequest) -> bool {
    let uri = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    uri == event.request_uri
        && request.verb == event.verb
        && request.user_agent == event.user_agent.as_deref().unwrap_or_default()
}

/// What an ApiRequest says differently from its audit event, if anything.
pub fn differences(event: &AuditEvent, request: &ApiRequest) -> Option<String> {
    let object = event.object_ref.clone().unwrap_or_default();
    let expected = [
        ("verb", event.verb.clone()),
        ("resource", object.resource.clone().unwrap_or_default()),
        (
            "subresource",
            object.subresource.clone().unwrap_or_default(),
        ),
        ("namespace", object.namespace.clone().unwrap_or_default()),
        ("name", object.name.clone().unwrap_or_default()),
        (
            "code",
            event
                .response_code
                .map(|c| c.to_string())
                .unwrap_or_default(),
        ),
    ];
    let actual = [
        request.verb.clone(),
        request.resource.clone(),
        request.subresource.clone(),
        request.namespace.clone(),
        request.name.clone(),
        request.code.map(|c| c.to_string()).unwrap_or_default(),
    ];
    let diffs: Vec<String> = expected
        .iter()
        .zip(actual.iter())
        .filter(|((_, want), got)| want != *got)
        .map(|((field, want), got)| format!("{field}: audit {want:?}, apiscope {got:?}"))
        .collect();
    (!diffs.is_empty())
        .then(|| format!("{} {}: {}", event.verb, event.request_uri, diffs.join(", ")))
}
