//! A real Prometheus 3.16 (built by `scripts/install-prometheus.sh`, run by `make setup`) on a
//! loopback port, scraping the test's targets and evaluating rule files every second, accepting
//! remote write, queried through its HTTP API.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cluster::cached_binary;
use crate::otelcol::http_request;

/// The Prometheus release the rules under `dashboards/` are written for and tested on.
pub const PROMETHEUS_VERSION: &str = "3.16.0";

/// The Prometheus binary: `$PROMETHEUS_BIN`, else the one `scripts/install-prometheus.sh`
/// recorded in `$APISCOPE_CACHE/prometheus.env`. `None` if neither names an existing file.
pub fn prometheus_binary() -> Option<PathBuf> {
    cached_binary("PROMETHEUS_BIN", "prometheus.env")
}

/// promtool of the same build (`$PROMTOOL_BIN`, else `prometheus.env`).
pub fn promtool_binary() -> Option<PathBuf> {
    cached_binary("PROMTOOL_BIN", "prometheus.env")
}

/// One rule as Prometheus loaded it (`/api/v1/rules`).
#[derive(Debug, Clone)]
pub struct LoadedRule {
    pub group: String,
    /// The record or alert name.
    pub name: String,
    pub query: String,
    /// `ok`, `err`, or `unknown` (not evaluated yet).
    pub health: String,
    pub last_error: String,
}

pub struct Prometheus {
    child: Child,
    address: SocketAddr,
    log_path: PathBuf,
}

/// One sample of an instant query: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

impl Prometheus {
    /// Starts Prometheus with a 1 s scrape and evaluation interval, the given `scrape_configs`
    /// entries (YAML list items, already indented by two spaces) and rule files, and its
    /// remote-write receiver enabled (`/api/v1/write`).
    pub fn start(
        workdir: &Path,
        scrape_configs: &str,
        rule_files: &[PathBuf],
    ) -> Result<Prometheus> {
        let binary = prometheus_binary()
            .context("prometheus is not installed (scripts/install-prometheus.sh)")?;
        fs::create_dir_all(workdir)?;
        let config = workdir.join("prometheus.yml");
        let rule_files: String = rule_files
            .iter()
            .map(|path| format!("  - {}\n", path.display()))
            .collect();
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
                 rule_files:\n{rule_files}scrape_configs:\n{scrape_configs}"
            ),
        )?;
        let address = free_loopback_address()?;
        let log_path = workdir.join("prometheus.log");
        let log = fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                workdir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let mut prometheus = Prometheus {
            child,
            address,
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_request(address, "GET", "/-/ready", None, b"") {
                return Ok(prometheus);
            }
            if let Some(status) = prometheus.child.try_wait()? {
                bail!("prometheus exited ({status}):\n{}", prometheus.log_tail());
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready in 30 s:\n{}", prometheus.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An instant query at `time` (Unix seconds; now if `None`).
    pub fn query(&self, expr: &str, time: Option<f64>) -> Result<Vec<Sample>> {
        let mut path = format!("/api/v1/query?query={}", percent_encode(expr));
        if let Some(time) = time {
            path.push_str(&format!("&time={time:.3}"));
        }
        let (status, body) = http_request(self.address, "GET", &path, None, b"")?;
        let body: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("query {expr}: {}", String::from_utf8_lossy(&body)))?;
        if status != 200 || body["status"] != "success" {
            bail!("query {expr} failed ({status}): {body}");
        }
        let mut samples = Vec::new();
        for result in body["data"]["result"].as_array().into_iter().flatten() {
            let labels = result["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let value = result["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("sample value in {result}"))?;
            samples.push((labels, value));
        }
        Ok(samples)
    }

    /// The address of the HTTP API (and of the remote-write receiver, `/api/v1/write`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The version the running server reports (`/api/v1/status/buildinfo`).
    pub fn version(&self) -> Result<String> {
        let body = self.get_json("/api/v1/status/buildinfo")?;
        body["data"]["version"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no version in {body}"))
    }

    /// Every rule of the loaded rule files, with its evaluation health.
    pub fn rules(&self) -> Result<Vec<LoadedRule>> {
        let body = self.get_json("/api/v1/rules")?;
        let mut rules = Vec::new();
        for group in body["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let text = |key: &str| rule[key].as_str().unwrap_or_default().to_owned();
                rules.push(LoadedRule {
                    group: group["name"].as_str().unwrap_or_default().to_owned(),
                    name: text("name"),
                    query: text("query"),
                    health: text("health"),
                    last_error: text("lastError"),
                });
            }
        }
        Ok(rules)
    }

    fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = http_request(self.address, "GET", path, None, b"")?;
        let body: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("GET {path}: {}", String::from_utf8_lossy(&body)))?;
        if status != 200 || body["status"] != "success" {
            bail!("GET {path} failed ({status}): {body}");
        }
        Ok(body)
    }

    /// Waits until every target of `job` has been scraped successfully.
    pub fn wait_for_targets(&self, job: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let up = self.query(&format!("up{{job=\"{job}\"}}"), None)?;
            if !up.is_empty() && up.iter().all(|(_, v)| *v == 1.0) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "job {job} not up within {timeout:?}: {up:?}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_loopback_address() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
