use super::*;
use crate::k8s::api_request::{
    CaptureLevel, Impersonation, ServiceAccountRef, StatusInfo, WatchStats,
};
use crate::vocabulary::Role;

/// A kubelet watching pods in kube-system, as the k8s stage builds it.
fn kubelet_watch() -> ApiRequest {
    ApiRequest {
        audit_id: Some("53f652a2-248e-44a4-8887-f861ff2ce77e".into()),
        duration_seconds: 4.2,
        verb: "watch".into(),
        metric_verb: "WATCH".into(),
        is_resource_request: true,
        version: "v1".into(),
        resource: "pods".into(),
        namespace: "kube-system".into(),
        scope: "namespace".into(),
        long_running: true,
        method: "GET".into(),
        path: "/api/v1/namespaces/kube-system/pods".into(),
        query: "watch=true&resourceVersion=100".into(),
        code: Some(200),
        protocol: "2".into(),
        response_body_bytes: 5120,
        headers_source: "wire".into(),
        user_agent: "kubelet/v1.20.2 (linux/amd64) kubernetes/faecb19".into(),
        component: "kubelet".into(),
        watch: Some(WatchStats {
            added: 3,
            modified: 2,
            ..WatchStats::default()
        }),
        ..ApiRequest::default()
    }
}

/// kubectl creating a configmap, refused with a 500 after 1.5 s.
fn kubectl_create_failed() -> ApiRequest {
    ApiRequest {
        audit_id: Some("0d9b3043-9db0-42fe-8305-1d48c2f5a737".into()),
        duration_seconds: 1.5,
        verb: "create".into(),
        metric_verb: "POST".into(),
        is_resource_request: true,
        version: "v1".into(),
        resource: "configmaps".into(),
        namespace: "default".into(),
        scope: "namespace".into(),
        dry_run: true,
        method: "POST".into(),
        path: "/api/v1/namespaces/default/configmaps".into(),
        code: Some(500),
        protocol: "2".into(),
        request_body_bytes: 300,
        request_content_type: "application/json".into(),
        headers_source: "hook".into(),
        user_agent: "kubectl/v1.20.2 (linux/amd64) kubernetes/faecb19".into(),
        component: "kubectl".into(),
        service_account: Some(ServiceAccountRef {
            namespace: "ci".into(),
            name: "deployer".into(),
            subject: "system:serviceaccount:ci:deployer".into(),
            issuer: String::new(),
        }),
        impersonation: Some(Impersonation {
            user: "alice".into(),
            ..Impersonation::default()
        }),
        status: Some(StatusInfo {
            reason: "InternalError".into(),
            code: Some(500),
            ..StatusInfo::default()
        }),
        capture_level: CaptureLevel::Request,
        ..ApiRequest::default()
    }
}

/// The apiserver's own call that was reset before any response.
fn reset_client_call() -> ApiRequest {
    ApiRequest {
        duration_seconds: 0.25,
        verb: "get".into(),
        metric_verb: "GET".into(),
        method: "GET".into(),
        path: "/healthz".into(),
        code: None,
        protocol: "1.1".into(),
        headers_source: "wire".into(),
        component: "kube-apiserver".into(),
        role: Role::Client,
        incomplete: Some("reset".into()),
        retry_after_seconds: None,
        ..ApiRequest::default()
    }
}

fn requests() -> [(&'static str, ApiRequest); 3] {
    [
        ("watch", kubelet_watch()),
        ("create", kubectl_create_failed()),
        ("reset", reset_client_call()),
    ]
}

/// Which of the three requests each filter keeps.
#[test]
fn filters_keep_exactly_the_requests_they_describe() {
    let table: &[(&str, &[&str])] = &[
        // The issue's examples.
        (r#"verb == "watch" and resource == "pods""#, &["watch"]),
        ("code >= 500", &["create"]),
        ("latency > 1s", &["watch", "create"]),
        (
            r#"client == "kubelet" and namespace =~ "kube-.*""#,
            &["watch"],
        ),
        (r#"user_agent contains "kubectl""#, &["create"]),
        // Empty text matches everything.
        ("", &["watch", "create", "reset"]),
        ("  \t ", &["watch", "create", "reset"]),
        // Durations and numbers of seconds.
        ("latency < 250ms", &[]),
        ("latency <= 250ms", &["reset"]),
        ("latency >= 1.5", &["watch", "create"]),
        ("latency > 2m", &[]),
        ("latency < 0.01h", &["watch", "create", "reset"]),
        // An absent code equals nothing: only != holds.
        ("code == 200", &["watch"]),
        ("code != 200", &["create", "reset"]),
        ("code < 600", &["watch", "create"]),
        ("code", &["watch", "create"]),
        ("not code", &["reset"]),
        // Strings.
        (r#"namespace != "default""#, &["watch", "reset"]),
        (
            r#"path startsWith "/api/v1/namespaces/""#,
            &["watch", "create"],
        ),
        (r#"path endsWith "configmaps""#, &["create"]),
        (r#"path starts_with "/healthz""#, &["reset"]),
        (r#"query contains "watch=true""#, &["watch"]),
        // Regexes are anchored at both ends, as PromQL's.
        (r#"namespace =~ "kube""#, &[]),
        (r#"namespace =~ "kube.*|default""#, &["watch", "create"]),
        (r#"client !~ "kube-.*""#, &["watch", "create"]),
        (r#"user_agent =~ "(?i)KUBECTL/.*""#, &["create"]),
        // Bools, bare or compared.
        ("long_running", &["watch"]),
        ("dry_run == true", &["create"]),
        ("dry_run != true", &["watch", "reset"]),
        ("resource_request == false", &["reset"]),
        // Optional strings read as "" when absent; bare strings mean non-empty.
        ("incomplete", &["reset"]),
        (r#"incomplete == "reset""#, &["reset"]),
        (r#"audit_id == """#, &["reset"]),
        (r#"audit_id startsWith "53f6""#, &["watch"]),
        // Identity.
        (
            r#"user == "system:serviceaccount:ci:deployer""#,
            &["create"],
        ),
        (
            r#"service_account == "deployer" and service_account_namespace == "ci""#,
            &["create"],
        ),
        (r#"impersonated_user == "alice""#, &["create"]),
        (r#"role == "client""#, &["reset"]),
        // Enumerated strings, sizes, decoded bodies.
        (r#"capture_level == "Request""#, &["create"]),
        (r#"capture_level == "Metadata""#, &["watch", "reset"]),
        (r#"protocol == "1.1""#, &["reset"]),
        (r#"headers_source == "hook""#, &["create"]),
        ("request_bytes > 0", &["create"]),
        ("response_bytes >= 5120", &["watch"]),
        ("watch_events == 5", &["watch"]),
        (r#"status_reason == "InternalError""#, &["create"]),
        ("retry_after", &[]),
        (r#"request_content_type == "application/json""#, &["create"]),
        (r#"metric_verb == "WATCH" && version == "v1""#, &["watch"]),
        // Precedence: not > and > or; parentheses override.
        (
            r#"verb == "get" or verb == "watch" and code == 500"#,
            &["reset"],
        ),
        (
            r#"(verb == "get" or verb == "watch") and code == 200"#,
            &["watch"],
        ),
        (r#"not verb == "watch" and not verb == "get""#, &["create"]),
        (r#"not (verb == "watch" or verb == "get")"#, &["create"]),
        (r#"! long_running || code >= 500"#, &["create", "reset"]),
        (
            r#"NOT long_running AND code OR role == "client""#,
            &["create", "reset"],
        ),
        ("not not long_running", &["watch"]),
        (r#"((((resource == "pods"))))"#, &["watch"]),
        // Single quotes and escapes.
        (r#"verb == 'watch'"#, &["watch"]),
        (r#"path =~ "/api/v1/namespaces/[a-z-]+/pods""#, &["watch"]),
        (r#"query =~ "watch=true&resourceVersion=\\d+""#, &["watch"]),
        // Non-ASCII text is compared as text.
        (r#"name == "ünïcode""#, &[]),
    ];
    for (text, expected) in table {
        let filter = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(filter.source(), *text);
        let kept: Vec<&str> = requests()
            .iter()
            .filter(|(_, request)| filter.matches(request))
            .map(|(label, _)| *label)
            .collect();
        assert_eq!(kept, *expected, "{text}");
    }
}

/// Each error points at the column where the problem is, and says what was wanted.
#[test]
fn errors_point_at_the_column_and_say_why() {
    let table: &[(&str, usize, &str)] = &[
        ("cod == 200", 1, "unknown field `cod`: did you mean code?"),
        (
            "verb == \"get\" and usr == \"x\"",
            19,
            "unknown field `usr`: did you mean user?",
        ),
        ("userAgent contains \"x\"", 1, "did you mean user_agent?"),
        ("bogus", 1, "known fields: verb, metric_verb,"),
        (
            r#"code == "abc""#,
            9,
            "code is a number: expected a number (no quotes) after `==`",
        ),
        ("code == 5s", 9, "code is a number, not a duration"),
        (
            "latency > \"1s\"",
            11,
            "latency is a duration: expected a duration",
        ),
        (
            "namespace == 5",
            14,
            "namespace is a string: quote the value",
        ),
        (
            "namespace == kube",
            14,
            "strings are quoted: namespace == \"kube\"",
        ),
        (
            "namespace > \"a\"",
            13,
            "`>` compares numbers and durations; namespace is a string",
        ),
        (
            "code =~ \"5..\"",
            9,
            "`=~` works on strings; code is a number",
        ),
        ("code contains \"5\"", 15, "`contains` works on strings"),
        (
            "dry_run == 1",
            12,
            "dry_run is a bool: expected true or false",
        ),
        ("dry_run > true", 11, "dry_run is a bool: use == or !="),
        (
            r#"role == "server ""#,
            9,
            "role is one of server, client, not \"server \"",
        ),
        (
            r#"capture_level == "metadata""#,
            18,
            "capture_level is one of None, Metadata, Request, RequestResponse",
        ),
        ("code = 500", 6, "`=` is not an operator: write `==`"),
        ("code >=", 8, "expected a value after `>=`, found the end"),
        ("code 500", 6, "expected an operator after `code`"),
        (
            "(code == 500",
            13,
            "expected `)` to close the `(` at column 1, found the end",
        ),
        ("code == 500)", 12, "`)` without a matching `(`"),
        (
            "code == 500 verb",
            13,
            "expected `and`, `or` or the end, found `verb`",
        ),
        (
            "code == 500 and",
            16,
            "expected a field, `not` or `(`, found the end",
        ),
        ("and code", 1, "expected a field name, found `and`"),
        ("== 5", 1, "expected a field name, found `==`"),
        ("verb == \"get", 9, "unterminated string"),
        (r#"path == "a\qb""#, 11, "unknown escape `\\q`"),
        (
            "latency > 5 days",
            13,
            "expected `and`, `or` or the end, found `days`",
        ),
        ("latency > 5d", 12, "unknown unit `d`"),
        ("code == 1.2.3", 9, "not a number"),
        (r#"path =~ "(""#, 9, "bad regex \"(\":"),
        (r#"path =~ "a{100000}""#, 9, "regex"),
        ("code # 5", 6, "unexpected character '#'"),
        // Columns count chars, not bytes.
        ("name == \"ü\" and nmae == \"x\"", 17, "did you mean name?"),
    ];
    for (text, column, message) in table {
        let error = Filter::parse(text).expect_err(text);
        assert_eq!(error.column, *column, "{text}: {error}");
        assert!(error.message.contains(message), "{text}: {error}");
        assert_eq!(
            error.to_string(),
            format!("column {column}: {}", error.message)
        );
    }
}

#[test]
fn limits_refuse_long_deep_and_regex_heavy_filters() {
    let long = format!("path == \"{}\"", "a".repeat(MAX_FILTER_BYTES));
    let error = Filter::parse(&long).expect_err("too long");
    assert!(
        error.message.contains("longer than the limit of 4096"),
        "{error}"
    );
    assert_eq!(error.column, MAX_FILTER_BYTES + 1);

    let deep = |levels: usize| format!("{}code{}", "(".repeat(levels), ")".repeat(levels));
    assert!(Filter::parse(&deep(parser::MAX_DEPTH)).is_ok());
    let error = Filter::parse(&deep(parser::MAX_DEPTH + 1)).expect_err("too deep");
    assert!(error.message.contains("nested too deep"), "{error}");
    assert_eq!(error.column, parser::MAX_DEPTH + 1);
    let nots = format!("{}code", "not ".repeat(parser::MAX_DEPTH + 1));
    assert!(Filter::parse(&nots).is_err());

    // A long flat chain is not nesting: it parses (into one list) and evaluates.
    let chain = vec!["code"; 400].join(" and ");
    assert!(
        Filter::parse(&chain)
            .expect("chain")
            .matches(&kubelet_watch())
    );

    let regexes = vec![r#"path =~ "a""#; parser::MAX_REGEXES + 1].join(" or ");
    let error = Filter::parse(&regexes).expect_err("too many regexes");
    assert!(error.message.contains("at most 16 regexes"), "{error}");
    // Compiled size is bounded: this one is small to write and huge to compile.
    let error = Filter::parse(r#"path =~ "(\\w{50}){50}""#).expect_err("too big");
    assert!(error.message.contains("regex too large"), "{error}");
}

#[test]
fn every_documented_field_parses_and_reads_without_panicking() {
    for (name, _, field_type, _) in FIELDS {
        let filter = Filter::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (_, request) in requests() {
            filter.matches(&request);
        }
        let _ = field_type.describe();
    }
    let docs = include_str!("../../../docs/filter.md");
    for (name, ..) in FIELDS {
        assert!(
            docs.contains(&format!("| `{name}` |")),
            "docs/filter.md lacks the field {name}"
        );
    }
}

#[test]
fn a_filter_is_shareable_across_threads() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_traits::<Filter>();
    let filter = Filter::parse(r#"namespace =~ "kube-.*""#).expect("filter");
    let copy = filter.clone();
    let handle = std::thread::spawn(move || copy.matches(&kubelet_watch()));
    assert!(handle.join().expect("thread"));
    assert!(filter.matches(&kubelet_watch()));
    assert!(Filter::parse("").expect("empty").matches_all());
}

#[test]
fn render_puts_a_caret_under_the_column() {
    let text = "code == \"5\"";
    let error = Filter::parse(text).expect_err("type");
    assert_eq!(
        error.render(text),
        format!("{error}\n  code == \"5\"\n          ^")
    );
}
