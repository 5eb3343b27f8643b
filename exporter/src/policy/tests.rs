use base64::Engine;

use super::redact::{REDACTED, redact_bearer, redact_jwts, truncate_at_char_boundary};
use super::*;
use crate::exchange::{ConnectionFacts, Ending, Exchange, Message};
use crate::k8s::api_request::{CapturedBody, ServiceAccountRef};
use crate::k8s::body::BodyLimits;
use crate::vocabulary::HeaderField;

// ---------------------------------------------------------------------------------------------
// Helpers

fn message(fields: &[(&str, &str)], body: &[u8]) -> Message {
    Message {
        fields: Some(
            fields
                .iter()
                .map(|(n, v)| HeaderField {
                    name: (*n).to_owned(),
                    value: (*v).to_owned(),
                    sensitive: false,
                })
                .collect(),
        ),
        head_seen: true,
        body: body.to_vec(),
        body_bytes: body.len() as u64,
        first_byte_ns: Some(1),
        last_byte_ns: Some(2),
        ended: true,
        ..Message::default()
    }
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    request_type: &'a str,
    request_body: &'a str,
    status: &'a str,
    response_type: &'a str,
    response_body: &'a str,
    extra_headers: &'a [(&'a str, &'a str)],
    watch: bool,
}

const CALL: Call<'static> = Call {
    method: "GET",
    path: "/",
    request_type: "application/json",
    request_body: "",
    status: "200",
    response_type: "application/json",
    response_body: "",
    extra_headers: &[],
    watch: false,
};

fn exchange(call: &Call<'_>) -> Exchange {
    let mut request_fields = vec![(":method", call.method), (":path", call.path)];
    if !call.extra_headers.iter().any(|(n, _)| *n == "user-agent") {
        request_fields.push(("user-agent", "kubectl/v1.33.1 (linux/amd64) kubernetes/abc"));
    }
    if !call.request_body.is_empty() {
        request_fields.push(("content-type", call.request_type));
    }
    request_fields.extend_from_slice(call.extra_headers);
    let response_fields = vec![
        (":status", call.status),
        ("content-type", call.response_type),
        ("audit-id", "0b5e4f5c-0000-4000-8000-000000000001"),
    ];
    Exchange {
        facts: ConnectionFacts {
            protocol: "2",
            ..ConnectionFacts::default()
        },
        stream: 1,
        request: message(&request_fields, call.request_body.as_bytes()),
        response: message(&response_fields, call.response_body.as_bytes()),
        is_stream: call.watch,
        body_stream: None,
        ending: Ending::Complete,
        frames: Vec::new(),
        frames_cut: 0,
    }
}

fn run_with(policy: &CapturePolicy, exchange: &Exchange, limits: &CaptureLimits) -> ApiRequest {
    run_with_body_limits(policy, exchange, &BodyLimits::default(), limits)
}

fn run_with_body_limits(
    policy: &CapturePolicy,
    exchange: &Exchange,
    body_limits: &BodyLimits,
    limits: &CaptureLimits,
) -> ApiRequest {
    let (mut request, bodies) = ApiRequest::from_exchange(exchange, 0, body_limits);
    apply(policy, &bodies, &mut request, limits);
    request
}

fn run(policy: &CapturePolicy, call: &Call<'_>) -> ApiRequest {
    run_with(policy, &exchange(call), &CaptureLimits::default())
}

fn at(level: &str) -> CapturePolicy {
    CapturePolicy::parse(&format!("rules:\n- level: {level}\n")).unwrap()
}

fn json(request: &ApiRequest) -> String {
    serde_json::to_string(request).unwrap()
}

fn body_text(body: &Option<CapturedBody>) -> &str {
    body.as_ref().map(|b| b.text.as_str()).unwrap_or_default()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A JWT-shaped token (the signature is random-looking, not a real one).
fn jwt() -> String {
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        url.encode(r#"{"alg":"RS256","kid":"k1"}"#),
        url.encode(
            r#"{"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:kube-system:coredns","kubernetes.io":{"namespace":"kube-system","serviceaccount":{"name":"coredns","uid":"u"}}}"#
        ),
        "c2lnbmF0dXJlLW5vdC1yZWFsLWJ1dC1sb25nLWVub3VnaA"
    )
}

// ---------------------------------------------------------------------------------------------
// Policy files

const EXAMPLE: &str = r#"
apiVersion: apiscope.io/v1
kind: CapturePolicy
rules:
  # Noisy and uninteresting.
  - level: None
    users: ["system:serviceaccount:kube-system:kube-proxy"]
    verbs: ["watch"]
    resources:
      - group: ""
        resources: ["endpoints", "services"]
  - level: Metadata
    nonResourceURLs: ["/healthz*", "/version", "/readyz"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["configmaps", "pods/log"]
      - group: apps
        resources: ["deployments/*"]
    namespaces: ["default", "team-a"]
  - level: Request
    resources:
      - group: ""
        resources: ["secrets"]
        resourceNames: ["public-ca"]
    allowSecrets: true
  - level: Metadata
"#;

#[test]
fn the_example_policy_parses() {
    let policy = CapturePolicy::parse(EXAMPLE).unwrap();
    assert_eq!(policy.rules.len(), 5);
    assert_eq!(policy.fallback, CaptureLevel::None);
    assert_eq!(policy.rules[0].level, CaptureLevel::None);
    assert_eq!(policy.rules[0].verbs, ["watch"]);
    assert_eq!(policy.rules[1].non_resource_urls.len(), 3);
    assert_eq!(policy.rules[2].resources[1].group, "apps");
    assert_eq!(policy.rules[3].resources[0].resource_names, ["public-ca"]);
    assert!(policy.rules[3].allow_secrets);
    assert!(!policy.rules[2].allow_secrets);
}

#[test]
fn json_policies_parse_too() {
    let policy = CapturePolicy::parse(
        r#"{"rules":[{"level":"Request","verbs":["create"],"resources":[{"group":"","resources":["pods"]}]},{"level":"Metadata"}]}"#,
    )
    .unwrap();
    assert_eq!(policy.rules.len(), 2);
    assert_eq!(policy.rules[0].level, CaptureLevel::Request);
}

#[test]
fn the_default_policy_is_metadata_for_everything() {
    let policy = CapturePolicy::from_flag(None).unwrap();
    let request = run(&policy, &CALL);
    assert_eq!(request.capture_level, CaptureLevel::Metadata);
    assert_eq!(policy.decide(&request).rule, None);
}

#[test]
fn invalid_policies_are_errors_that_say_where() {
    let cases: &[(&str, &str)] = &[
        (
            "rules:\n- level: Metadata\n- level: Everything\n",
            "rule 1: unknown variant `Everything`",
        ),
        (
            "rules:\n- level: metadata\n",
            "rule 0: unknown variant `metadata`",
        ),
        (
            "rules:\n- level: Metadata\n  verb: [get]\n",
            "rule 0: unknown field `verb`",
        ),
        (
            "rules:\n- level: Metadata\n  omitStages: [RequestReceived]\n",
            "rule 0: unknown field `omitStages`",
        ),
        ("rules:\n- verbs: [get]\n", "rule 0: missing field `level`"),
        (
            "rules:\n- level: Metadata\n  verbs: [GET]\n",
            "rule 0: unknown verb \"GET\"",
        ),
        (
            "rules:\n- level: Metadata\n  resources: [{group: \"\", resources: [pods], names: [x]}]\n",
            "rule 0: unknown field `names`",
        ),
        (
            "rules:\n- level: Metadata\n  resources: [{resources: [\"pods/\"]}]\n",
            "rule 0: resources[0]: bad resource \"pods/\"",
        ),
        (
            "rules:\n- level: Metadata\n  resources: [{resources: [\"a/b/c\"]}]\n",
            "bad resource \"a/b/c\"",
        ),
        (
            "rules:\n- level: Metadata\n  resources: [{resourceNames: [x]}]\n",
            "resourceNames without resources",
        ),
        (
            "rules:\n- level: Metadata\n  nonResourceURLs: [/healthz]\n  namespaces: [default]\n",
            "rule 0: nonResourceURLs cannot be combined",
        ),
        (
            "rules:\n- level: Metadata\n  nonResourceURLs: [healthz]\n",
            "must start with '/'",
        ),
        (
            "rules:\n- level: Metadata\n  nonResourceURLs: [\"/a*b\"]\n",
            "'*' only at the end",
        ),
        (
            "rules:\n- level: Metadata\n- level: Metadata\n  allowSecrets: true\n",
            "rule 1: allowSecrets has no effect at level Metadata",
        ),
        (
            "rules:\n- level: Request\n  allowSecrets: yes-please\n",
            "rule 0: invalid type",
        ),
        ("rules: []\n", "no rules"),
        ("kind: Policy\n", "missing field `rules`"),
        (
            "omitStages: [RequestReceived]\nrules:\n- level: None\n",
            "unknown field `omitStages`",
        ),
        (
            "kind: Deployment\nrules:\n- level: None\n",
            "kind \"Deployment\"",
        ),
        ("rules:\n- level: [\n", "invalid YAML"),
        ("{\"rules\": [}", "invalid JSON"),
        (
            "rules:\n  level: None\n",
            "invalid type: map, expected a sequence",
        ),
    ];
    for (text, expected) in cases {
        let error = CapturePolicy::parse(text).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{text:?}: {error:?} lacks {expected:?}"
        );
    }
}

#[test]
fn a_missing_policy_file_is_an_error_naming_it() {
    let error = CapturePolicy::from_flag(Some(Path::new("/nonexistent/policy.yaml")))
        .unwrap_err()
        .to_string();
    assert!(error.contains("/nonexistent/policy.yaml"), "{error}");
}

#[test]
fn a_policy_file_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, EXAMPLE).unwrap();
    assert_eq!(CapturePolicy::load(&path).unwrap().rules.len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Rule matching

fn req(
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    ns: &str,
    name: &str,
) -> ApiRequest {
    ApiRequest {
        verb: verb.into(),
        is_resource_request: true,
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: ns.into(),
        name: name.into(),
        component: "kubectl".into(),
        ..ApiRequest::default()
    }
}

fn non_resource(verb: &str, path: &str) -> ApiRequest {
    ApiRequest {
        verb: verb.into(),
        path: path.into(),
        component: "kubelet".into(),
        ..ApiRequest::default()
    }
}

fn with_sa(mut request: ApiRequest, ns: &str, name: &str) -> ApiRequest {
    request.service_account = Some(ServiceAccountRef {
        namespace: ns.into(),
        name: name.into(),
        subject: format!("system:serviceaccount:{ns}:{name}"),
        issuer: String::new(),
    });
    request.component = "kube-proxy".into();
    request
}

#[test]
fn rules_match_as_the_audit_checker_first_match_wins() {
    let policy = CapturePolicy::parse(EXAMPLE).unwrap();
    let level = |r: &ApiRequest| {
        let d = policy.decide(r);
        (d.level, d.rule, d.allow_secrets)
    };
    use CaptureLevel::*;
    type Expected = (CaptureLevel, Option<usize>, bool);
    let cases: Vec<(ApiRequest, Expected)> = vec![
        // Rule 0 needs the user, the verb and the resource.
        (
            with_sa(
                req("watch", "", "endpoints", "", "default", ""),
                "kube-system",
                "kube-proxy",
            ),
            (None, Some(0), false),
        ),
        (
            with_sa(
                req("list", "", "endpoints", "", "default", ""),
                "kube-system",
                "kube-proxy",
            ),
            (Metadata, Some(4), false),
        ),
        (
            req("watch", "", "endpoints", "", "default", ""),
            (Metadata, Some(4), false),
        ),
        (
            with_sa(
                req("watch", "", "endpoints", "", "default", ""),
                "kube-system",
                "other",
            ),
            (Metadata, Some(4), false),
        ),
        // Non-resource URLs: exact and trailing-* prefix; never resource requests.
        (non_resource("get", "/healthz"), (Metadata, Some(1), false)),
        (
            non_resource("get", "/healthz/etcd"),
            (Metadata, Some(1), false),
        ),
        (non_resource("get", "/version"), (Metadata, Some(1), false)),
        (
            non_resource("get", "/version/x"),
            (Metadata, Some(4), false),
        ),
        (non_resource("get", "/readyz"), (Metadata, Some(1), false)),
        // Resources, subresources, namespaces.
        (
            req("get", "", "configmaps", "", "default", "c"),
            (RequestResponse, Some(2), false),
        ),
        (
            req("get", "", "configmaps", "", "kube-system", "c"),
            (Metadata, Some(4), false),
        ),
        (
            req("get", "", "pods", "log", "team-a", "p"),
            (RequestResponse, Some(2), false),
        ),
        (
            req("get", "", "pods", "", "team-a", "p"),
            (Metadata, Some(4), false),
        ),
        (
            req("get", "", "pods", "exec", "team-a", "p"),
            (Metadata, Some(4), false),
        ),
        (
            req("get", "apps", "deployments", "scale", "default", "d"),
            (RequestResponse, Some(2), false),
        ),
        (
            req("get", "apps", "deployments", "", "default", "d"),
            (RequestResponse, Some(2), false),
        ),
        (
            req("get", "", "deployments", "", "default", "d"),
            (Metadata, Some(4), false),
        ),
        // resourceNames and allowSecrets.
        (
            req("get", "", "secrets", "", "default", "public-ca"),
            (Request, Some(3), true),
        ),
        (
            req("get", "", "secrets", "", "default", "db"),
            (Metadata, Some(4), false),
        ),
        (
            req("list", "", "secrets", "", "default", ""),
            (Metadata, Some(4), false),
        ),
    ];
    for (request, expected) in cases {
        assert_eq!(level(&request), expected, "{request:?}");
    }
}

#[test]
fn wildcards_groups_and_users() {
    let policy = CapturePolicy::parse(
        r#"
rules:
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
  - level: Request
    users: [kubectl]
    resources: [{group: "", resources: ["*/status"]}]
  - level: RequestResponse
    verbs: [create, "*"]
    resources: [{group: "batch"}]
  - level: Request
    namespaces: [""]
  - level: Metadata
    resources: [{group: "", resources: ["*"]}]
"#,
    )
    .unwrap();
    let level = |r: &ApiRequest| policy.decide(r).level;
    use CaptureLevel::*;
    assert_eq!(
        level(&with_sa(
            req("get", "", "pods", "", "default", "p"),
            "kube-system",
            "x"
        )),
        None
    );
    assert_eq!(
        level(&with_sa(
            req("get", "", "pods", "", "default", "p"),
            "default",
            "x"
        )),
        Metadata
    );
    assert_eq!(
        level(&req("update", "", "pods", "status", "default", "p")),
        Request
    );
    assert_eq!(
        level(&req("update", "", "pods", "", "default", "p")),
        Metadata
    );
    let mut kubelet = req("update", "", "pods", "status", "default", "p");
    kubelet.component = "kubelet".into();
    assert_eq!(level(&kubelet), Metadata);
    assert_eq!(
        level(&req("delete", "batch", "jobs", "", "default", "j")),
        RequestResponse
    );
    // Cluster-scoped resources are in the namespace "".
    assert_eq!(
        level(&req(
            "get",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
            "",
            "r"
        )),
        Request
    );
    assert_eq!(
        level(&req(
            "get",
            "rbac.authorization.k8s.io",
            "roles",
            "",
            "ns",
            "r"
        )),
        None
    );
    // A rule with resources never matches a non-resource request: no rule here matches it.
    assert_eq!(level(&non_resource("get", "/metrics")), None);
}

// ---------------------------------------------------------------------------------------------
// Redaction

const SECRET_CREATE: &str = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"default","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"password\":\"czNjcjN0LXBhc3N3b3Jk\"},\"kind\":\"Secret\",\"metadata\":{\"annotations\":{},\"name\":\"db\",\"namespace\":\"default\"}}\n","team":"a"}},"type":"Opaque","data":{"password":"czNjcjN0LXBhc3N3b3Jk"},"stringData":{"user":"admin-user-name"}}"#;

fn secret_create() -> Call<'static> {
    Call {
        method: "POST",
        path: "/api/v1/namespaces/default/secrets?fieldManager=kubectl-client-side-apply",
        request_body: SECRET_CREATE,
        status: "201",
        response_body: r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","resourceVersion":"901","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"czNjcjN0LXBhc3N3b3Jk\"}}"},"managedFields":[{"manager":"kubectl-client-side-apply","operation":"Update","fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:password":{}}}}]},"data":{"password":"czNjcjN0LXBhc3N3b3Jk","user":"YWRtaW4tdXNlci1uYW1l"},"type":"Opaque"}"#,
        ..CALL
    }
}

fn assert_clean(request: &ApiRequest, values: &[&str]) {
    let out = json(request);
    for value in values {
        assert!(!out.contains(value), "{value:?} leaked: {out}");
    }
}

#[test]
fn secret_create_keeps_keys_and_redacts_values_and_the_last_applied_copy() {
    let request = run(&at("RequestResponse"), &secret_create());
    assert_eq!(request.capture_level, CaptureLevel::RequestResponse);
    let body = request.request_body.as_ref().unwrap();
    assert!(body.redacted);
    assert!(!body.truncated);
    let doc: serde_json::Value = serde_json::from_str(&body.text).unwrap();
    assert_eq!(doc["data"]["password"], REDACTED);
    assert_eq!(doc["stringData"]["user"], REDACTED);
    assert_eq!(
        doc["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        REDACTED
    );
    // What is not secret stays.
    assert_eq!(doc["metadata"]["annotations"]["team"], "a");
    assert_eq!(doc["metadata"]["name"], "db");
    assert_eq!(doc["type"], "Opaque");
    let response = request.response_body.as_ref().unwrap();
    assert!(response.redacted);
    let doc: serde_json::Value = serde_json::from_str(&response.text).unwrap();
    assert_eq!(doc["data"]["user"], REDACTED);
    assert_eq!(
        doc["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:password"],
        serde_json::json!({})
    );
    assert_clean(
        &request,
        &[
            "czNjcjN0LXBhc3N3b3Jk",
            "s3cr3t-password",
            "admin-user-name",
            "YWRtaW4tdXNlci1uYW1l",
        ],
    );
}

#[test]
fn server_side_apply_yaml_on_a_secret() {
    let request = run(
        &at("Request"),
        &Call {
            method: "PATCH",
            path: "/api/v1/namespaces/default/secrets/db?fieldManager=kubectl&force=true",
            request_type: "application/apply-patch+yaml",
            request_body: "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: default\nstringData:\n  password: \"hunter2-but-longer\"\n  token: |\n    multi-line-secret-value\ntype: Opaque\n",
            response_body: r#"{"kind":"Secret","data":{"password":"aHVudGVyMi1idXQtbG9uZ2Vy"}}"#,
            ..CALL
        },
    );
    assert_eq!(request.metric_verb, "APPLY");
    let body = request.request_body.as_ref().unwrap();
    assert!(body.redacted);
    assert_eq!(body.content_type, "application/apply-patch+yaml");
    let doc: serde_json::Value = serde_yaml::from_str(&body.text).unwrap();
    assert_eq!(doc["stringData"]["password"], REDACTED);
    assert_eq!(doc["stringData"]["token"], REDACTED);
    assert_eq!(doc["metadata"]["name"], "db");
    // Level Request: no response body.
    assert_eq!(request.response_body, None);
    assert_clean(
        &request,
        &[
            "hunter2-but-longer",
            "multi-line-secret-value",
            "aHVudGVyMi1idXQtbG9uZ2Vy",
        ],
    );
}

#[test]
fn unknown_fields_and_yaml_anchors_of_a_secret_are_redacted_too() {
    // The apiserver drops an unknown field, but the captured body would still carry it.
    let request = run(
        &at("Request"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/secrets",
            request_body: r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"x","labels":{"app":"web"}},"type":"kubernetes.io/basic-auth","immutable":true,"extra":"unknown-field-secret","Data":{"k":"Y2FzZS1zZWNyZXQ="}}"#,
            ..CALL
        },
    );
    let doc: serde_json::Value = serde_json::from_str(body_text(&request.request_body)).unwrap();
    assert_eq!(doc["metadata"]["labels"]["app"], "web");
    assert_eq!(doc["type"], "kubernetes.io/basic-auth");
    assert_eq!(doc["immutable"], true);
    assert_clean(&request, &["unknown-field-secret", "Y2FzZS1zZWNyZXQ="]);

    let request = run(
        &at("Request"),
        &Call {
            method: "PATCH",
            path: "/api/v1/namespaces/default/secrets/db?fieldManager=x",
            request_type: "application/apply-patch+yaml",
            request_body: "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nx-base: &creds\n  password: yaml-anchor-secret\nstringData: *creds\n",
            ..CALL
        },
    );
    let text = body_text(&request.request_body);
    assert!(text.contains("password: '[REDACTED]'"), "{text}");
    assert_clean(&request, &["yaml-anchor-secret"]);
}

#[test]
fn secret_get_and_secret_list_including_items_without_kind() {
    let get = run(
        &at("RequestResponse"),
        &Call {
            path: "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef",
            response_body: r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"bootstrap-token-abcdef","namespace":"kube-system"},"type":"bootstrap.kubernetes.io/token","data":{"token-id":"YWJjZGVm","token-secret":"MDEyMzQ1Njc4OWFiY2RlZg==","usage-bootstrap-authentication":"dHJ1ZQ=="}}"#,
            ..CALL
        },
    );
    assert!(get.response_body.as_ref().unwrap().redacted);
    assert_clean(&get, &["MDEyMzQ1Njc4OWFiY2RlZg==", "YWJjZGVm"]);
    assert!(body_text(&get.response_body).contains("\"token-secret\":\"[REDACTED]\""));

    let list = run(
        &at("RequestResponse"),
        &Call {
            path: "/api/v1/secrets?limit=500",
            response_body: r#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"77"},"items":[{"metadata":{"name":"a","namespace":"x"},"data":{"k":"dmFsdWUtb25lLXNlY3JldA=="}},{"metadata":{"name":"b","namespace":"y"},"stringData":{"k":"value-two-secret"},"type":"Opaque"}]}"#,
            ..CALL
        },
    );
    assert_eq!(list.verb, "list");
    assert_eq!(list.list_items, Some(2));
    assert_clean(&list, &["dmFsdWUtb25lLXNlY3JldA==", "value-two-secret"]);
    let text = body_text(&list.response_body);
    assert!(text.contains(r#""name":"b""#), "{text}");

    // A List of mixed kinds (not the secrets resource): only the Secret is redacted.
    let mixed = run(
        &at("RequestResponse"),
        &Call {
            path: "/apis/example.com/v1/bundles/b1",
            response_body: r#"{"kind":"List","items":[{"kind":"ConfigMap","data":{"k":"plain-config-value"}},{"kind":"Secret","data":{"k":"c2VjcmV0LWluLWEtbGlzdA=="}}]}"#,
            ..CALL
        },
    );
    assert_clean(&mixed, &["c2VjcmV0LWluLWEtbGlzdA=="]);
    assert!(body_text(&mixed.response_body).contains("plain-config-value"));
}

#[test]
fn secret_watch_bodies_are_not_captured() {
    let request = run(
        &at("RequestResponse"),
        &Call {
            path: "/api/v1/namespaces/default/secrets?watch=true&resourceVersion=1",
            response_body: "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"data\":{\"k\":\"d2F0Y2hlZC1zZWNyZXQ=\"}}}\n",
            watch: true,
            ..CALL
        },
    );
    assert_eq!(request.verb, "watch");
    let body = request.response_body.as_ref().unwrap();
    assert!(body.text.starts_with("watch stream ("), "{}", body.text);
    assert_clean(&request, &["d2F0Y2hlZC1zZWNyZXQ="]);
}

#[test]
fn patches_on_secrets_redact_every_value() {
    let patch = |content_type: &'static str, body: &'static str| {
        run(
            &at("Request"),
            &Call {
                method: "PATCH",
                path: "/api/v1/namespaces/default/secrets/db",
                request_type: content_type,
                request_body: body,
                ..CALL
            },
        )
    };
    // Merge patch: no `kind`, still a Secret because of the resource; a deleted key stays null.
    let merge = patch(
        "application/merge-patch+json",
        r#"{"data":{"password":"bWVyZ2UtcGF0Y2gtc2VjcmV0","old":null},"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"stringData\":{\"p\":\"annotation-secret\"}}"}}}"#,
    );
    let text = body_text(&merge.request_body);
    assert!(text.contains(r#""old":null"#), "{text}");
    assert!(text.contains(r#""password":"[REDACTED]""#), "{text}");
    assert_clean(&merge, &["bWVyZ2UtcGF0Y2gtc2VjcmV0", "annotation-secret"]);

    let strategic = patch(
        "application/strategic-merge-patch+json",
        r#"{"stringData":{"api-key":"strategic-secret-value"},"$setElementOrder/foo":[]}"#,
    );
    assert_clean(&strategic, &["strategic-secret-value"]);

    let json_patch = patch(
        "application/json-patch+json",
        r#"[{"op":"replace","path":"/data/password","value":"anNvbi1wYXRjaC1zZWNyZXQ="},{"op":"add","path":"/data","value":{"k":"anNvbi1wYXRjaC1tYXA="}},{"op":"remove","path":"/data/old"}]"#,
    );
    let text = body_text(&json_patch.request_body);
    assert!(text.contains(r#""path":"/data/password""#), "{text}");
    assert!(json_patch.request_body.as_ref().unwrap().redacted);
    assert_clean(
        &json_patch,
        &["anNvbi1wYXRjaC1zZWNyZXQ=", "anNvbi1wYXRjaC1tYXA="],
    );
}

#[test]
fn token_request_and_token_review() {
    let token = jwt();
    let response = format!(
        r#"{{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{{"name":"default","namespace":"default"}},"spec":{{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600}},"status":{{"token":"{token}","expirationTimestamp":"2026-11-26T05:00:00Z"}}}}"#
    );
    let request = run(
        &at("RequestResponse"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/serviceaccounts/default/token",
            request_body: r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600}}"#,
            status: "201",
            response_body: &response,
            ..CALL
        },
    );
    assert_eq!(request.subresource, "token");
    let doc: serde_json::Value = serde_json::from_str(body_text(&request.response_body)).unwrap();
    assert_eq!(doc["status"]["token"], REDACTED);
    assert_eq!(doc["status"]["expirationTimestamp"], "2026-11-26T05:00:00Z");
    assert_clean(&request, &[&token, token.split('.').nth(2).unwrap()]);

    // An opaque (non-JWT) token is redacted by structure, not only by the JWT net.
    let opaque = run(
        &at("RequestResponse"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/serviceaccounts/default/token",
            status: "201",
            response_body: r#"{"status":{"token":"opaque-token-value-123"}}"#,
            ..CALL
        },
    );
    assert_clean(&opaque, &["opaque-token-value-123"]);

    let review = run(
        &at("RequestResponse"),
        &Call {
            method: "POST",
            path: "/apis/authentication.k8s.io/v1/tokenreviews",
            request_body: &format!(
                r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}","audiences":["api"]}}}}"#
            ),
            status: "201",
            response_body: &format!(
                r#"{{"kind":"TokenReview","spec":{{"token":"{token}"}},"status":{{"authenticated":true,"user":{{"username":"system:serviceaccount:kube-system:coredns"}}}}}}"#
            ),
            ..CALL
        },
    );
    assert_eq!(review.resource, "tokenreviews");
    let doc: serde_json::Value = serde_json::from_str(body_text(&review.request_body)).unwrap();
    assert_eq!(doc["spec"]["token"], REDACTED);
    assert_eq!(doc["spec"]["audiences"][0], "api");
    assert!(body_text(&review.response_body).contains("system:serviceaccount:kube-system:coredns"));
    assert_clean(&review, &[&token]);
}

#[test]
fn a_configmap_is_not_redacted_but_a_jwt_in_it_is() {
    let token = jwt();
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"app"}},"data":{{"log-level":"debug","kubeconfig":"users:\n- user:\n    token: {token}\n"}}}}"#
    );
    let request = run(
        &at("Request"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/configmaps",
            request_body: &body,
            status: "201",
            ..CALL
        },
    );
    let captured = request.request_body.as_ref().unwrap();
    assert!(
        captured.text.contains(r#""log-level":"debug""#),
        "{}",
        captured.text
    );
    assert!(captured.redacted);
    assert_clean(&request, &[&token]);

    let plain = run(
        &at("Request"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/configmaps",
            request_body: r#"{"kind":"ConfigMap","data":{"password-hint":"not-a-secret-value"}}"#,
            ..CALL
        },
    );
    let captured = plain.request_body.as_ref().unwrap();
    assert!(!captured.redacted);
    assert!(captured.text.contains("not-a-secret-value"));
}

#[test]
fn allow_secrets_lets_values_through_for_the_rules_requests_only() {
    let policy = CapturePolicy::parse(
        "rules:\n- level: RequestResponse\n  resources: [{group: \"\", resources: [secrets], resourceNames: [db]}]\n  allowSecrets: true\n- level: RequestResponse\n",
    )
    .unwrap();
    let allowed = run(&policy, &secret_create());
    let text = body_text(&allowed.request_body);
    assert!(text.contains("czNjcjN0LXBhc3N3b3Jk"), "{text}");
    assert!(text.contains("admin-user-name"), "{text}");
    assert!(!allowed.request_body.as_ref().unwrap().redacted);

    let mut other = secret_create();
    let renamed = SECRET_CREATE.replace("\"name\":\"db\"", "\"name\":\"other\"");
    other.request_body = &renamed;
    other.response_body = "";
    let denied = run(&policy, &other);
    assert_eq!(denied.name, "other");
    assert_clean(&denied, &["czNjcjN0LXBhc3N3b3Jk", "admin-user-name"]);
}

#[test]
fn secret_bodies_that_cannot_be_parsed_are_not_rendered() {
    // Protobuf (controllers talk protobuf).
    let mut pb = b"k8s\0".to_vec();
    pb.extend_from_slice(b"\n\x0c\n\x02v1\x12\x06Secret\x12\x20protobuf-secret-value-0123456789");
    let mut ex = exchange(&Call {
        path: "/api/v1/namespaces/default/secrets/db",
        response_type: "application/vnd.kubernetes.protobuf",
        ..CALL
    });
    ex.response.body_bytes = pb.len() as u64;
    ex.response.body = pb;
    let request = run_with(&at("RequestResponse"), &ex, &CaptureLimits::default());
    let body = request.response_body.as_ref().unwrap();
    assert!(
        body.text.starts_with("secret body not rendered"),
        "{}",
        body.text
    );
    assert!(body.redacted);
    assert_clean(&request, &["protobuf-secret-value"]);

    // Cut short by the capture's keep limit.
    let mut ex = exchange(&secret_create());
    ex.request.body.truncate(120);
    ex.request.body_missing = ex.request.body_bytes - 120;
    let request = run_with(&at("Request"), &ex, &CaptureLimits::default());
    assert!(body_text(&request.request_body).starts_with("secret body not rendered"));

    // Malformed.
    let request = run(
        &at("Request"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/secrets",
            request_body: r#"{"kind":"Secret","data":{"k":"bWFsZm9ybWVkLXNlY3JldA=="}"#,
            ..CALL
        },
    );
    assert!(body_text(&request.request_body).starts_with("secret body not rendered"));
    assert_clean(&request, &["bWFsZm9ybWVkLXNlY3JldA=="]);

    // Not the secrets resource, but the unparsed text names a Secret: withheld as well.
    let request = run(
        &at("Request"),
        &Call {
            method: "POST",
            path: "/validate-everything",
            request_body: r#"{"kind":"AdmissionReview","request":{"object":{"kind":"Secret","data":{"k":"YWRtaXNzaW9uLXNlY3JldA=="}}"#,
            ..CALL
        },
    );
    assert_clean(&request, &["YWRtaXNzaW9uLXNlY3JldA=="]);
}

#[test]
fn a_secret_inside_an_admission_review_is_redacted() {
    let request = run(
        &at("RequestResponse"),
        &Call {
            method: "POST",
            path: "/validate?timeout=10s",
            request_body: r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Secret"},"resource":{"group":"","version":"v1","resource":"secrets"},"operation":"UPDATE","object":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"k":"bmV3LWFkbWlzc2lvbi1zZWNyZXQ="}},"oldObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"k":"b2xkLWFkbWlzc2lvbi1zZWNyZXQ="}}}}"#,
            ..CALL
        },
    );
    assert!(!request.is_resource_request);
    assert!(request.request_body.as_ref().unwrap().redacted);
    assert_clean(
        &request,
        &[
            "bmV3LWFkbWlzc2lvbi1zZWNyZXQ=",
            "b2xkLWFkbWlzc2lvbi1zZWNyZXQ=",
        ],
    );
}

#[test]
fn status_messages_that_echo_a_secret_are_scrubbed_even_at_metadata() {
    let request = run(
        &at("Metadata"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/secrets",
            request_body: r#"{"kind":"Secret","metadata":{"name":"db"},"stringData":{"password":"echoed-secret-value"}}"#,
            status: "403",
            response_body: r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"admission webhook \"policy.example.com\" denied the request: password echoed-secret-value is too weak; token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl","reason":"Forbidden","code":403}"#,
            ..CALL
        },
    );
    let message = &request.status.as_ref().unwrap().message;
    assert!(
        message.contains("admission webhook \"policy.example.com\" denied"),
        "{message}"
    );
    assert!(message.contains(REDACTED));
    assert_eq!(request.request_body, None);
    assert_clean(&request, &["echoed-secret-value", "eyJhbGciOiJSUzI1NiJ9"]);

    // Base64 `data` values are also scrubbed in their decoded form.
    let request = run(
        &at("Metadata"),
        &Call {
            method: "POST",
            path: "/api/v1/namespaces/default/secrets",
            request_body: &format!(
                r#"{{"kind":"Secret","data":{{"k":"{}"}}}}"#,
                b64("decoded-secret-value")
            ),
            status: "422",
            response_body: r#"{"kind":"Status","status":"Failure","message":"value decoded-secret-value is invalid","code":422}"#,
            ..CALL
        },
    );
    assert_clean(&request, &["decoded-secret-value"]);
}

#[test]
fn headers_never_leave_the_node() {
    let token = jwt();
    let authorization = format!("Bearer {token}");
    let request = run(
        &at("RequestResponse"),
        &Call {
            path: "/api/v1/namespaces/default/pods",
            extra_headers: &[
                ("authorization", &authorization),
                ("cookie", "session=cookie-secret-value-42"),
                ("x-remote-extra-scopes", "header-only-value"),
            ],
            response_body: r#"{"kind":"PodList","items":[]}"#,
            ..CALL
        },
    );
    // The identity in the token is decoded; the token is not kept.
    assert_eq!(
        request.service_account.as_ref().unwrap().subject,
        "system:serviceaccount:kube-system:coredns"
    );
    assert_clean(
        &request,
        &[
            &token,
            "cookie-secret-value-42",
            "header-only-value",
            "Bearer",
        ],
    );
}

#[test]
fn tokens_in_urls_and_user_agents_are_redacted() {
    let token = jwt();
    let path = format!(
        "/api/v1/namespaces/kube-system/services/https:dashboard:/proxy/login?token={token}"
    );
    let agent = format!("curl/8.0 Bearer {token}");
    let request = run(
        &at("Metadata"),
        &Call {
            path: &path,
            extra_headers: &[("user-agent", &agent)],
            ..CALL
        },
    );
    assert_eq!(request.subresource, "proxy");
    assert_eq!(request.query, "token=[REDACTED]");
    assert_eq!(request.user_agent, "curl/8.0 Bearer [REDACTED]");
    assert_clean(&request, &[&token]);
}

// ---------------------------------------------------------------------------------------------
// Levels, limits, formats

#[test]
fn levels_decide_which_bodies_are_captured() {
    for (level, request_body, response_body) in [
        ("None", false, false),
        ("Metadata", false, false),
        ("Request", true, false),
        ("RequestResponse", true, true),
    ] {
        let request = run(
            &at(level),
            &Call {
                method: "POST",
                path: "/api/v1/namespaces/default/configmaps",
                request_body: r#"{"kind":"ConfigMap"}"#,
                status: "201",
                response_body: r#"{"kind":"ConfigMap","metadata":{"resourceVersion":"5"}}"#,
                ..CALL
            },
        );
        assert_eq!(format!("{:?}", request.capture_level), level);
        assert_eq!(request.request_body.is_some(), request_body, "{level}");
        assert_eq!(request.response_body.is_some(), response_body, "{level}");
    }
}

#[test]
fn truncation_cuts_on_char_boundaries() {
    let mut s = "héllo".to_owned();
    assert!(truncate_at_char_boundary(&mut s, 2));
    assert_eq!(s, "h");
    let mut s = "héllo".to_owned();
    assert!(truncate_at_char_boundary(&mut s, 3));
    assert_eq!(s, "hé");
    let mut s = "héllo".to_owned();
    assert!(!truncate_at_char_boundary(&mut s, 6));
    assert_eq!(s, "héllo");
    let mut s = "€".to_owned();
    assert!(truncate_at_char_boundary(&mut s, 0));
    assert_eq!(s, "");

    let body = format!(
        r#"{{"kind":"ConfigMap","data":{{"k":"{}"}}}}"#,
        "ü".repeat(100)
    );
    let call = Call {
        method: "POST",
        path: "/api/v1/namespaces/default/configmaps",
        request_body: &body,
        ..CALL
    };
    let exact = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&body).unwrap())
        .unwrap()
        .len();
    for max in [0, 1, 30, 31, 32, exact - 1, exact, exact + 1] {
        let limits = CaptureLimits {
            max_captured_body_bytes: max,
        };
        let request = run_with(&at("Request"), &exchange(&call), &limits);
        let captured = request.request_body.unwrap();
        assert!(captured.text.len() <= max, "{max}");
        assert_eq!(captured.truncated, max < exact, "{max}");
        assert!(
            captured.text.len() + 1 >= max.min(exact),
            "{max}: cut too much"
        );
    }
}

#[test]
fn gzip_protobuf_binary_and_partial_bodies() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(br#"{"kind":"PodList","items":[{"metadata":{"name":"gz-pod"}}]}"#)
        .unwrap();
    let gz = gz.finish().unwrap();
    let mut ex = exchange(&Call {
        path: "/api/v1/pods",
        ..CALL
    });
    ex.response.fields.as_mut().unwrap().push(HeaderField {
        name: "content-encoding".into(),
        value: "gzip".into(),
        sensitive: false,
    });
    ex.response.body_bytes = gz.len() as u64;
    ex.response.body = gz;
    let request = run_with(&at("RequestResponse"), &ex, &CaptureLimits::default());
    assert!(body_text(&request.response_body).contains("gz-pod"));

    // The k8s stage inflated it, the policy rendered those bytes: one gunzip for both.
    let (_, bodies) = ApiRequest::from_exchange(&ex, 0, &BodyLimits::default());
    assert!(bodies.response.is_inflated());

    // A gzip bomb over the cap is a note, not a body.
    let body_limits = BodyLimits {
        max_decoded_bytes: 10,
        ..BodyLimits::default()
    };
    let request = run_with_body_limits(
        &at("RequestResponse"),
        &ex,
        &body_limits,
        &CaptureLimits::default(),
    );
    assert!(body_text(&request.response_body).starts_with("gzip body ("));

    let mut pb = b"k8s\0".to_vec();
    pb.extend_from_slice(b"\n\x09\n\x02v1\x12\x03Pod");
    let mut ex = exchange(&Call {
        path: "/api/v1/namespaces/default/pods/p",
        response_type: "application/vnd.kubernetes.protobuf",
        ..CALL
    });
    ex.response.body_bytes = pb.len() as u64;
    ex.response.body = pb;
    let request = run_with(&at("RequestResponse"), &ex, &CaptureLimits::default());
    assert_eq!(
        body_text(&request.response_body),
        "protobuf body (15 bytes, v1 Pod) not rendered"
    );

    let mut ex = exchange(&Call {
        path: "/api/v1/namespaces/default/pods/p/log",
        response_type: "text/plain",
        ..CALL
    });
    ex.response.body = vec![0xff, 0xfe, 0x00, 0x01];
    ex.response.body_bytes = 4;
    let request = run_with(&at("RequestResponse"), &ex, &CaptureLimits::default());
    assert_eq!(
        body_text(&request.response_body),
        "binary body (4 bytes) not rendered"
    );

    // The start of a large (non-secret) body the capture cut: shown, marked truncated.
    let mut ex = exchange(&Call {
        path: "/api/v1/namespaces/default/pods/p/log",
        response_type: "text/plain",
        response_body: "line 1\nline 2\n",
        ..CALL
    });
    ex.response.body_missing = 1000;
    ex.response.body_bytes += 1000;
    let request = run_with(&at("RequestResponse"), &ex, &CaptureLimits::default());
    let body = request.response_body.unwrap();
    assert_eq!(body.text, "line 1\nline 2\n");
    assert!(body.truncated);
}

#[test]
fn hostile_yaml_is_bounded() {
    // Billion laughs: nine levels of nine aliases. serde_yaml refuses to expand it; the secret
    // body is then withheld, not rendered half-redacted.
    let mut yaml = String::from("kind: Secret\na0: &a0 [\"laugh-secret-value\"]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        yaml.push_str(&format!("a{i}: &a{i} [{}]\n", [prev.as_str(); 9].join(",")));
    }
    let start = std::time::Instant::now();
    let request = run(
        &at("Request"),
        &Call {
            method: "PATCH",
            path: "/api/v1/namespaces/default/secrets/db",
            request_type: "application/apply-patch+yaml",
            request_body: &yaml,
            ..CALL
        },
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert!(body_text(&request.request_body).starts_with("secret body not rendered"));
    assert_clean(&request, &["laugh-secret-value"]);
}

#[test]
fn text_nets() {
    let token = jwt();
    let text = format!("a {token} b Bearer {token}");
    let clean = redact_jwts(&text).unwrap();
    assert_eq!(clean, "a [REDACTED] b Bearer [REDACTED]");
    assert_eq!(redact_jwts("eyJhbGciOi only a header"), None);
    assert_eq!(redact_jwts("eyJ.eyJ.x"), None);
    // Unsigned JWTs (`alg: none`) end with an empty signature.
    assert_eq!(
        redact_jwts("t=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.;").unwrap(),
        "t=[REDACTED];"
    );
    assert_eq!(
        redact_bearer("Authorization: bearer abcdef.0123456789abcdef").unwrap(),
        "Authorization: bearer [REDACTED]"
    );
    assert_eq!(redact_bearer("the bearer token is used"), None);
    assert_eq!(redact_jwts("naïve ünïcödé eyJ text"), None);
}

// ---------------------------------------------------------------------------------------------
// Property: secret values never leave without allowSecrets

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn value(&mut self) -> String {
        const CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.:@ \"\\";
        let len = 12 + (self.next() % 40) as usize;
        let mut s = String::from("Zq");
        for _ in 0..len {
            s.push(CHARS[(self.next() % CHARS.len() as u64) as usize] as char);
        }
        s
    }
}

/// (method, path, request content type, request body, response body, watch); `V` is the value.
fn templates() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
)> {
    vec![
        (
            "POST",
            "/api/v1/namespaces/d/secrets",
            "application/json",
            r#"{"kind":"Secret","metadata":{"name":"s","annotations":{"kubectl.kubernetes.io/last-applied-configuration":V}},"data":{"k":V},"stringData":{"k2":V}}"#,
            r#"{"kind":"Secret","metadata":{"name":"s"},"data":{"k":V}}"#,
            false,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/d/secrets/s",
            "application/apply-patch+yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  k: YV\n",
            r#"{"kind":"Secret","data":{"k":V}}"#,
            false,
        ),
        (
            "GET",
            "/api/v1/namespaces/d/secrets/s",
            "",
            "",
            r#"{"kind":"Secret","data":{"k":V,"k2":V}}"#,
            false,
        ),
        (
            "GET",
            "/api/v1/secrets",
            "",
            "",
            r#"{"kind":"SecretList","items":[{"data":{"k":V}},{"stringData":{"k":V}}]}"#,
            false,
        ),
        (
            "GET",
            "/api/v1/secrets?watch=1",
            "",
            "",
            r#"{"type":"ADDED","object":{"kind":"Secret","data":{"k":V}}}"#,
            true,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/d/secrets/s",
            "application/merge-patch+json",
            r#"{"data":{"k":V},"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":V}}}"#,
            r#"{"kind":"Status","message":V}"#,
            false,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/d/secrets/s",
            "application/json-patch+json",
            r#"[{"op":"add","path":"/data/k","value":V},{"op":"add","path":"/stringData","value":{"x":V}}]"#,
            r#"{"kind":"Secret","data":{"k":V}}"#,
            false,
        ),
        (
            "POST",
            "/api/v1/namespaces/d/serviceaccounts/sa/token",
            "application/json",
            r#"{"kind":"TokenRequest","spec":{"audiences":["a"]}}"#,
            r#"{"kind":"TokenRequest","status":{"token":V}}"#,
            false,
        ),
        (
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "application/json",
            r#"{"kind":"TokenReview","spec":{"token":V}}"#,
            r#"{"kind":"TokenReview","spec":{"token":V},"status":{"authenticated":true}}"#,
            false,
        ),
        (
            "POST",
            "/api/v1/namespaces/d/secrets",
            "application/json",
            r#"{"kind":"Secret","stringData":{"k":V}}"#,
            r#"{"kind":"Status","status":"Failure","message":V,"code":422}"#,
            false,
        ),
        (
            "POST",
            "/api/v1/namespaces/d/secrets",
            "application/json",
            r#"{"kind":"Secret","metadata":{"name":"s"},"unknownField":V,"nested":{"deep":[V]}}"#,
            "",
            false,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/d/secrets/s",
            "application/apply-patch+yaml",
            "kind: Secret\nanchor: &a\n  k: YV\nstringData: *a\n",
            "",
            false,
        ),
        (
            "POST",
            "/webhook",
            "application/json",
            r#"{"kind":"AdmissionReview","request":{"object":{"kind":"Secret","data":{"k":V}}}}"#,
            "",
            false,
        ),
    ]
}

#[test]
fn property_secret_values_never_leave_without_allow_secrets() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let levels = ["None", "Metadata", "Request", "RequestResponse"];
    let limits = [
        CaptureLimits::default(),
        CaptureLimits {
            max_captured_body_bytes: 40,
        },
    ];
    let mut rendered = 0;
    for round in 0..40 {
        for (method, path, request_type, request_body, response_body, watch) in templates() {
            let value = rng.value();
            let quoted = serde_json::to_string(&value).unwrap();
            // In YAML the value is a double-quoted scalar, which JSON escaping produces too.
            let request_body = request_body.replace("YV", &quoted).replace('V', &quoted);
            let response_body = response_body.replace('V', &quoted);
            let escaped = quoted.trim_matches('"').to_owned();
            for level in levels {
                let limit = &limits[round % 2];
                let ex = exchange(&Call {
                    method,
                    path,
                    request_type,
                    request_body: &request_body,
                    status: if response_body.contains("Status") {
                        "422"
                    } else {
                        "200"
                    },
                    response_body: &response_body,
                    watch,
                    ..CALL
                });
                let request = run_with(&at(level), &ex, limit);
                let out = json(&request);
                assert!(
                    !out.contains(&value),
                    "{path} {level}: {value:?} leaked: {out}"
                );
                assert!(
                    !out.contains(&escaped),
                    "{path} {level}: {escaped:?} leaked: {out}"
                );
                rendered +=
                    usize::from(request.request_body.is_some() || request.response_body.is_some());
            }
        }
    }
    assert!(rendered > 500, "{rendered}");
}

#[test]
fn property_holds_for_pipeline_nets_on_free_text() {
    // decode_errors pass the nets too (a body decoder error quoting a JWT).
    let token = jwt();
    let mut request = ApiRequest {
        decode_errors: vec![format!("json: bad value {token}")],
        ..ApiRequest::default()
    };
    let exchange = exchange(&CALL);
    let (_, bodies) = ApiRequest::from_exchange(&exchange, 0, &BodyLimits::default());
    apply(
        &CapturePolicy::default(),
        &bodies,
        &mut request,
        &CaptureLimits::default(),
    );
    assert_eq!(request.decode_errors, ["json: bad value [REDACTED]"]);
}
