//! Who is calling: a bounded component label from the User-Agent, the service account named by
//! a bearer JWT's claims, and the `Impersonate-*` headers.
//!
//! Nothing here keeps a token: the bearer value is borrowed, only its payload's claims are
//! decoded (no signature check: the apiserver already authenticated the request, and we only
//! label it), and the result holds namespace, name, subject and issuer.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine as _;
use serde::Deserialize;

use crate::k8s::api_request::{Impersonation, ServiceAccountRef};
use crate::vocabulary::{HeaderField, text};

/// Longest component label [`component_from_user_agent`] returns.
pub const MAX_COMPONENT_LEN: usize = 32;

/// Components recognised by name; always admitted by [`BoundedLabel`] (they do not use up its
/// budget).
pub const WELL_KNOWN_COMPONENTS: &[&str] = &[
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubeadm",
    "cloud-controller-manager",
    "coredns",
    "helm",
    "go-http-client",
    "browser",
    "unknown",
    "other",
];

/// Bearer headers longer than this are not decoded (service account JWTs are ~1 KiB).
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// Claims longer than this are not believed (namespace and name are DNS labels/subdomains).
const MAX_CLAIM_LEN: usize = 253;
/// Impersonation bounds: values and counts (headers are already bounded by the HTTP layer;
/// this bounds what one request makes us keep).
const MAX_IMPERSONATION_VALUE_LEN: usize = 1024;
const MAX_IMPERSONATION_VALUES: usize = 64;

/// The program name of a User-Agent, normalised to a short label.
///
/// client-go's default User-Agent is `<program>/<version> (<os>/<arch>) kubernetes/<commit>`,
/// and kube-controller-manager appends `/system:serviceaccount:<ns>:<controller>`; the
/// program name is what the apiserver's old `client` label reported. Rules:
/// empty -> `unknown`; `Mozilla/...` -> `browser` (as the old `cleanUserAgent` did); a Windows
/// path and `.exe` are dropped (`C:\bin\kubectl.exe/v1.20` -> `kubectl`); the name is lower-cased,
/// characters outside `[a-z0-9._-]` become `_`, and it is cut to [`MAX_COMPONENT_LEN`]. A name
/// that ends up empty is `unknown`. Bounding the number of distinct values is
/// [`BoundedLabel`]'s job.
pub fn component_from_user_agent(ua: &str) -> String {
    let ua = ua.trim();
    if ua.is_empty() {
        return "unknown".to_string();
    }
    if ua.starts_with("Mozilla/") {
        return "browser".to_string();
    }
    // The program name ends at the first '/' or whitespace; a Windows path (backslashes) is cut
    // to its last component first, so `C:\x\kubectl.exe/v1` gives `kubectl.exe`.
    let program = ua
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap_or("");
    let program = program.rsplit('\\').next().unwrap_or(program);
    let lower = program.to_ascii_lowercase();
    let lower = lower.strip_suffix(".exe").unwrap_or(&lower);
    let mut out = String::with_capacity(MAX_COMPONENT_LEN);
    for c in lower.chars().take(MAX_COMPONENT_LEN) {
        out.push(match c {
            'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        });
    }
    if out.is_empty() || out.chars().all(|c| c == '_') {
        return "unknown".to_string();
    }
    out
}

/// Admits at most `max_distinct` label values besides [`WELL_KNOWN_COMPONENTS`]; later new
/// values become `other`. Thread-safe; values admitted once stay admitted.
#[derive(Debug)]
pub struct BoundedLabel {
    max_distinct: usize,
    seen: Mutex<HashSet<String>>,
}

impl BoundedLabel {
    pub fn new(max_distinct: usize) -> Self {
        BoundedLabel {
            max_distinct,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` if it is well known, already admitted, or there is room; `other` otherwise.
    pub fn admit(&self, value: &str) -> String {
        if WELL_KNOWN_COMPONENTS.contains(&value) {
            return value.to_string();
        }
        // A poisoned lock only means another thread panicked mid-insert; the set is still valid.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value.to_string();
        }
        if seen.len() < self.max_distinct {
            seen.insert(value.to_string());
            return value.to_string();
        }
        "other".to_string()
    }

    /// Distinct values admitted so far (well-known ones not counted).
    pub fn admitted(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[derive(Deserialize, Default)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/namespace")]
    legacy_namespace: Option<String>,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.name")]
    legacy_name: Option<String>,
    #[serde(default, rename = "kubernetes.io")]
    bound: Option<BoundClaims>,
}

#[derive(Deserialize, Default)]
struct BoundClaims {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    serviceaccount: Option<BoundRef>,
}

#[derive(Deserialize, Default)]
struct BoundRef {
    #[serde(default)]
    name: Option<String>,
}

const SA_PREFIX: &str = "system:serviceaccount:";

/// The service account a `Bearer <JWT>` names, from the payload's claims: the bound-token
/// `kubernetes.io: {namespace, serviceaccount: {name}}`, else the legacy
/// `kubernetes.io/serviceaccount/namespace` and `.../service-account.name`, else a `sub` of
/// `system:serviceaccount:<ns>:<name>`. `subject` is `sub` (or built from namespace and name).
/// `None` for anything else (not a bearer JWT, over [`MAX_AUTHORIZATION_LEN`], a user token,
/// undecodable claims). The token and signature are never copied.
pub fn service_account_from_authorization(header_value: &str) -> Option<ServiceAccountRef> {
    if header_value.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    // The apiserver's bearer authenticator: scheme "bearer" in any case, one space.
    let (scheme, token) = header_value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut segments = token.trim().split('.');
    let (_header, payload, _signature) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() {
        return None; // five segments: a JWE, not a JWS.
    }
    let payload = payload.trim_end_matches('=');
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: Claims = serde_json::from_slice(&json).ok()?;

    let sane = |s: &String| !s.is_empty() && s.len() <= MAX_CLAIM_LEN && !s.contains(':');
    let from_bound = claims.bound.as_ref().and_then(|b| {
        let ns = b.namespace.clone().filter(sane)?;
        let name = b.serviceaccount.as_ref()?.name.clone().filter(sane)?;
        Some((ns, name))
    });
    let from_legacy = || {
        let ns = claims.legacy_namespace.clone().filter(sane)?;
        let name = claims.legacy_name.clone().filter(sane)?;
        Some((ns, name))
    };
    let from_sub = || {
        let rest = claims.sub.as_deref()?.strip_prefix(SA_PREFIX)?;
        let (ns, name) = rest.split_once(':')?;
        let (ns, name) = (ns.to_string(), name.to_string());
        (sane(&ns) && sane(&name)).then_some((ns, name))
    };
    let (namespace, name) = from_bound.or_else(from_legacy).or_else(from_sub)?;
    let subject = claims
        .sub
        .filter(|s| s.len() <= 2 * MAX_CLAIM_LEN + SA_PREFIX.len())
        .unwrap_or_else(|| format!("{SA_PREFIX}{namespace}:{name}"));
    let issuer = claims.iss.filter(|s| s.len() <= 1024).unwrap_or_default();
    Some(ServiceAccountRef {
        namespace,
        name,
        subject,
        issuer,
    })
}

/// The `Impersonate-User`, `Impersonate-Group` (repeatable), `Impersonate-Uid` and
/// `Impersonate-Extra-<key>` headers (names in any case). As the apiserver does, an extra key is
/// lower-cased and then percent-decoded (kept as is if that fails). `None` without any of them.
pub fn impersonation(fields: &[HeaderField]) -> Option<Impersonation> {
    const EXTRA_PREFIX: &str = "impersonate-extra-";
    let mut imp = Impersonation::default();
    let mut any = false;
    let mut extra_values = 0usize;
    for field in fields {
        let name = field.name.as_str();
        let value = truncate(&field.value, MAX_IMPERSONATION_VALUE_LEN);
        if name.eq_ignore_ascii_case("impersonate-user") {
            any = true;
            if imp.user.is_empty() {
                imp.user = value;
            }
        } else if name.eq_ignore_ascii_case("impersonate-group") {
            any = true;
            if imp.groups.len() < MAX_IMPERSONATION_VALUES {
                imp.groups.push(value);
            }
        } else if name.eq_ignore_ascii_case("impersonate-uid") {
            any = true;
            if imp.uid.is_empty() {
                imp.uid = value;
            }
        } else if name.len() > EXTRA_PREFIX.len()
            && name.is_char_boundary(EXTRA_PREFIX.len())
            && name[..EXTRA_PREFIX.len()].eq_ignore_ascii_case(EXTRA_PREFIX)
        {
            any = true;
            if extra_values >= MAX_IMPERSONATION_VALUES {
                continue;
            }
            extra_values += 1;
            let raw_key = name[EXTRA_PREFIX.len()..].to_ascii_lowercase();
            let key = truncate(
                &percent_decode(&raw_key).unwrap_or(raw_key),
                MAX_IMPERSONATION_VALUE_LEN,
            );
            imp.extra.entry(key).or_default().push(value);
        }
    }
    any.then_some(imp)
}

/// `url.PathUnescape`: `%XX` only (`+` stays); `None` on a bad escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    String::from_utf8(text::percent_decode(s, false)?.into_owned()).ok()
}

fn truncate(s: &str, max: usize) -> String {
    text::prefix_on_char_boundary(s, max).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn components() {
        let cases = [
            ("kubectl/v1.31.0 (linux/amd64) kubernetes/abc", "kubectl"),
            (
                "kube-controller-manager/v1.20.2 (linux/amd64) kubernetes/faecb19/system:serviceaccount:kube-system:deployment-controller",
                "kube-controller-manager",
            ),
            (
                "kube-scheduler/v1.20.2 (linux/amd64) kubernetes/faecb19/leader-election",
                "kube-scheduler",
            ),
            (
                "kubelet/v1.20.2 (linux/amd64) kubernetes/faecb19",
                "kubelet",
            ),
            (
                "kube-proxy/v1.20.2 (linux/amd64) kubernetes/faecb19",
                "kube-proxy",
            ),
            (
                "kube-apiserver/v1.20.2 (linux/amd64) kubernetes/faecb19",
                "kube-apiserver",
            ),
            ("Go-http-client/2.0", "go-http-client"),
            ("Go-http-client/1.1", "go-http-client"),
            ("", "unknown"),
            ("   ", "unknown"),
            ("/v1", "unknown"),
            ("Mozilla/5.0 (X11; Linux x86_64)", "browser"),
            (
                "C:\\Users\\me\\bin\\kubectl.exe/v1.20.0 (windows/amd64) kubernetes/abc",
                "kubectl",
            ),
            (
                "kubectl.exe/v1.20.0 (windows/amd64) kubernetes/abc",
                "kubectl",
            ),
            ("OpenAPI-Generator/12.0.0/python", "openapi-generator"),
            ("coredns/v1.7.0 (linux/amd64) kubernetes/$Format", "coredns"),
            ("my controller", "my"),
            ("Prometheus/2.30.0", "prometheus"),
            ("ärger/1", "_rger"),
            (
                "a-very-long-program-name-that-goes-on-and-on/1.0",
                "a-very-long-program-name-that-go",
            ),
            ("***/1", "unknown"),
        ];
        for (ua, want) in cases {
            let got = component_from_user_agent(ua);
            assert_eq!(got, want, "{ua:?}");
            assert!(got.len() <= MAX_COMPONENT_LEN);
        }
    }

    #[test]
    fn bounded_label_caps_distinct_values() {
        let label = BoundedLabel::new(3);
        assert_eq!(label.admit("a"), "a");
        assert_eq!(label.admit("b"), "b");
        assert_eq!(label.admit("kubectl"), "kubectl");
        assert_eq!(label.admit("c"), "c");
        assert_eq!(label.admit("d"), "other");
        assert_eq!(label.admit("a"), "a");
        assert_eq!(label.admit("kubelet"), "kubelet");
        assert_eq!(label.admitted(), 3);
    }

    #[test]
    fn bounded_label_is_thread_safe() {
        let label = Arc::new(BoundedLabel::new(10));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let label = Arc::clone(&label);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|i| label.admit(&format!("c{}", (i * 7 + t) % 50)))
                        .filter(|v| v != "other")
                        .count()
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(label.admitted(), 10);
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(claims),
            b64("not-a-real-signature-but-long-enough")
        )
    }

    #[test]
    fn bound_service_account_token() {
        let claims = r#"{"aud":["https://kubernetes.default.svc.cluster.local"],"exp":1700000000,"iat":1690000000,"iss":"https://kubernetes.default.svc.cluster.local","kubernetes.io":{"namespace":"kube-system","pod":{"name":"coredns-abc","uid":"1"},"serviceaccount":{"name":"coredns","uid":"2"}},"nbf":1690000000,"sub":"system:serviceaccount:kube-system:coredns"}"#;
        let sa = service_account_from_authorization(&format!("Bearer {}", jwt(claims))).unwrap();
        assert_eq!(
            sa,
            ServiceAccountRef {
                namespace: "kube-system".into(),
                name: "coredns".into(),
                subject: "system:serviceaccount:kube-system:coredns".into(),
                issuer: "https://kubernetes.default.svc.cluster.local".into(),
            }
        );
        let debug = format!("{sa:?}");
        assert!(!debug.contains("signature"));
    }

    #[test]
    fn legacy_secret_token() {
        let claims = r#"{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"default","kubernetes.io/serviceaccount/secret.name":"builder-token-x","kubernetes.io/serviceaccount/service-account.name":"builder","kubernetes.io/serviceaccount/service-account.uid":"u","sub":"system:serviceaccount:default:builder"}"#;
        let sa = service_account_from_authorization(&format!("bearer {}", jwt(claims))).unwrap();
        assert_eq!(
            (sa.namespace.as_str(), sa.name.as_str()),
            ("default", "builder")
        );
        assert_eq!(sa.issuer, "kubernetes/serviceaccount");
        assert_eq!(sa.subject, "system:serviceaccount:default:builder");
    }

    #[test]
    fn subject_only_and_synthesized_subject() {
        let sa = service_account_from_authorization(&format!(
            "Bearer {}",
            jwt(r#"{"sub":"system:serviceaccount:ns1:sa1"}"#)
        ))
        .unwrap();
        assert_eq!(
            (sa.namespace.as_str(), sa.name.as_str(), sa.issuer.as_str()),
            ("ns1", "sa1", "")
        );
        let sa = service_account_from_authorization(&format!(
            "Bearer {}",
            jwt(r#"{"kubernetes.io":{"namespace":"n","serviceaccount":{"name":"s"}}}"#)
        ))
        .unwrap();
        assert_eq!(sa.subject, "system:serviceaccount:n:s");
    }

    #[test]
    fn not_service_accounts() {
        let long = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
        let cases = [
            String::new(),
            "Basic dXNlcjpwYXNz".to_string(),
            "Bearer".to_string(),
            "Bearer abc.def".to_string(),
            "Bearer opaque-token-123456".to_string(),
            format!(
                "Bearer {}",
                jwt(r#"{"sub":"alice@example.com","iss":"https://dex"}"#)
            ),
            format!(
                "Bearer {}",
                jwt(r#"{"sub":"system:serviceaccount:onlyns"}"#)
            ),
            format!("Bearer {}", jwt(r#"{"sub":"system:serviceaccount::name"}"#)),
            format!("Bearer {}", jwt(r#"{"sub":"system:serviceaccount:a:b:c"}"#)),
            format!("Bearer {}", jwt(r#"{"sub":5}"#)),
            format!("Bearer {}", jwt("not json")),
            format!(
                "Bearer {}.{}",
                jwt(r#"{"sub":"system:serviceaccount:a:b"}"#),
                "x.y"
            ),
            "Bearer a.!!!.c".to_string(),
            long,
        ];
        for c in &cases {
            assert_eq!(
                service_account_from_authorization(c),
                None,
                "{}",
                &c[..c.len().min(60)]
            );
        }
    }

    #[test]
    fn padded_payload_is_accepted() {
        let payload = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"sub":"system:serviceaccount:a:bcd"}"#);
        assert!(payload.ends_with('='));
        let sa = service_account_from_authorization(&format!("Bearer h.{payload}.s")).unwrap();
        assert_eq!(sa.name, "bcd");
    }

    #[test]
    fn impersonation_headers() {
        let fields = vec![
            HeaderField::new("content-type", "application/json"),
            HeaderField::new("impersonate-user", "jane"),
            HeaderField::new("Impersonate-Group", "devs"),
            HeaderField::new("impersonate-group", "system:authenticated"),
            HeaderField::new("Impersonate-Uid", "1234"),
            HeaderField::new("Impersonate-Extra-Scopes", "view"),
            HeaderField::new("impersonate-extra-scopes", "edit"),
            HeaderField::new("impersonate-extra-example.com%2fteam", "a"),
            HeaderField::new("impersonate-extra-bad%zz", "b"),
        ];
        let imp = impersonation(&fields).unwrap();
        assert_eq!(imp.user, "jane");
        assert_eq!(imp.groups, vec!["devs", "system:authenticated"]);
        assert_eq!(imp.uid, "1234");
        let mut extra = BTreeMap::new();
        extra.insert(
            "scopes".to_string(),
            vec!["view".to_string(), "edit".to_string()],
        );
        extra.insert("example.com/team".to_string(), vec!["a".to_string()]);
        extra.insert("bad%zz".to_string(), vec!["b".to_string()]);
        assert_eq!(imp.extra, extra);
    }

    #[test]
    fn no_impersonation() {
        assert_eq!(impersonation(&[]), None);
        assert_eq!(
            impersonation(&[
                HeaderField::new("impersonate-extra-", "x"),
                HeaderField::new("user-agent", "kubectl"),
            ]),
            None
        );
    }

    #[test]
    fn impersonation_is_bounded() {
        let fields: Vec<_> = (0..1000)
            .map(|i| HeaderField::new("impersonate-group", format!("g{i}")))
            .chain((0..1000).map(|i| HeaderField::new(format!("impersonate-extra-k{i}"), "v")))
            .collect();
        let imp = impersonation(&fields).unwrap();
        assert_eq!(imp.groups.len(), MAX_IMPERSONATION_VALUES);
        assert_eq!(imp.extra.len(), MAX_IMPERSONATION_VALUES);
    }
}
