//! Test requests for the sink tests, labelled by the same k8s functions the decoder uses.

use crate::k8s::ApiRequest;
use crate::k8s::api_request::{ServiceAccountRef, StatusInfo, WatchStats};
use crate::k8s::client::component_from_user_agent;

/// 2021-01-02T03:04:05.678901234Z
pub const START: u64 = 1_609_556_645_678_901_234;

/// A served request as the decoder would build it from `method` and `target`.
pub fn request(method: &str, target: &str, code: u16, duration_ms: u64) -> ApiRequest {
    let user_agent = "kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19".to_string();
    ApiRequest {
        audit_id: Some("6f1c9e4a-0000-4000-8000-000000000001".into()),
        start_unix_nano: START,
        end_unix_nano: START + duration_ms * 1_000_000,
        duration_seconds: duration_ms as f64 / 1000.0,
        code: Some(code),
        protocol: "2".into(),
        stream_id: 7,
        response_content_type: "application/json".into(),
        request_body_bytes: 0,
        response_body_bytes: 2_500,
        request_wire_bytes: 120,
        response_wire_bytes: 2_600,
        headers_source: "wire".into(),
        component: component_from_user_agent(&user_agent),
        user_agent,
        peer: Some("10.0.0.7:51234".parse().unwrap()),
        local: Some("10.0.0.1:6443".parse().unwrap()),
        ..ApiRequest::from_request_line(method, target, "")
    }
}

pub fn create_configmap() -> ApiRequest {
    let mut r = request(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
        201,
        12,
    );
    // The decoder takes a create's name from the body, like the audit log's objectRef.
    r.name = "app-config".into();
    r.request_body_bytes = 180;
    r
}

pub fn watch_pods() -> ApiRequest {
    let mut r = request(
        "GET",
        "/api/v1/namespaces/kube-system/pods?watch=true&resourceVersion=100",
        200,
        65_000,
    );
    r.watch = Some(WatchStats {
        added: 3,
        modified: 5,
        deleted: 1,
        bookmark: 2,
        error: 0,
        other: 0,
        bytes: 9_000,
    });
    r.response_body_bytes = 9_000;
    r
}

pub fn throttled_list() -> ApiRequest {
    let mut r = request("GET", "/apis/apps/v1/deployments", 429, 3);
    r.retry_after_seconds = Some(1);
    r.flow_schema_uid = Some("fs-uid-1".into());
    r.priority_level_uid = Some("pl-uid-1".into());
    r.status = Some(StatusInfo {
        status: "Failure".into(),
        reason: "TooManyRequests".into(),
        message: "Too many requests, please try again later.".into(),
        code: Some(429),
    });
    r
}

pub fn healthz() -> ApiRequest {
    let mut r = request("GET", "/healthz", 200, 1);
    r.user_agent = "kube-probe/1.20".into();
    r.component = component_from_user_agent(&r.user_agent);
    r
}

pub fn dry_run_update_by_service_account() -> ApiRequest {
    let mut r = request(
        "PUT",
        "/apis/apps/v1/namespaces/prod/deployments/web?dryRun=All",
        200,
        30,
    );
    r.user_agent = "argocd-application-controller/v2.0".into();
    r.component = component_from_user_agent(&r.user_agent);
    r.service_account = Some(ServiceAccountRef {
        namespace: "argocd".into(),
        name: "argocd-application-controller".into(),
        subject: "system:serviceaccount:argocd:argocd-application-controller".into(),
        issuer: String::new(),
    });
    r
}
