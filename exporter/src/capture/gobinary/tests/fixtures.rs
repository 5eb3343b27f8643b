//! Go test programs built at test time with real toolchains, once per test process.
//!
//! Each toolchain builds `tlsfixture.go` twice with identical flags except `-s -w`: the stripped
//! binary is what apiscope meets in production, its unstripped twin (same code layout, plus
//! `.symtab` and DWARF) is the independent reference. Builds land in the target directory, keyed
//! by the toolchain's version and the fixture source, and are reused by later runs.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const FIXTURE_SOURCE: &str = include_str!("tlsfixture.go");
const FIXTURE_GO_MOD: &str = "module apiscope.test/tlsfixture\n\ngo 1.15\n";

/// Debian's packaged Go 1.19 (what kube-apiserver 1.20 is built with here).
pub const DEBIAN_GO_119: &str = "/usr/lib/go-1.19/bin/go";

#[derive(Debug)]
pub struct Fixture {
    pub go: PathBuf,
    /// Version token of `go version`, e.g. `go1.19.8`.
    pub go_version: String,
    pub stripped: PathBuf,
    pub unstripped: PathBuf,
    /// `-buildmode=pie -s -w`, only for the toolchain on PATH.
    pub pie_stripped: Option<PathBuf>,
}

/// `APISCOPE_REQUIRE_TOOLS=1` turns a missing toolchain into a failure instead of a skip.
pub fn tools_required() -> bool {
    std::env::var("APISCOPE_REQUIRE_TOOLS").is_ok_and(|value| value == "1")
}

/// Outcome of preparing a fixture: a build failure is always a test failure, a missing
/// toolchain only when tools are required.
enum Prepared {
    Built(Fixture),
    ToolchainMissing(String),
    BuildFailed(String),
}

fn prepared(state: &'static Prepared, test: &str) -> Option<&'static Fixture> {
    match state {
        Prepared::Built(fixture) => Some(fixture),
        Prepared::ToolchainMissing(why) if !tools_required() => {
            eprintln!("SKIP {test}: {why} (set APISCOPE_REQUIRE_TOOLS=1 to fail instead)");
            None
        }
        Prepared::ToolchainMissing(why) => panic!("{test}: {why}"),
        Prepared::BuildFailed(why) => panic!("{test}: building the Go fixture failed: {why}"),
    }
}

/// Built with `go` on PATH (the machine's newest Go).
pub fn latest(test: &str) -> Option<&'static Fixture> {
    static STATE: OnceLock<Prepared> = OnceLock::new();
    prepared(STATE.get_or_init(|| prepare(Path::new("go"), true)), test)
}

/// Built with Debian's Go 1.19.
pub fn go119(test: &str) -> Option<&'static Fixture> {
    static STATE: OnceLock<Prepared> = OnceLock::new();
    prepared(
        STATE.get_or_init(|| prepare(Path::new(DEBIAN_GO_119), false)),
        test,
    )
}

/// The newest Go release the module proxy serves here (the go command fetches it when
/// `GOTOOLCHAIN` names it; see the README).
pub const PROXY_GO: &str = "go1.27.3";

/// The `go` binary of a release the go command fetches from the module proxy, into the same
/// module cache as the end-to-end tests' Go builds (`$APISCOPE_CACHE/go/modcache`), once.
pub fn proxy_toolchain(release: &str) -> Result<PathBuf, String> {
    let cache = std::env::var_os("APISCOPE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/apiscope")
        });
    let output = Command::new("go")
        .env("GOTOOLCHAIN", release)
        .env("GOMODCACHE", cache.join("go/modcache"))
        .args(["env", "GOROOT"])
        .output()
        .map_err(|e| format!("cannot run go: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "GOTOOLCHAIN={release} go env GOROOT: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let root = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(Path::new(&root).join("bin/go"))
}

/// Built with go1.27.3 from the module proxy.
pub fn go127(test: &str) -> Option<&'static Fixture> {
    static STATE: OnceLock<Prepared> = OnceLock::new();
    prepared(
        STATE.get_or_init(|| match proxy_toolchain(PROXY_GO) {
            Ok(go) => prepare(&go, false),
            Err(why) => Prepared::ToolchainMissing(why),
        }),
        test,
    )
}

/// Builds with any toolchain (no caching across calls; used for the extra-versions check).
pub fn with_toolchain(go: &Path) -> Result<Fixture, String> {
    match prepare(go, false) {
        Prepared::Built(fixture) => Ok(fixture),
        Prepared::ToolchainMissing(why) | Prepared::BuildFailed(why) => Err(why),
    }
}

/// Runs `go` with an environment that pins the build: this toolchain, module mode, no cgo.
pub fn go_command(go: &Path) -> Command {
    let mut command = Command::new(go);
    command
        .env("GOTOOLCHAIN", "local")
        // Replaces any GOFLAGS from the user's go env file (e.g. -buildvcs, unknown to old Go).
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on")
        .env("CGO_ENABLED", "0")
        .env("GOOS", "linux")
        .env("GOARCH", "amd64");
    command
}

pub fn toolchain_version(go: &Path) -> Result<String, String> {
    let output = go_command(go)
        .arg("version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} version failed: {}",
            go.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // "go version go1.19.8 linux/amd64"
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(2)
        .map(str::to_owned)
        .ok_or_else(|| format!("unexpected `go version` output from {}", go.display()))
}

fn prepare(go: &Path, with_pie: bool) -> Prepared {
    let go_version = match toolchain_version(go) {
        Ok(version) => version,
        Err(why) => return Prepared::ToolchainMissing(why),
    };
    match build_all(go, &go_version, with_pie) {
        Ok(fixture) => Prepared::Built(fixture),
        Err(why) => Prepared::BuildFailed(why),
    }
}

/// `target/<profile>/gobinary-fixtures`, found from the test executable
/// (`target/<profile>/deps/apiscope-<hash>`); the system temp dir otherwise.
fn fixtures_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("gobinary-fixtures")))
        .unwrap_or_else(|| std::env::temp_dir().join("apiscope-gobinary-fixtures"))
}

fn build_all(go: &Path, go_version: &str, with_pie: bool) -> Result<Fixture, String> {
    let mut hasher = DefaultHasher::new();
    (FIXTURE_SOURCE, FIXTURE_GO_MOD).hash(&mut hasher);
    let dir = fixtures_root().join(format!("{go_version}-{:016x}", hasher.finish()));
    let source = dir.join("src");
    std::fs::create_dir_all(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    std::fs::write(source.join("main.go"), FIXTURE_SOURCE).map_err(|e| e.to_string())?;
    std::fs::write(source.join("go.mod"), FIXTURE_GO_MOD).map_err(|e| e.to_string())?;

    let build = |name: &str, flags: &[&str]| -> Result<PathBuf, String> {
        let output = dir.join(name);
        if output.exists() {
            return Ok(output);
        }
        // Build beside the final name and rename, so a concurrent or interrupted run never
        // leaves a half-written binary under the final name.
        let partial = dir.join(format!("{name}.partial-{}", std::process::id()));
        let mut command = go_command(go);
        if crate::capture::gobinary::GoVersion::parse(go_version)
            .is_some_and(|v| (v.major, v.minor) < (1, 14))
        {
            // `-mod=mod` arrived in Go 1.14; the fixture has no dependencies either way.
            command.env("GOFLAGS", "-mod=readonly");
        }
        let result = command
            .current_dir(&source)
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&partial)
            .arg(".")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
        if !result.status.success() {
            return Err(format!(
                "{} build {flags:?}: {}",
                go.display(),
                String::from_utf8_lossy(&result.stderr)
            ));
        }
        std::fs::rename(&partial, &output).map_err(|e| e.to_string())?;
        Ok(output)
    };
    let stripped = build("stripped", &["-ldflags=-s -w"])?;
    let unstripped = build("unstripped", &[])?;
    let pie_stripped = if with_pie {
        Some(build(
            "pie-stripped",
            &["-buildmode=pie", "-ldflags=-s -w"],
        )?)
    } else {
        None
    };
    Ok(Fixture {
        go: go.to_owned(),
        go_version: go_version.to_owned(),
        stripped,
        unstripped,
        pie_stripped,
    })
}

const HTTP2_FIXTURE_SOURCE: &str = include_str!("http2fixture.go");

/// An HTTP/2 server built against one golang.org/x/net version.
#[derive(Debug)]
pub struct Http2Fixture {
    pub go: PathBuf,
    pub go_version: String,
    pub xnet_version: String,
    pub stripped: PathBuf,
    pub unstripped: PathBuf,
}

/// Builds `http2fixture.go` with `go` against x/net `xnet_version` (fetched through the module
/// proxy on first use), stripped and unstripped; cached like the TLS fixtures. A missing
/// toolchain or an unreachable module proxy is a skip unless tools are required.
pub fn http2(go: &Path, xnet_version: &str, test: &str) -> Option<Http2Fixture> {
    let outcome =
        toolchain_version(go).and_then(|go_version| build_http2(go, &go_version, xnet_version));
    match outcome {
        Ok(fixture) => Some(fixture),
        Err(why) if !tools_required() => {
            eprintln!("SKIP {test} (x/net {xnet_version}): {why}");
            None
        }
        Err(why) => panic!("{test}: x/net {xnet_version} with {}: {why}", go.display()),
    }
}

fn build_http2(go: &Path, go_version: &str, xnet_version: &str) -> Result<Http2Fixture, String> {
    let go_mod = format!(
        "module apiscope.test/http2fixture\n\ngo 1.17\n\nrequire golang.org/x/net {xnet_version}\n"
    );
    let mut hasher = DefaultHasher::new();
    (HTTP2_FIXTURE_SOURCE, &go_mod).hash(&mut hasher);
    let dir = fixtures_root().join(format!(
        "http2-{go_version}-{xnet_version}-{:016x}",
        hasher.finish()
    ));
    let source = dir.join("src");
    std::fs::create_dir_all(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    std::fs::write(source.join("main.go"), HTTP2_FIXTURE_SOURCE).map_err(|e| e.to_string())?;
    if !source.join("go.mod").exists() {
        std::fs::write(source.join("go.mod"), &go_mod).map_err(|e| e.to_string())?;
    }
    let build = |name: &str, flags: &[&str]| -> Result<PathBuf, String> {
        let output = dir.join(name);
        if output.exists() {
            return Ok(output);
        }
        let partial = dir.join(format!("{name}.partial-{}", std::process::id()));
        // `-mod=mod` (set by go_command) resolves x/net's own dependencies into go.mod/go.sum.
        let result = go_command(go)
            .current_dir(&source)
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&partial)
            .arg(".")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
        if !result.status.success() {
            return Err(format!(
                "{} build {flags:?}: {}",
                go.display(),
                String::from_utf8_lossy(&result.stderr)
            ));
        }
        std::fs::rename(&partial, &output).map_err(|e| e.to_string())?;
        Ok(output)
    };
    let stripped = build("stripped", &["-ldflags=-s -w"])?;
    let unstripped = build("unstripped", &[])?;
    Ok(Http2Fixture {
        go: go.to_owned(),
        go_version: go_version.to_owned(),
        xnet_version: xnet_version.to_owned(),
        stripped,
        unstripped,
    })
}
