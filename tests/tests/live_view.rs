//! The live view in a real browser (root): the test cluster, `apiscope capture --serve-ui` on a
//! loopback port with a token file, live kubectl traffic, and Debian's chromium driven by
//! `ui/e2e/live-view.spec.mjs` (npm's playwright-core, which never downloads a browser) against
//! the UI the binary embeds (`make build` runs `make ui` first).
//!
//! The script checks: rows appear; a filter narrows them and the URL keeps it across a reload;
//! a filter that does not parse shows the server's error and column; the detail pane lists the
//! HTTP/2 frames and shows a hex dump; a wrong token is refused. Secret test: a Secret and a
//! TokenRequest with random values, captured at RequestResponse; neither the values nor their
//! base64 forms may appear in the page's text, in any WebSocket frame or in any API response the
//! browser received. Screenshots go to `target/tmp/live-view-artifacts/` (or
//! `APISCOPE_UI_ARTIFACTS`), for the README.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apiscope_e2e::apiscope::{ApiscopeCapture, require_root, test_dir};
use apiscope_e2e::cluster::{ClusterOptions, KubernetesVersion, TestCluster};
use apiscope_e2e::workload::{setup_objects, workload_iteration};

const POLICY: &str = r#"
rules:
  # Bodies in the browser, as permissive as the policy gets without an allow rule: secrets are
  # redacted.
  - level: RequestResponse
"#;

/// `capture --serve-ui` answers the frames of a request's stream (docs/live-view.md): the detail
/// pane must list them.
const EXPECT_FRAMES: bool = true;
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
/// Bounds of the background kubectl traffic.
const TRAFFIC_ROUNDS: usize = 200;
const TRAFFIC_TIME: Duration = Duration::from_secs(420);

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui")
}

fn tools_or_skip() -> bool {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/chromium").is_file() {
        missing.push("chromium (scripts/install-packages.sh)");
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node");
    }
    if !ui_dir().join("node_modules/playwright-core").is_dir() {
        missing.push("ui/node_modules (make ui)");
    }
    if !ui_dir().join("dist/index.html").is_file() {
        missing.push("ui/dist, embedded by make build (make ui)");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
        "missing: {}",
        missing.join(", ")
    );
    eprintln!("skipped: needs {}", missing.join(" and "));
    false
}

#[test]
fn live_view_in_chromium_during_kubectl_traffic() -> Result<()> {
    if !require_root("the live view test") || !tools_or_skip() {
        return Ok(());
    }
    // One version: the UI does not depend on the apiserver's build.
    let kubernetes = KubernetesVersion::newest();
    let dir = test_dir("live-view")?;
    let cluster = TestCluster::start(ClusterOptions {
        kubernetes,
        ..ClusterOptions::default()
    })?;
    setup_objects(&cluster, &dir)?;

    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let token = random_token("ui-token");
    let token_file = dir.join("ui-token");
    std::fs::write(&token_file, &token)?;
    let pid = cluster.apiserver_pid().to_string();
    let mut capture = ApiscopeCapture::start(
        &dir,
        &[
            "--pid",
            &pid,
            "--capture-policy",
            policy.to_str().context("path")?,
            "--serve-ui",
            "127.0.0.1:0",
            "--ui-token-file",
            token_file.to_str().context("path")?,
        ],
    )?;
    capture.wait_attached(cluster.apiserver_pid())?;
    let line = capture.wait_for_log(&["live view: http://"], Duration::from_secs(20))?;
    let url = live_view_url(&line)?;
    eprintln!("live view at {url}");

    // Secrets, in the history the browser will load.
    let secret_value = random_token("secret-value");
    let string_data_value = random_token("string-data");
    let password = format!("--from-literal=password={secret_value}");
    let patch = format!("{{\"stringData\":{{\"other\":\"{string_data_value}\"}}}}");
    let in_fidelity = |args: &[&str]| -> Result<String> {
        cluster.kubectl_ok(&[args, &["--namespace", "fidelity"]].concat())
    };
    in_fidelity(&["create", "secret", "generic", "e2e-live-secret", &password])?;
    in_fidelity(&["get", "secret", "e2e-live-secret", "--output", "yaml"])?;
    in_fidelity(&[
        "patch",
        "secret",
        "e2e-live-secret",
        "--type",
        "merge",
        "--patch",
        &patch,
    ])?;
    in_fidelity(&["create", "serviceaccount", "e2e-live"])?;
    let service_account_token = in_fidelity(&["create", "token", "e2e-live", "--duration", "10m"])?
        .trim()
        .to_owned();
    ensure!(
        service_account_token.starts_with("eyJ"),
        "kubectl create token gave {service_account_token:?}"
    );
    let mut forbidden = Vec::new();
    for secret in [&secret_value, &string_data_value, &service_account_token] {
        forbidden.push(secret.clone());
        forbidden.push(base64(secret.as_bytes()));
    }

    let artifacts = std::env::var_os("APISCOPE_UI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-view-artifacts"));
    std::fs::create_dir_all(&artifacts)?;

    // Live traffic while the browser looks: the mixed workload, round after round, bounded.
    let stop = AtomicBool::new(false);
    let browser = std::thread::scope(|scope| -> Result<std::process::ExitStatus> {
        let traffic = scope.spawn(|| -> Result<usize> {
            let started = Instant::now();
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed)
                && rounds < TRAFFIC_ROUNDS
                && started.elapsed() < TRAFFIC_TIME
            {
                workload_iteration(&cluster, &dir, 1000 + rounds)?;
                rounds += 1;
            }
            Ok(rounds)
        });
        let status = run_browser_test(&url, &token, &forbidden, &artifacts);
        stop.store(true, Ordering::Relaxed);
        let rounds = traffic.join().expect("traffic thread")?;
        eprintln!("kubectl traffic: {rounds} workload rounds during the browser test");
        status
    })?;
    let metrics = capture.scrape_metrics()?;
    capture.stop()?;
    eprintln!("screenshots in {}", artifacts.display());
    let mut problems = Vec::new();
    if !browser.success() {
        problems.push(format!(
            "the browser test failed ({browser}); its output is above"
        ));
    }
    if metric_value(&metrics, "apiscope_live_auth_failures_total") < 1.0 {
        problems
            .push("the wrong token was not counted in apiscope_live_auth_failures_total".into());
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    cluster.stop()
}

/// `live view: http://127.0.0.1:PORT/#token=<...>` from apiscope's stderr (the token placeholder,
/// never the token: it came from the file).
fn live_view_url(line: &str) -> Result<String> {
    let start = line.find("http://").context("no URL")?;
    let rest = &line[start..];
    let end = rest.find("/#").unwrap_or(rest.len());
    Ok(rest[..end].to_string())
}

fn run_browser_test(
    url: &str,
    token: &str,
    forbidden: &[String],
    artifacts: &Path,
) -> Result<std::process::ExitStatus> {
    let mut child = Command::new("node")
        .arg(ui_dir().join("e2e/live-view.spec.mjs"))
        .current_dir(ui_dir())
        .env("APISCOPE_UI_URL", url)
        .env("APISCOPE_UI_TOKEN", token)
        .env("APISCOPE_UI_FORBIDDEN", serde_json::to_string(forbidden)?)
        // The secret's requests reached the browser: the forbidden check looked at them.
        .env("APISCOPE_UI_EXPECTED", r#"["e2e-live-secret","e2e-live"]"#)
        .env("APISCOPE_UI_ARTIFACTS", artifacts)
        .env("APISCOPE_UI_FILTER", r#"verb == "get""#)
        .env("APISCOPE_UI_FILTER_COLUMN", "verb")
        .env("APISCOPE_UI_FILTER_VALUE", "get")
        .env("APISCOPE_UI_BAD_FILTER", "verb ==")
        // Creates carry a request body at this policy's level: the hex dump has bytes to show.
        .env("APISCOPE_UI_DETAIL_FILTER", r#"verb == "create""#)
        .env(
            "APISCOPE_UI_EXPECT_FRAMES",
            if EXPECT_FRAMES { "1" } else { "0" },
        )
        .env("APISCOPE_UI_TIMEOUT_MS", "60000")
        .stdin(Stdio::null())
        .spawn()
        .context("starting node ui/e2e/live-view.spec.mjs")?;
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the browser test still ran after {BROWSER_TIMEOUT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of a counter's samples in a Prometheus text scrape.
fn metric_value(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

#[test]
fn base64_and_metric_helpers() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"secret-value-1"), "c2VjcmV0LXZhbHVlLTE=");
    let scrape = "# TYPE apiscope_live_auth_failures_total counter\napiscope_live_auth_failures_total{endpoint=\"stream\"} 2\napiscope_live_auth_failures_total{endpoint=\"api\"} 1\napiscope_live_auth_failures_total_x 9\n";
    assert_eq!(
        metric_value(scrape, "apiscope_live_auth_failures_total"),
        3.0
    );
    assert_eq!(
        live_view_url("live view: http://127.0.0.1:41234/#token=<the token in --ui-token-file>")
            .unwrap(),
        "http://127.0.0.1:41234"
    );
}
