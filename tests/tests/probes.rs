//! Every probe of the eBPF object, attached to a small Go HTTPS server the test builds
//! (`tests/go/probe-fixture`: golang.org/x/net/http2 as kube-apiserver serves, stripped as
//! release binaries are, plain and PIE): a verifier rejection, a missing symbol or a prologue
//! the probes cannot use fails here, named, without a Kubernetes build. Also checks, with
//! exact counts from h2load, that requests on new connections decode from the wire and that
//! requests on connections opened before apiscope attached get their headers from the header
//! hooks; prints the uprobe hits per request by probe (measured, not asserted as a cost).

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

#[test]
fn every_probe_attaches_and_decodes_new_and_pre_attach_connections() {
    if !require_root("probe test") {
        return;
    }
    for pie in [false, true] {
        let variant = if pie { "pie" } else { "exe" };
        run(pie).unwrap_or_else(|e| panic!("probe fixture ({variant}): {e:#}"));
    }
}

fn run(pie: bool) -> Result<()> {
    let dir = test_dir(if pie { "probes-pie" } else { "probes" })?;
    let fixture = build_fixture(&dir, pie)?;
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

    let mut capture = ApiscopeCapture::start(&dir, &["--pid", &server.pid().to_string()])?;
    capture.wait_attached(server.pid())?;
    let hooks_line =
        capture.wait_for_log(&["HTTP/2 header hooks attached"], Duration::from_secs(10))?;
    // The fixture is built with this machine's Go (1.24+: swiss-table maps).
    let response_from_header_map = hooks_line.contains("header map");
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
    // until every request sent is counted at processHeaders.
    let sent = list + get;
    let counted =
        |hits: &BTreeMap<String, u64>| hits.get("http2_process_headers").copied().unwrap_or(0);
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

    let unreadable = result.summary["read_arguments_unreadable"].as_u64();
    ensure!(
        unreadable == Some(0),
        "Read arguments unreadable: {unreadable:?}"
    );
    let mut table = String::new();
    let total_requests = (list + get) as f64;
    for probe in Probe::ALL {
        let name = probe.program();
        let hits = after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
        table.push_str(&format!(
            "  {name:<32} {:>8.2}\n",
            hits as f64 / total_requests
        ));
        let expected = hooks_expected(probe, response_from_header_map);
        ensure!(
            (after.get(name).copied().unwrap_or(0) > 0) == expected,
            "probe {name}: {} hits, expected {} ({}); all: {after:?}",
            after.get(name).copied().unwrap_or(0),
            if expected { "some" } else { "none" },
            if pie { "PIE" } else { "non-PIE" }
        );
    }
    eprintln!(
        "uprobe hits per request ({} new-connection requests, pre-attach traffic running, {}):\n{table}",
        list + get,
        if pie { "PIE" } else { "non-PIE" }
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Whether `probe` fires on the fixture: every probe but the field-by-field response hooks,
/// or those instead of the one-hit one where the header map cannot be read.
fn hooks_expected(probe: Probe, response_from_header_map: bool) -> bool {
    match probe {
        Probe::Http2ResponseHeaders => response_from_header_map,
        Probe::Http2WriteResHeadersEntry
        | Probe::HpackWriteField
        | Probe::Http2WriteResHeadersReturn => !response_from_header_map,
        _ => true,
    }
}

/// Builds the fixture with the machine's Go, release-like (stripped, trimmed paths).
fn build_fixture(dir: &Path, pie: bool) -> Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/probe-fixture");
    let output = dir.join("probe-fixture");
    let cache = std::env::var_os("APISCOPE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/apiscope")
        });
    let mut command = Command::new("go");
    command
        .current_dir(&source)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .env("CGO_ENABLED", "0")
        .env("GOMODCACHE", cache.join("go/modcache"))
        .env("GOCACHE", cache.join("go/buildcache"))
        .args(["build", "-trimpath", "-ldflags=-s -w"]);
    if pie {
        command.arg("-buildmode=pie");
    }
    let status = command
        .arg("-o")
        .arg(&output)
        .arg(".")
        .status()
        .context("running go build (is Go installed?)")?;
    ensure!(status.success(), "go build of the probe fixture failed");
    Ok(output)
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
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("apiscope_capture_probe_hits_total{probe=\""))
        .filter_map(|rest| {
            let (probe, value) = rest.split_once("\"} ")?;
            Some((probe.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}
