//! The Kubernetes release of the traced kube-apiserver, and the labelling rules of
//! `apiserver_request_total` that changed between releases: apiscope follows the rules of the
//! release it traces, so its counters compare with the apiserver's own label set by label set.
//!
//! Where the release comes from, first found wins:
//! - `--kubernetes-version` (capture and replay);
//! - the binary's Go build info ([`KubernetesRelease::from_build_info`]; stripped binaries have
//!   it): a module-mode build that requires `k8s.io/kubernetes` names its version, and so do the
//!   staging modules (`k8s.io/apiserver v0.MINOR.PATCH`) when replaced with their published
//!   versions. A build inside the kubernetes repository names neither;
//! - the traffic: the apiserver's own loopback client says `User-Agent: kube-apiserver/v1.37.2
//!   (...)` (stamped from the same `gitVersion` as `/version`), at start-up and every 10 s when
//!   it renews its identity lease ([`KubernetesRelease::from_user_agent`]).
//!
//! Until one is known, the newest rules apply.

use std::fmt;

/// A Kubernetes release, `1.MINOR.PATCH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubernetesRelease {
    pub minor: u32,
    pub patch: u32,
}

impl KubernetesRelease {
    /// `v1.37.2`, `1.34.4`, `1.20` (patch 0); anything else is `None`.
    pub fn parse(text: &str) -> Option<KubernetesRelease> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        // Pre-release and build suffixes (`-rc.1`, `+abc`) do not change the rules.
        let text = text.split(['-', '+']).next()?;
        let mut parts = text.split('.');
        if parts.next()? != "1" {
            return None;
        }
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(patch) => patch.parse().ok()?,
            None => 0,
        };
        parts
            .next()
            .is_none()
            .then_some(KubernetesRelease { minor, patch })
    }

    /// The release from module versions of the binary's build info; `dependency_version` gives a
    /// module's version (after replacement), like `GoBinary::dependency_version`.
    pub fn from_build_info<'a>(
        dependency_version: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<KubernetesRelease> {
        if let Some(release) = dependency_version("k8s.io/kubernetes").and_then(Self::parse) {
            return Some(release);
        }
        // Staging modules are versioned v0.MINOR.PATCH in step with the release; an unreplaced
        // one says v0.0.0 (a build inside the kubernetes repository) and tells nothing.
        let staging = dependency_version("k8s.io/apiserver")?;
        let staging = staging.strip_prefix("v0.")?;
        let release = Self::parse(&format!("1.{staging}"))?;
        (release.minor > 0).then_some(release)
    }
}

impl KubernetesRelease {
    /// The release an apiserver's loopback client names: `kube-apiserver/v1.37.2 (linux/amd64)
    /// kubernetes/abcdef0`; `None` for any other client.
    pub fn from_user_agent(user_agent: &str) -> Option<KubernetesRelease> {
        let version = user_agent.strip_prefix("kube-apiserver/")?;
        Self::parse(version.split(' ').next()?)
    }
}

impl fmt::Display for KubernetesRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}", self.minor, self.patch)
    }
}

/// The labelling rules of `apiserver_request_total` that differ between releases, each measured
/// against a real apiserver of that release (tests/tests/telemetry.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelRules {
    /// The `code` a WATCH is counted with: "0" on v1.20 (its watch handler writes the status past
    /// the instrumented response writer); the real status (200) from v1.21 on.
    pub watch_code_zero: bool,
    /// Whether the apiserver counts some non-resource paths in `apiserver_request_total` (see
    /// [`LabelRules::instrumented_nonresource`]); measured on v1.34.4 and v1.37.2.
    pub counts_nonresource_paths: bool,
}

impl LabelRules {
    /// The rules of `release`; the newest rules when the release is unknown.
    pub fn for_release(release: Option<KubernetesRelease>) -> LabelRules {
        let minor = release.map_or(u32::MAX, |release| release.minor);
        // v1.20.2 and v1.34.4 / v1.37.2 are measured; releases in between (not in the test
        // matrix) get the later rules.
        LabelRules {
            watch_code_zero: minor <= 20,
            counts_nonresource_paths: minor > 20,
        }
    }

    /// The `subresource` label a non-resource request is counted with in
    /// `apiserver_request_total`, if these rules count it there at all (with empty group,
    /// version, resource, scope and component): the handlers the apiserver wraps in
    /// `metrics.InstrumentHandlerFunc` with the path as subresource — OpenAPI v3 (the
    /// aggregator: `openapi/v3` for the index, `openapi/v3/` for a group-version) and the root
    /// health checks.
    pub fn instrumented_nonresource(&self, path: &str) -> Option<&'static str> {
        if !self.counts_nonresource_paths {
            return None;
        }
        match path {
            "/openapi/v3" => Some("openapi/v3"),
            _ if path.starts_with("/openapi/v3/") => Some("openapi/v3/"),
            "/healthz" => Some("/healthz"),
            "/livez" => Some("/livez"),
            "/readyz" => Some("/readyz"),
            _ => None,
        }
    }
}

impl Default for LabelRules {
    fn default() -> Self {
        LabelRules::for_release(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse() {
        let release = |minor, patch| Some(KubernetesRelease { minor, patch });
        assert_eq!(KubernetesRelease::parse("v1.37.2"), release(37, 2));
        assert_eq!(KubernetesRelease::parse("1.34.4"), release(34, 4));
        assert_eq!(KubernetesRelease::parse("1.20"), release(20, 0));
        assert_eq!(KubernetesRelease::parse("v1.36.0-rc.1"), release(36, 0));
        for bad in ["", "v2.0.0", "1", "1.x.0", "1.2.3.4", "v0.37.2"] {
            assert_eq!(KubernetesRelease::parse(bad), None, "{bad}");
        }
        assert_eq!(release(37, 2).unwrap().to_string(), "v1.37.2");
    }

    #[test]
    fn release_from_build_info() {
        // The wrapper-module build: kubernetes is a dependency, staging modules replaced.
        let wrapper = |module: &str| match module {
            "k8s.io/kubernetes" => Some("v1.37.2"),
            "k8s.io/apiserver" => Some("v0.37.2"),
            _ => None,
        };
        assert_eq!(
            KubernetesRelease::from_build_info(wrapper),
            Some(KubernetesRelease {
                minor: 37,
                patch: 2
            })
        );
        // Only a staging module (e.g. an aggregated apiserver's build would name no kubernetes).
        let staging = |module: &str| (module == "k8s.io/apiserver").then_some("v0.34.4");
        assert_eq!(
            KubernetesRelease::from_build_info(staging),
            Some(KubernetesRelease {
                minor: 34,
                patch: 4
            })
        );
        // Inside the kubernetes repository: staging modules at v0.0.0, no kubernetes dependency.
        let in_repo = |module: &str| (module == "k8s.io/apiserver").then_some("v0.0.0");
        assert_eq!(KubernetesRelease::from_build_info(in_repo), None);
        assert_eq!(KubernetesRelease::from_build_info(|_| None), None);
    }

    #[test]
    fn release_from_user_agent() {
        assert_eq!(
            KubernetesRelease::from_user_agent(
                "kube-apiserver/v1.37.2 (linux/amd64) kubernetes/$Format"
            ),
            KubernetesRelease::parse("1.37.2")
        );
        assert_eq!(
            KubernetesRelease::from_user_agent(
                "kube-apiserver/v1.20.2 (linux/amd64) kubernetes/faecb19"
            ),
            KubernetesRelease::parse("1.20.2")
        );
        for other in [
            "kubectl/v1.32.4 (linux/amd64) kubernetes/abc",
            "kube-apiserver",
            "kube-apiserver/unknown",
        ] {
            assert_eq!(KubernetesRelease::from_user_agent(other), None, "{other}");
        }
    }

    #[test]
    fn nonresource_paths_counted_by_modern_apiservers() {
        let modern = LabelRules::for_release(KubernetesRelease::parse("1.37.2"));
        assert_eq!(
            modern.instrumented_nonresource("/openapi/v3"),
            Some("openapi/v3")
        );
        assert_eq!(
            modern.instrumented_nonresource("/openapi/v3/api/v1"),
            Some("openapi/v3/")
        );
        assert_eq!(modern.instrumented_nonresource("/readyz"), Some("/readyz"));
        assert_eq!(modern.instrumented_nonresource("/readyz/etcd"), None);
        assert_eq!(modern.instrumented_nonresource("/version"), None);
        assert_eq!(modern.instrumented_nonresource("/openapi/v2"), None);
        let old = LabelRules::for_release(KubernetesRelease::parse("1.20.2"));
        assert_eq!(old.instrumented_nonresource("/openapi/v3"), None);
    }

    #[test]
    fn rules_follow_the_release() {
        let rules = |text| LabelRules::for_release(KubernetesRelease::parse(text));
        assert!(rules("1.20.2").watch_code_zero);
        assert!(!rules("1.20.2").counts_nonresource_paths);
        assert!(rules("1.34.4").counts_nonresource_paths);
        assert!(!rules("1.34.4").watch_code_zero);
        assert!(!rules("1.37.2").watch_code_zero);
        assert_eq!(LabelRules::default(), rules("1.37.2"));
    }
}
