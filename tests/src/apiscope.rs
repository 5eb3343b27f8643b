//! A running `apiscope capture` for end-to-end tests: started with the test's arguments, its
//! JSON log lines collected in the background, its metrics endpoint scraped, stopped with SIGTERM
//! (bounded), and its outputs read back.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use apiscope::k8s::ApiRequest;

/// The release binary built by `make build` (with the eBPF object embedded), or `APISCOPE_BIN`.
pub fn apiscope_binary() -> PathBuf {
    std::env::var_os("APISCOPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/apiscope"))
}

/// True when running as root; otherwise the test is skipped, or fails under
/// `APISCOPE_REQUIRE_TOOLS` (set by `make test`) so that CI cannot skip it silently.
pub fn require_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
        "{what} needs root (eBPF uprobes)"
    );
    eprintln!("skipped: {what} needs root (eBPF uprobes)");
    false
}

/// A child's stderr lines, echoed with a prefix as they come (read on a thread) and kept.
pub struct ChildLog {
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl ChildLog {
    pub fn read(stderr: std::process::ChildStderr, prefix: String) -> ChildLog {
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{prefix}{line}");
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        ChildLog {
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (bounded) for a line containing all of `needles`, seen before or coming.
    pub fn wait_for(&mut self, needles: &[&str], timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        if let Some(line) = self
            .log
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return Ok(line.clone());
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if needles.iter().all(|n| line.contains(n)) {
                        return Ok(line);
                    }
                }
                Err(_) => break,
            }
        }
        bail!("no line with {needles:?} within {timeout:?}")
    }

    /// Every line so far.
    pub fn take(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        std::mem::take(&mut self.log)
    }
}

/// `GET /metrics` from a Prometheus endpoint at `address` (host:port).
pub fn scrape(address: &str) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: apiscope\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

pub struct ApiscopeCapture {
    child: Child,
    log: ChildLog,
    output: PathBuf,
    recording: PathBuf,
}

/// What a stopped capture left behind.
pub struct CaptureResult {
    /// The `--output` file's text (ApiRequest JSON lines unless `--format` said otherwise).
    pub output: String,
    pub recording: PathBuf,
    /// The final `capture finished` summary (capture counters).
    pub summary: serde_json::Value,
    /// Every log line apiscope wrote.
    pub log: Vec<String>,
}

impl CaptureResult {
    pub fn requests(&self) -> Result<Vec<ApiRequest>> {
        self.output
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("parsing {l}")))
            .collect()
    }
}

impl ApiscopeCapture {
    /// Starts `apiscope capture ARGS --output DIR/output.jsonl --record DIR/capture.pcapng` with
    /// a metrics endpoint on an ephemeral loopback port.
    pub fn start(dir: &Path, args: &[&str]) -> Result<ApiscopeCapture> {
        let output = dir.join("output.jsonl");
        let recording = dir.join("capture.pcapng");
        let mut child = Command::new(apiscope_binary())
            .args(["--log", "info,apiscope=debug", "--log-json", "capture"])
            .args(args)
            .args([
                "--rescan-interval",
                "200ms",
                "--metrics-address",
                "127.0.0.1:0",
            ])
            .arg("--output")
            .arg(&output)
            .arg("--record")
            .arg(&recording)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (run `make build`)",
                    apiscope_binary().display()
                )
            })?;
        let stderr = child.stderr.take().context("apiscope stderr")?;
        Ok(ApiscopeCapture {
            child,
            log: ChildLog::read(stderr, "apiscope: ".into()),
            output,
            recording,
        })
    }

    /// Waits until the probes are attached to `pid`.
    pub fn wait_attached(&mut self, pid: u32) -> Result<()> {
        self.wait_for_log(
            &["attached", &format!("\"pid\":{pid}")],
            Duration::from_secs(30),
        )
        .map(drop)
    }

    /// Waits (bounded) for a log line containing all of `needles`.
    pub fn wait_for_log(&mut self, needles: &[&str], timeout: Duration) -> Result<String> {
        self.log
            .wait_for(needles, timeout)
            .context("apiscope capture's log")
    }

    /// Where apiscope serves its metrics (it was started on an ephemeral port).
    pub fn metrics_address(&mut self) -> Result<String> {
        let line = self.wait_for_log(&["serving Prometheus metrics"], Duration::from_secs(10))?;
        let line: serde_json::Value = serde_json::from_str(&line)?;
        Ok(line["fields"]["address"]
            .as_str()
            .context("metrics address")?
            .to_string())
    }

    /// Scrapes apiscope's own Prometheus endpoint.
    pub fn scrape_metrics(&mut self) -> Result<String> {
        let address = self.metrics_address()?;
        // Seen once as a bare "Connection refused": say where, and whether apiscope still runs.
        scrape(&address).with_context(|| {
            let state = match self.child.try_wait() {
                Ok(Some(status)) => format!("apiscope exited: {status}"),
                Ok(None) => "apiscope is running".to_string(),
                Err(error) => format!("apiscope state unknown: {error}"),
            };
            format!("scraping apiscope's metrics on {address} ({state})")
        })
    }

    /// SIGTERM, bounded wait for the final summary and the exit, then the outputs.
    pub fn stop(mut self) -> Result<CaptureResult> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let summary_line = self.wait_for_log(&["capture finished"], Duration::from_secs(20))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("apiscope did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let line: serde_json::Value = serde_json::from_str(&summary_line)?;
        let summary: serde_json::Value = serde_json::from_str(
            line["fields"]["summary"]
                .as_str()
                .context("summary field")?,
        )?;
        Ok(CaptureResult {
            output: std::fs::read_to_string(&self.output)
                .with_context(|| format!("reading {}", self.output.display()))?,
            recording: self.recording.clone(),
            summary,
            log: self.log.take(),
        })
    }
}

impl Drop for ApiscopeCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh directory under the system temp dir for one test's files.
pub fn test_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("apiscope-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
