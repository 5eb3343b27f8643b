//! Capture policy: which requests leave the node and with how much of their bodies, in the
//! style of the apiserver's audit policy (`audit.k8s.io/v1` `Policy`), plus redaction of
//! credentials that applies whatever the level.
//!
//! A policy is an ordered list of rules; the first rule that matches a request sets its
//! [`CaptureLevel`]. Matching follows the audit policy checker
//! (`k8s.io/apiserver/pkg/audit/policy/checker.go`): `users`, `userGroups` and `verbs` must
//! match when given; then a rule with `resources` or `namespaces` only matches resource
//! requests, a rule with `nonResourceURLs` only non-resource requests, and a rule with neither
//! matches everything. As in the audit policy, a request no rule matches is at level `None`;
//! without a policy file every request is at `Metadata`.
//!
//! Differences from the audit policy, because apiscope sees the wire, not the authenticator:
//! `users` matches the service account subject decoded from the bearer JWT
//! (`system:serviceaccount:NS:NAME`) or the User-Agent component (`kubectl`, `kubelet`...);
//! `userGroups` matches the groups a service account token implies (`system:serviceaccounts`,
//! `system:serviceaccounts:NS`, `system:authenticated`). `omitStages`/`omitManagedFields` do not
//! exist here. `allowSecrets: true` is apiscope's own: the only way secret values pass redaction.

mod capture;
pub mod redact;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::k8s::ApiRequest;
pub use crate::k8s::api_request::CaptureLevel;
pub use capture::{CaptureLimits, apply};

/// A capture policy: ordered rules, first match wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturePolicy {
    pub rules: Vec<PolicyRule>,
    /// Level of requests no rule matches: `Metadata` for the built-in default policy, `None` for
    /// a policy file (as the audit policy).
    pub fallback: CaptureLevel,
}

impl Default for CapturePolicy {
    /// No file given: everything at `Metadata`, no bodies, nothing secret.
    fn default() -> Self {
        CapturePolicy {
            rules: Vec::new(),
            fallback: CaptureLevel::Metadata,
        }
    }
}

/// One rule. Empty lists match anything, as in the audit policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyRule {
    pub level: CaptureLevel,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Let Secret data, tokens and other credentials in the captured bodies through unredacted.
    #[serde(default)]
    pub allow_secrets: bool,
}

/// Resources of one API group (`""` is the core group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    /// `pods`, `pods/log`, `pods/*`, `*/scale`, `*`.
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// What the policy decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub level: CaptureLevel,
    pub allow_secrets: bool,
    /// Index of the matching rule, `None` for the fallback.
    pub rule: Option<usize>,
}

/// A policy file that cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError(String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// Top-level keys; `apiVersion` and `kind` are accepted so the file looks like its audit sibling.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    // Kept as values so each rule is checked on its own and errors name the rule.
    rules: Vec<serde_json::Value>,
}

const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
    // Non-resource requests carry the lower-case HTTP method.
    "head",
    "post",
    "put",
    "options",
    "connect",
    "*",
];

impl CapturePolicy {
    /// `--capture-policy`: the file's policy, or the default without one.
    pub fn from_flag(path: Option<&Path>) -> Result<CapturePolicy, PolicyError> {
        match path {
            None => Ok(CapturePolicy::default()),
            Some(path) => CapturePolicy::load(path),
        }
    }

    pub fn load(path: &Path) -> Result<CapturePolicy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError(format!("capture policy {}: {e}", path.display())))?;
        CapturePolicy::parse(&text)
            .map_err(|e| PolicyError(format!("capture policy {}: {e}", path.display())))
    }

    /// Parses a policy from YAML or JSON (JSON is told by its leading `{`).
    pub fn parse(text: &str) -> Result<CapturePolicy, PolicyError> {
        let doc: serde_json::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| PolicyError(format!("invalid JSON: {e}")))?
        } else {
            serde_yaml::from_str(text).map_err(|e| PolicyError(format!("invalid YAML: {e}")))?
        };
        let file: PolicyFile = serde_json::from_value(doc).map_err(|e| {
            PolicyError(format!(
                "policy: {e} (top-level keys: apiVersion, kind, rules)"
            ))
        })?;
        if let Some(kind) = file.kind.as_deref() {
            if kind != "Policy" && kind != "CapturePolicy" {
                return Err(PolicyError(format!(
                    "policy: kind {kind:?}, expected \"CapturePolicy\" or \"Policy\""
                )));
            }
        }
        let _ = file.api_version; // Any version: there is only one format so far.
        if file.rules.is_empty() {
            // Audit semantics would make this "report nothing": surely a mistake.
            return Err(PolicyError(
                "policy: no rules (everything would be at level None)".into(),
            ));
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        for (index, raw) in file.rules.into_iter().enumerate() {
            let rule: PolicyRule = serde_json::from_value(raw)
                .map_err(|e| PolicyError(format!("rule {index}: {e}")))?;
            rule.validate()
                .map_err(|e| PolicyError(format!("rule {index}: {e}")))?;
            rules.push(rule);
        }
        Ok(CapturePolicy {
            rules,
            fallback: CaptureLevel::None,
        })
    }

    /// The first matching rule's level (and whether it lets secrets through).
    pub fn decide(&self, request: &ApiRequest) -> Decision {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.matches(request) {
                return Decision {
                    level: rule.level,
                    allow_secrets: rule.allow_secrets,
                    rule: Some(index),
                };
            }
        }
        Decision {
            level: self.fallback,
            allow_secrets: false,
            rule: None,
        }
    }
}

impl PolicyRule {
    fn validate(&self) -> Result<(), String> {
        if !self.non_resource_urls.is_empty()
            && (!self.resources.is_empty() || !self.namespaces.is_empty())
        {
            // As the audit policy validation: the two halves never match the same request.
            return Err("nonResourceURLs cannot be combined with resources or namespaces".into());
        }
        if self.allow_secrets && self.level < CaptureLevel::Request {
            return Err(format!(
                "allowSecrets has no effect at level {:?} (no bodies are captured)",
                self.level
            ));
        }
        for verb in &self.verbs {
            if !VERBS.contains(&verb.as_str()) {
                return Err(format!(
                    "unknown verb {verb:?} (verbs are lower case: {VERBS:?})"
                ));
            }
        }
        for (i, gr) in self.resources.iter().enumerate() {
            for res in &gr.resources {
                let ok = match res.split_once('/') {
                    None => !res.is_empty(),
                    Some((r, sub)) => !r.is_empty() && !sub.is_empty() && !sub.contains('/'),
                };
                if !ok {
                    return Err(format!(
                        "resources[{i}]: bad resource {res:?} (resource, resource/subresource, \
                         resource/*, */subresource or *)"
                    ));
                }
            }
            if !gr.resource_names.is_empty() && gr.resources.is_empty() {
                return Err(format!("resources[{i}]: resourceNames without resources"));
            }
        }
        for url in &self.non_resource_urls {
            if !url.starts_with('/') && url != "*" {
                return Err(format!(
                    "nonResourceURL {url:?} must start with '/' (or be \"*\")"
                ));
            }
            if url.trim_end_matches('*').contains('*') {
                return Err(format!("nonResourceURL {url:?}: '*' only at the end"));
            }
        }
        Ok(())
    }

    /// Whether the rule applies to the request (the audit checker's `ruleMatches`).
    pub fn matches(&self, request: &ApiRequest) -> bool {
        if !self.users.is_empty() && !self.users.iter().any(|u| user_matches(u, request)) {
            return false;
        }
        if !self.user_groups.is_empty() {
            let groups = implied_groups(request);
            if !self.user_groups.iter().any(|g| groups.contains(g)) {
                return false;
            }
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == "*" || *v == request.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(request);
        }
        if !self.non_resource_urls.is_empty() {
            return !request.is_resource_request
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(&request.path, spec));
        }
        true
    }

    fn matches_resource(&self, request: &ApiRequest) -> bool {
        if !request.is_resource_request {
            return false;
        }
        // Cluster-scoped resources have the empty namespace, which a rule can list as "".
        if !self.namespaces.is_empty() && !self.namespaces.contains(&request.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if request.subresource.is_empty() {
            request.resource.clone()
        } else {
            format!("{}/{}", request.resource, request.subresource)
        };
        self.resources.iter().any(|gr| {
            if gr.group != request.group {
                return false;
            }
            if gr.resources.is_empty() {
                return true;
            }
            if !gr.resource_names.is_empty() && !gr.resource_names.contains(&request.name) {
                return false;
            }
            gr.resources.iter().any(|res| {
                if *res == combined || res == "*" {
                    return true;
                }
                if let Some(sub) = res.strip_prefix("*/") {
                    if !request.subresource.is_empty() && sub == request.subresource {
                        return true;
                    }
                }
                // `pods/*` is every subresource of pods and, as in the audit checker, pods itself.
                matches!(res.strip_suffix("/*"), Some(r) if r == request.resource)
            })
        })
    }
}

fn user_matches(user: &str, request: &ApiRequest) -> bool {
    request
        .service_account
        .as_ref()
        .is_some_and(|sa| sa.subject == user)
        || request.component == user
}

/// The groups the apiserver gives a service account token's user.
fn implied_groups(request: &ApiRequest) -> Vec<String> {
    match &request.service_account {
        Some(sa) => vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", sa.namespace),
            "system:authenticated".to_owned(),
        ],
        None => Vec::new(),
    }
}

/// The audit checker's `pathMatches`: exact, `*`, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    if spec == "*" || spec == path {
        return true;
    }
    matches!(spec.strip_suffix('*'), Some(prefix) if path.starts_with(prefix))
}
