//! h2load (Debian's nghttp2-client) as the load generator: one timed run, its summary, and the
//! latency percentiles from its per-request log (h2load itself prints only min/max/mean/sd).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::stats::quantile;

/// One timed h2load run against the apiserver over h2 with TLS.
#[derive(Debug, Clone)]
pub struct H2loadRun {
    pub url: String,
    pub bearer_token: String,
    pub clients: u32,
    pub streams_per_client: u32,
    pub duration: Duration,
    /// Requests per second per client (h2load `--rps`); `None` runs at saturation.
    pub rate_per_client: Option<f64>,
    /// A body to POST (h2load `-d`), sent with `content-type: application/json`.
    pub post_body: Option<PathBuf>,
    /// Extra request headers, e.g. `accept: application/vnd.kubernetes.protobuf`.
    pub headers: Vec<String>,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct H2loadResult {
    pub summary: H2loadSummary,
    pub latency: LatencyPercentiles,
}

/// The lines of h2load's closing summary that the bench reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct H2loadSummary {
    pub elapsed: Duration,
    pub requests_per_second: f64,
    pub total: u64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    pub status_2xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
}

/// Percentiles of the time until the end of each 2xx response, from h2load's `--log-file`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencyPercentiles {
    pub responses: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

impl H2loadRun {
    pub fn args(&self, log_file: &Path) -> Vec<String> {
        let mut args = vec![
            format!("--clients={}", self.clients),
            format!("--max-concurrent-streams={}", self.streams_per_client),
            // One h2load thread: the second core is the apiserver's (and apiscope's).
            "--threads=1".to_string(),
            format!("--duration={}", self.duration.as_secs_f64()),
            format!("--log-file={}", log_file.display()),
            format!("--header=authorization: Bearer {}", self.bearer_token),
        ];
        if let Some(rate) = self.rate_per_client {
            args.push(format!("--rps={rate:.3}"));
        }
        if let Some(body) = &self.post_body {
            args.push(format!("--data={}", body.display()));
            args.push("--header=content-type: application/json".to_string());
        }
        for header in &self.headers {
            args.push(format!("--header={header}"));
        }
        args.push(self.url.clone());
        args
    }

    /// Runs h2load (bounded: its own duration plus a grace period) and reads its results.
    pub fn run(&self, scratch: &Path) -> Result<H2loadResult> {
        let log_file = scratch.join("h2load-requests.tsv");
        let _ = std::fs::remove_file(&log_file);
        let limit = self.duration + Duration::from_secs(30);
        let output = Command::new("timeout")
            .arg("--kill-after=5")
            .arg(format!("{}", limit.as_secs()))
            .arg("h2load")
            .args(self.args(&log_file))
            .output()
            .context("running h2load (Debian package nghttp2-client)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Kept for a look at the last run when a figure seems off.
        let _ = std::fs::write(scratch.join("h2load-output.txt"), stdout.as_bytes());
        if !output.status.success() {
            bail!(
                "h2load failed ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let summary = parse_summary(&stdout)?;
        let log = std::fs::read_to_string(&log_file)
            .with_context(|| format!("reading {}", log_file.display()))?;
        Ok(H2loadResult {
            summary,
            latency: parse_request_log(&log),
        })
    }
}

/// Reads h2load's closing summary (`finished in`, `requests:`, `status codes:`).
pub fn parse_summary(text: &str) -> Result<H2loadSummary> {
    let mut summary = H2loadSummary::default();
    let mut seen = (false, false);
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("finished in ") {
            let mut parts = rest.split(", ");
            summary.elapsed = parse_h2load_duration(parts.next().unwrap_or_default())?;
            summary.requests_per_second = parts
                .next()
                .and_then(|p| p.strip_suffix(" req/s"))
                .context("req/s in `finished in` line")?
                .parse()?;
            seen.0 = true;
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let (count, what) = part.split_once(' ').context("requests: count and name")?;
                let count: u64 = count.parse()?;
                match what {
                    "total" => summary.total = count,
                    "done" => summary.done = count,
                    "succeeded" => summary.succeeded = count,
                    "failed" => summary.failed = count,
                    "errored" => summary.errored = count,
                    "timeout" => summary.timeout = count,
                    _ => {}
                }
            }
            seen.1 = true;
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for part in rest.split(", ") {
                let (count, class) = part.split_once(' ').context("status codes: count, class")?;
                let count: u64 = count.parse()?;
                match class {
                    "2xx" => summary.status_2xx = count,
                    "4xx" => summary.status_4xx = count,
                    "5xx" => summary.status_5xx = count,
                    _ => {}
                }
            }
        }
    }
    if !(seen.0 && seen.1) {
        bail!("no h2load summary in its output: {}", text.trim());
    }
    Ok(summary)
}

/// h2load prints durations as e.g. `3.00s`, `8.78ms`, `827us`.
fn parse_h2load_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("unknown h2load duration {text:?}")
    };
    Ok(Duration::from_secs_f64(number.parse::<f64>()? * scale))
}

/// h2load's `--log-file`: per request, tab-separated start time (µs since epoch), HTTP status
/// (-1 when the request failed) and µs until the end of the response.
pub fn parse_request_log(text: &str) -> LatencyPercentiles {
    let latencies: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let _start = columns.next()?;
            let status: i32 = columns.next()?.trim().parse().ok()?;
            let elapsed: f64 = columns.next()?.trim().parse().ok()?;
            (200..300).contains(&status).then_some(elapsed)
        })
        .collect();
    LatencyPercentiles {
        responses: latencies.len() as u64,
        p50_us: quantile(&latencies, 0.50),
        p99_us: quantile(&latencies, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_timed_run_with_errors() {
        let summary = parse_summary(include_str!("testdata/h2load-timed-errored.txt")).unwrap();
        assert_eq!(summary.elapsed, Duration::from_secs(3));
        assert_eq!(summary.total, 200);
        assert_eq!(summary.succeeded, 0);
        assert_eq!(summary.errored, 200);
        assert_eq!(summary.requests_per_second, 0.0);
    }

    #[test]
    fn summary_of_a_successful_run() {
        // POSTs at saturation against the test cluster, 4 s.
        let summary = parse_summary(include_str!("testdata/h2load-post.txt")).unwrap();
        assert_eq!(summary.elapsed, Duration::from_secs(4));
        assert_eq!(summary.requests_per_second, 479.0);
        assert_eq!(
            (summary.total, summary.succeeded, summary.failed),
            (1916, 1916, 0)
        );
        // Status codes also count responses that ended after the measured duration.
        assert_eq!(summary.status_2xx, 1934);
    }

    #[test]
    fn failed_requests_have_no_latency() {
        let latency = parse_request_log(include_str!("testdata/h2load-log-errored.tsv"));
        assert_eq!(latency.responses, 0);
        assert_eq!(latency.p99_us, None);
    }

    #[test]
    fn percentiles_of_successful_requests() {
        let log = "1\t200\t100\n2\t200\t300\n3\t-1\t5\n4\t201\t200\n";
        let latency = parse_request_log(log);
        assert_eq!(latency.responses, 3);
        assert_eq!(latency.p50_us, Some(200.0));
        assert_eq!(latency.p99_us, Some(300.0));
    }

    #[test]
    fn durations_in_each_unit() {
        assert_eq!(
            parse_h2load_duration("8.78ms").unwrap(),
            Duration::from_secs_f64(0.00878)
        );
        assert_eq!(
            parse_h2load_duration("827us").unwrap(),
            Duration::from_micros(827)
        );
        assert!(parse_h2load_duration("3h").is_err());
    }
}
