//! Which Kubernetes build a test cluster runs: the version matrix of the end-to-end suite.
//!
//! Each entry has its own cache directory, `$APISCOPE_CACHE/kubernetes-<version>[-pie]/bin`,
//! with kube-apiserver, the etcd it pins, and (when built with `--controllers`)
//! kube-controller-manager and kube-scheduler.

use std::fmt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::apiscope_cache;

/// Comma-separated versions the end-to-end tests run on, e.g. `1.37.2` or `1.37.2,1.34.4-pie`;
/// default: the whole [`KubernetesVersion::matrix`].
pub const VERSIONS_ENV: &str = "APISCOPE_K8S_VERSIONS";

/// One Kubernetes build: release version and build mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KubernetesVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Built with `-buildmode=pie`, as distributions and OpenShift build it.
    pub pie: bool,
}

impl KubernetesVersion {
    /// The newest release, built like upstream's release binaries (stripped, not PIE), with
    /// kube-controller-manager and kube-scheduler: the default everywhere.
    pub const V1_37_2: KubernetesVersion = KubernetesVersion::new(1, 37, 2, false);
    /// An older, widely deployed release, built as a position-independent executable.
    pub const V1_34_4_PIE: KubernetesVersion = KubernetesVersion::new(1, 34, 4, true);
    /// The Debian-source build (`scripts/build-kubernetes.sh`, Go 1.19) of the v1.20.2 golden
    /// recording; not in the matrix (CI budget), still runnable through [`VERSIONS_ENV`].
    pub const V1_20_2: KubernetesVersion = KubernetesVersion::new(1, 20, 2, false);

    pub const fn new(major: u32, minor: u32, patch: u32, pie: bool) -> KubernetesVersion {
        KubernetesVersion {
            major,
            minor,
            patch,
            pie,
        }
    }

    /// The default of [`super::ClusterOptions`], `make demo` and the tests.
    pub const fn newest() -> KubernetesVersion {
        KubernetesVersion::V1_37_2
    }

    /// What `make setup` builds and `make test` runs the end-to-end suite on, newest first.
    pub fn matrix() -> &'static [KubernetesVersion] {
        &[KubernetesVersion::V1_37_2, KubernetesVersion::V1_34_4_PIE]
    }

    /// The versions named by [`VERSIONS_ENV`], or the whole matrix when it is unset or empty.
    pub fn under_test() -> Result<Vec<KubernetesVersion>> {
        match std::env::var(VERSIONS_ENV) {
            Ok(list) if !list.trim().is_empty() => list
                .split(',')
                .map(|item| {
                    item.parse()
                        .with_context(|| format!("{VERSIONS_ENV}={list}"))
                })
                .collect(),
            _ => Ok(KubernetesVersion::matrix().to_vec()),
        }
    }

    /// `1.37.2`, without the build mode.
    pub fn release(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.patch)
    }

    /// `$APISCOPE_CACHE/kubernetes-1.34.4-pie/bin`
    pub fn bin_dir(&self) -> PathBuf {
        let suffix = if self.pie { "-pie" } else { "" };
        apiscope_cache().join(format!("kubernetes-{}{suffix}/bin", self.release()))
    }

    /// The command that builds this version's binaries into [`KubernetesVersion::bin_dir`].
    pub fn build_command(&self) -> String {
        if self.is_debian_source_build() {
            return "scripts/build-kubernetes.sh".into();
        }
        let pie = if self.pie { " --pie" } else { "" };
        let controllers = if self.has_controllers() {
            " --controllers"
        } else {
            ""
        };
        format!(
            "scripts/build-kubernetes-modern.sh {}{pie}{controllers}",
            self.release()
        )
    }

    /// Whether this build comes with kube-controller-manager and kube-scheduler. `make setup`
    /// builds them for the newest version only, to keep a cold `make test` within budget; tests
    /// that want them run without them on the other versions, and say so. Declared for the
    /// known builds (a missing binary is then an error, not a quietly narrower test), looked up
    /// in the bin dir for any other version.
    pub fn has_controllers(&self) -> bool {
        match *self {
            KubernetesVersion::V1_37_2 | KubernetesVersion::V1_20_2 => true,
            KubernetesVersion::V1_34_4_PIE => false,
            _ => ["kube-controller-manager", "kube-scheduler"]
                .iter()
                .all(|name| self.bin_dir().join(name).is_file()),
        }
    }

    /// v1.20.2 comes from Debian's source package and runs Debian's etcd.
    fn is_debian_source_build(&self) -> bool {
        self.minor < 24
    }

    /// `--insecure-port` (apiserver) and `--port` (scheduler, controller-manager) exist up to
    /// v1.23; later releases refuse to start with them.
    pub(super) fn has_insecure_port_flags(&self) -> bool {
        self.minor < 24
    }

    /// Whether watch responses carry the `Audit-ID` header (measured: v1.20.2 sends it only on
    /// non-watch responses; v1.34.4 and v1.37.2 on every response, watches included).
    pub fn sends_audit_id_on_watches(&self) -> bool {
        self.minor > 20
    }

    /// Where this version's etcd is: the one kubernetes pins, built next to the apiserver; the
    /// v1.20.2 build uses Debian's.
    pub(super) fn etcd_binary(&self) -> Option<PathBuf> {
        if self.is_debian_source_build() {
            return None;
        }
        Some(self.bin_dir().join("etcd"))
    }
}

impl Default for KubernetesVersion {
    fn default() -> Self {
        KubernetesVersion::newest()
    }
}

/// `v1.37.2`, `v1.34.4-pie`
impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = if self.pie { "-pie" } else { "" };
        write!(f, "v{}{suffix}", self.release())
    }
}

/// `1.37.2`, `v1.34.4-pie`
impl std::str::FromStr for KubernetesVersion {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim();
        let bare = text.strip_prefix('v').unwrap_or(text);
        let (release, pie) = match bare.strip_suffix("-pie") {
            Some(release) => (release, true),
            None => (bare, false),
        };
        let parts: Vec<u32> = release
            .split('.')
            .map(|part| part.parse::<u32>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("not a Kubernetes version: {text:?}"))?;
        let [major, minor, patch] = parts[..] else {
            bail!("not a Kubernetes version (want 1.MINOR.PATCH[-pie]): {text:?}");
        };
        Ok(KubernetesVersion::new(major, minor, patch, pie))
    }
}

/// Runs `test` once per version [`KubernetesVersion::under_test`], each to its end even when an
/// earlier one failed, and fails naming every version that failed.
pub fn for_each_version(mut test: impl FnMut(KubernetesVersion) -> Result<()>) -> Result<()> {
    let versions = KubernetesVersion::under_test()?;
    let mut failures = Vec::new();
    for version in &versions {
        eprintln!("=== Kubernetes {version}");
        // A failed assertion (a panic) on one version must not hide the others' results.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(*version)));
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => format!("{error:#}"),
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
        };
        eprintln!("=== Kubernetes {version} FAILED: {error}");
        failures.push(format!("Kubernetes {version}: {error}"));
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} versions failed:\n{}",
            failures.len(),
            versions.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_print() {
        for (text, version) in [
            ("1.37.2", KubernetesVersion::V1_37_2),
            ("v1.34.4-pie", KubernetesVersion::V1_34_4_PIE),
            (" 1.20.2 ", KubernetesVersion::V1_20_2),
        ] {
            assert_eq!(text.parse::<KubernetesVersion>().unwrap(), version);
        }
        assert_eq!(KubernetesVersion::V1_34_4_PIE.to_string(), "v1.34.4-pie");
        assert!("1.37".parse::<KubernetesVersion>().is_err());
        assert!("1.37.x".parse::<KubernetesVersion>().is_err());
        assert!(
            KubernetesVersion::V1_34_4_PIE
                .bin_dir()
                .ends_with("kubernetes-1.34.4-pie/bin")
        );
        assert_eq!(KubernetesVersion::matrix()[0], KubernetesVersion::newest());
    }
}
