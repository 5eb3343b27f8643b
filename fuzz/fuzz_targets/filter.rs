//! Arbitrary filter text through the parser; whatever parses is matched against requests of
//! several shapes. Neither may panic; an error's column must lie within the text (or just past).
#![no_main]

use apiscope::filter::Filter;
use apiscope::k8s::ApiRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    match Filter::parse(text) {
        Ok(filter) => {
            let empty = ApiRequest::default();
            let watch = ApiRequest {
                verb: "watch".into(),
                resource: "pods".into(),
                namespace: "kube-system".into(),
                code: Some(200),
                duration_seconds: 1.5,
                long_running: true,
                user_agent: "kubelet/v1.20.2".into(),
                component: "kubelet".into(),
                audit_id: Some("ünïcode".into()),
                ..ApiRequest::default()
            };
            let _ = filter.matches(&empty);
            let _ = filter.matches(&watch);
            assert_eq!(filter.source(), text);
        }
        Err(error) => {
            assert!(error.column >= 1);
            assert!(error.column <= text.chars().count() + 1, "{error}");
            let _ = error.render(text);
        }
    }
});
