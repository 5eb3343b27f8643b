//! Every probe of the eBPF object, attached to a small Go HTTPS server the test builds
//! (`tests/go/probe-fixture`: golang.org/x/net/http2 as kube-apiserver serves, stripped as
//! release binaries are) with every Go release this machine can get: its own Go (plain and
//! PIE, and once more with Read probed at its RETs), go1.27.3 from the module proxy (plain and
//! PIE), Debian's go1.19 (no swiss-table maps: the field-by-field response hooks), a twin on
//! net/http's bundled HTTP/2 only (`tests/go/probe-fixture-bundled`: not hooked, TLS capture
//! only), and the machine's build with its build info claiming a Go release newer than the
//! offsets table (TLS capture only, no header hooks, logged and counted). A verifier rejection, a missing
//! symbol or a prologue the probes cannot use fails here, named, without a Kubernetes build.
//! Also checks, with exact counts from h2load, that requests on new connections decode from
//! the wire and that requests on connections opened before apiscope attached get their headers
//! from the header hooks; prints the uprobe hits per request by probe (measured, not asserted
//! as a cost).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apiscope::k8s::ApiRequest;
use apiscope_common::Probe;
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::process::{ManagedProcess, Spawner, free_loopback_ports};

const NEW_CONNECTION_REQUESTS: u64 = 120;
const PRE_ATTACH_SECONDS: u64 = 8;

/// The Go release the module proxy serves here beyond the machine's own (see the README).
const PROXY_GO: &str = "go1.27.3";
/// Debian's packaged Go 1.19.
const DEBIAN_GO_119: &str = "/usr/lib/go-1.19/bin/go";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Toolchain {
    /// `go` on PATH, `GOTOOLCHAIN=local`.
    Machine,
    /// `go` with `GOTOOLCHAIN=<release>`: the go command fetches it from the module proxy.
    Proxy(&'static str),
    /// Debian's go1.19.
    Debian119,
}

/// Which server the fixture is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// `tests/go/probe-fixture`: golang.org/x/net/http2, as kube-apiserver serves.
    XNet,
    /// The same `main.go` in `tests/go/probe-fixture-go1.19`: an x/net that builds with go1.19.
    XNetGo119,
    /// `tests/go/probe-fixture-bundled`: net/http's bundled HTTP/2 only (not hooked).
    Bundled,
}

/// One build of the fixture and how apiscope is run on it.
#[derive(Clone, Copy, Debug)]
struct Variant {
    label: &'static str,
    toolchain: Toolchain,
    server: Server,
    pie: bool,
    /// Rewrites the Go version in the build info to one newer than the offsets table.
    claim_newer_go: bool,
    read_probe: &'static str,
}

const MATRIX: &[Variant] = &[
    Variant {
        label: "machine Go",
        toolchain: Toolchain::Machine,
        server: Server::XNet,
        pie: false,
        claim_newer_go: false,
        read_probe: "record",
    },
    Variant {
        label: "machine Go, PIE",
        toolchain: Toolchain::Machine,
        server: Server::XNet,
        pie: true,
        claim_newer_go: false,
        read_probe: "record",
    },
    Variant {
        label: "machine Go, Read probed at its RETs",
        toolchain: Toolchain::Machine,
        server: Server::XNet,
        pie: false,
        claim_newer_go: false,
        read_probe: "return",
    },
    Variant {
        label: "go1.27.3",
        toolchain: Toolchain::Proxy(PROXY_GO),
        server: Server::XNet,
        pie: false,
        claim_newer_go: false,
        read_probe: "record",
    },
    Variant {
        label: "go1.27.3, PIE",
        toolchain: Toolchain::Proxy(PROXY_GO),
        server: Server::XNet,
        pie: true,
        claim_newer_go: false,
        read_probe: "record",
    },
    Variant {
        label: "go1.19",
        toolchain: Toolchain::Debian119,
        server: Server::XNetGo119,
        pie: false,
        claim_newer_go: false,
        read_probe: "record",
    },
    Variant {
        label: "machine Go, net/http's bundled HTTP/2 only",
        toolchain: Toolchain::Machine,
        server: Server::Bundled,
        pie: false,
        claim_newer_go: false,
        read_probe: "record",
    },
    Variant {
        label: "machine Go claiming a release newer than the offsets table",
        toolchain: Toolchain::Machine,
        server: Server::XNet,
        pie: false,
        claim_newer_go: true,
        read_probe: "record",
    },
];

#[test]
fn every_probe_attaches_and_decodes_new_and_pre_attach_connections() {
    if !require_root("probe test") {
        return;
    }
    let mut failures = Vec::new();
    for variant in MATRIX {
        if let Err(error) = run(variant) {
            eprintln!("probe fixture ({}): FAILED: {error:#}", variant.label);
            failures.push(format!("{}: {error:#}", variant.label));
        }
    }
    assert!(
        failures.is_empty(),
        "probe fixture failures:\n{}",
        failures.join("\n")
    );
}

fn run(variant: &Variant) -> Result<()> {
    let dir = test_dir(&format!(
        "probes-{}",
        variant
            .label
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ))?;
    let fixture = build_fixture(&dir, variant)?;
    let (cert, key) = self_signed_certificate(&dir)?;
    let port = free_loopback_ports(1)?[0];
    let address = format!("127.0.0.1:{port}");
    let spawner = Spawner::new()?;
    let server = ManagedProcess::start(
        &spawner,
        "probe-fixture",
        &fixture,
        vec![
            address.clone(),
            cert.display().to_string(),
            key.display().to_string(),
        ],
        dir.join("fixture.log"),
    )?;
    wait_listening(&address)?;
    let base = format!("https://{address}/api/v1/namespaces/default/configmaps");

    // Connections older than the capture: their HPACK tables hold entries apiscope never saw.
    let pre_attach = spawn_h2load(&[
        "-D",
        &PRE_ATTACH_SECONDS.to_string(),
        "-c",
        "2",
        "-m",
        "1",
        "--rps",
        "20",
        &format!("{base}/pre-attach"),
    ])?;
    std::thread::sleep(Duration::from_millis(1500));

    let mut capture = ApiscopeCapture::start(
        &dir,
        &[
            "--pid",
            &server.pid().to_string(),
            "--read-probe",
            variant.read_probe,
            "--probe-run-time",
        ],
    )?;
    capture.wait_attached(server.pid())?;
    let header_hooks = if variant.claim_newer_go || variant.server == Server::Bundled {
        let why = if variant.claim_newer_go {
            "newer than the offsets table"
        } else {
            "no x/net HTTP/2 server in this binary"
        };
        capture.wait_for_log(
            &["HTTP/2 header hooks unavailable", why],
            Duration::from_secs(10),
        )?;
        None
    } else {
        let line =
            capture.wait_for_log(&["HTTP/2 header hooks attached"], Duration::from_secs(10))?;
        Some(line.contains("header map"))
    };
    // Go 1.24+ has swiss-table maps: the response hook reads the header map in one hit.
    if let Some(response_from_header_map) = header_hooks {
        ensure!(
            response_from_header_map == (variant.toolchain != Toolchain::Debian119),
            "responses read {} on {}",
            if response_from_header_map {
                "from the header map"
            } else {
                "field by field"
            },
            variant.label
        );
    }
    let before = probe_hits(&capture.scrape_metrics()?);

    let list = h2load(&[
        "-n",
        &NEW_CONNECTION_REQUESTS.to_string(),
        "-c",
        "2",
        "-m",
        "4",
        &base,
    ])?;
    let get = h2load(&[
        "-n",
        &NEW_CONNECTION_REQUESTS.to_string(),
        "-c",
        "2",
        "-m",
        "4",
        &format!("{base}/one"),
    ])?;
    // The kernel's counters reach the metrics on apiscope's next rescan tick: wait (bounded)
    // until every request sent is counted at Write (each response is at least one Write).
    let sent = list + get;
    let counted = |hits: &BTreeMap<String, u64>| hits.get("tls_write_entry").copied().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let hits = probe_hits(&capture.scrape_metrics()?);
        if counted(&hits) >= counted(&before) + sent || Instant::now() > deadline {
            break hits;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    wait_exit(pre_attach, Duration::from_secs(PRE_ATTACH_SECONDS + 20))?;
    std::thread::sleep(Duration::from_millis(500));
    let metrics = capture.scrape_metrics()?;
    let run_seconds: BTreeMap<String, f64> =
        per_probe(&metrics, "apiscope_capture_probe_run_seconds_total");
    let result = capture.stop()?;
    let requests = result.requests()?;

    ensure!(list == NEW_CONNECTION_REQUESTS && get == NEW_CONNECTION_REQUESTS);
    let count = |name: &str, verb: &str| -> Vec<&ApiRequest> {
        requests
            .iter()
            .filter(|r| r.name == name && r.verb == verb && r.resource == "configmaps")
            .collect()
    };
    let lists = count("", "list");
    let gets = count("one", "get");
    ensure!(
        lists.len() as u64 == list && gets.len() as u64 == get,
        "decoded {} LISTs of {list} and {} GETs of {get} sent on new connections",
        lists.len(),
        gets.len()
    );
    for request in lists.iter().chain(&gets) {
        ensure!(request.code == Some(200), "{request:?}");
        ensure!(
            request.headers_source == "wire",
            "new connection not decoded from the wire: {request:?}"
        );
        ensure!(
            request
                .audit_id
                .as_deref()
                .is_some_and(|id| id.starts_with("probe-fixture-")),
            "{request:?}"
        );
    }
    let pre = count("pre-attach", "get");
    let newer_counted = metrics
        .lines()
        .any(|l| l == "apiscope_capture_newer_go_release_attaches_total 1");
    ensure!(
        newer_counted == variant.claim_newer_go,
        "apiscope_capture_newer_go_release_attaches_total: counted {newer_counted}"
    );
    if header_hooks.is_none() {
        ensure!(
            pre.iter().all(|r| r.headers_source != "hook"),
            "header-hook requests from a binary without header hooks"
        );
    } else {
        ensure!(
            pre.len() >= 10,
            "only {} requests decoded on the connections opened before attach",
            pre.len()
        );
        for request in &pre {
            ensure!(
                request.code == Some(200) && request.audit_id.is_some(),
                "pre-attach request without status or Audit-ID: {request:?}"
            );
        }
        ensure!(
            pre.iter().any(|r| r.headers_source == "hook"),
            "no pre-attach request got its headers from the header hooks"
        );
    }

    for counter in ["read_arguments_unreadable", "read_records_unreadable"] {
        let value = result.summary[counter].as_u64();
        ensure!(value == Some(0), "{counter}: {value:?}");
    }
    let mut table = String::new();
    for probe in Probe::ALL {
        let name = probe.program();
        let total = after.get(name).copied().unwrap_or(0);
        let hits = total - before.get(name).copied().unwrap_or(0);
        table.push_str(&format!(
            "  {name:<32} {:>8.2}\n",
            hits as f64 / sent as f64
        ));
        let expected = fires(probe, variant.read_probe, header_hooks);
        ensure!(
            (total > 0) == expected,
            "probe {name}: {total} hits, expected {}; all: {after:?}",
            if expected { "some" } else { "none" },
        );
        // --probe-run-time: the kernel accounts time to exactly the programs that ran.
        let seconds = run_seconds.get(name).copied().unwrap_or(-1.0);
        ensure!(
            (seconds > 0.0) == expected && seconds >= 0.0,
            "probe {name}: {seconds} s inside the program with {total} hits; all: {run_seconds:?}"
        );
    }
    eprintln!(
        "uprobe hits per request ({sent} new-connection requests, pre-attach traffic running, {}):\n{table}",
        variant.label
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Whether `probe` fires on the fixture: one of the two Read probes; without header hooks
/// (`None`) only the TLS ones; with them every other probe but the field-by-field response
/// hooks, or those instead of the one-hit one where the header map cannot be read.
fn fires(probe: Probe, read_probe: &str, header_hooks: Option<bool>) -> bool {
    match probe {
        Probe::TlsReadRecord => read_probe == "record",
        Probe::TlsReadReturn => read_probe == "return",
        Probe::TlsWriteEntry | Probe::TlsCloseEntry => true,
        Probe::Http2ProcessHeaders => header_hooks.is_some(),
        Probe::Http2ResponseHeaders => header_hooks == Some(true),
        Probe::Http2WriteResHeadersEntry
        | Probe::HpackWriteField
        | Probe::Http2WriteResHeadersReturn => header_hooks == Some(false),
    }
}

/// Builds the fixture release-like (stripped, trimmed paths) with the variant's Go.
fn build_fixture(dir: &Path, variant: &Variant) -> Result<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("go");
    let source = match variant.server {
        Server::XNet => fixtures.join("probe-fixture"),
        Server::Bundled => fixtures.join("probe-fixture-bundled"),
        // The same main.go in a module whose x/net still builds with go1.19.
        Server::XNetGo119 => {
            let module = dir.join("module-go1.19");
            std::fs::create_dir_all(&module)?;
            for (from, to) in [
                ("probe-fixture/main.go", "main.go"),
                ("probe-fixture-go1.19/go.mod", "go.mod"),
                ("probe-fixture-go1.19/go.sum", "go.sum"),
            ] {
                std::fs::copy(fixtures.join(from), module.join(to))
                    .with_context(|| format!("copying {from}"))?;
            }
            module
        }
    };
    let output = dir.join("probe-fixture");
    let cache = std::env::var_os("APISCOPE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/apiscope")
        });
    let (go, toolchain) = match variant.toolchain {
        Toolchain::Machine => ("go", "local"),
        Toolchain::Proxy(release) => ("go", release),
        Toolchain::Debian119 => (DEBIAN_GO_119, "local"),
    };
    let mut command = Command::new(go);
    command
        .current_dir(&source)
        .env("GOTOOLCHAIN", toolchain)
        .env("GOFLAGS", "-mod=readonly")
        .env("CGO_ENABLED", "0")
        .env("GOMODCACHE", cache.join("go/modcache"))
        .env("GOCACHE", cache.join("go/buildcache"))
        .args(["build", "-trimpath", "-ldflags=-s -w"]);
    if variant.pie {
        command.arg("-buildmode=pie");
    }
    let status = command
        .arg("-o")
        .arg(&output)
        .arg(".")
        .status()
        .with_context(|| format!("running {go} build (is Go installed?)"))?;
    ensure!(status.success(), "{go} build of the probe fixture failed");
    if variant.claim_newer_go {
        claim_newer_go_release(&output)?;
    }
    Ok(output)
}

/// Rewrites the Go version in the binary's build info (`go1.NN.P` -> `go1.99.P`, same length)
/// so that apiscope meets a release newer than its offsets table; the code is untouched.
fn claim_newer_go_release(binary: &Path) -> Result<()> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let mut data = std::fs::read(binary)?;
    let start = data
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .context("no build info in the fixture")?;
    // Go 1.18+ stores the version inline, right after the 32-byte header.
    let window = start..(start + 96).min(data.len());
    let at = data[window.clone()]
        .windows(4)
        .position(|w| w == b"go1.")
        .map(|at| window.start + at)
        .context("no Go version in the build info")?;
    let minor = &mut data[at + 4..at + 6];
    ensure!(
        minor.iter().all(u8::is_ascii_digit),
        "unexpected Go version in the build info"
    );
    minor.copy_from_slice(b"99");
    std::fs::write(binary, data)?;
    Ok(())
}

fn self_signed_certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()?;
    ensure!(status.success(), "openssl could not make a certificate");
    Ok((cert, key))
}

fn wait_listening(address: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the probe fixture did not listen on {address}")
}

fn spawn_h2load(args: &[&str]) -> Result<Child> {
    Command::new("h2load")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting h2load (Debian nghttp2-client)")
}

/// Runs h2load to the end (bounded) and returns the requests it saw succeed.
fn h2load(args: &[&str]) -> Result<u64> {
    let child = spawn_h2load(args)?;
    wait_exit(child, Duration::from_secs(60))
}

fn wait_exit(mut child: Child, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            bail!("h2load did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "requests: 120 total, 120 started, 120 done, 120 succeeded, 0 failed, ..."
    let succeeded = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" succeeded")))
        .and_then(|p| p.trim_end_matches(" succeeded").trim().parse().ok())
        .with_context(|| format!("no request counts in h2load's output:\n{text}"))?;
    Ok(succeeded)
}

/// `apiscope_capture_probe_hits_total{probe="..."}` from apiscope's metrics text.
fn probe_hits(metrics: &str) -> BTreeMap<String, u64> {
    per_probe(metrics, "apiscope_capture_probe_hits_total")
}

/// `<family>{probe="..."}` values from apiscope's metrics text.
fn per_probe<T: std::str::FromStr>(metrics: &str, family: &str) -> BTreeMap<String, T> {
    let prefix = format!("{family}{{probe=\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (probe, value) = rest.split_once("\"} ")?;
            Some((probe.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}
