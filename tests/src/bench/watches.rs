//! Open watches held by a client: a few curl processes, each multiplexing its share of the watches
//! as HTTP/2 streams on one connection (as an informer-heavy client would), for a bounded time.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// Streams per curl process: below the apiserver's default of 1000 concurrent streams per
/// HTTP/2 connection (`--http2-max-streams-per-connection`), and Go's 250 on older builds.
pub const WATCHES_PER_CONNECTION: usize = 250;

/// Running curl processes; killed on drop.
pub struct OpenWatches {
    clients: Vec<Child>,
}

impl OpenWatches {
    /// Opens `count` watches on `url` (e.g. `https://127.0.0.1:P/api/v1/namespaces/N/configmaps`).
    /// The apiserver ends each after `lifetime`, so nothing outlives the bench even if it is
    /// killed.
    pub fn open(
        url: &str,
        bearer_token: &str,
        count: usize,
        lifetime: Duration,
        scratch: &Path,
    ) -> Result<OpenWatches> {
        let mut clients = Vec::new();
        let mut opened = 0;
        while opened < count {
            let batch = WATCHES_PER_CONNECTION.min(count - opened);
            let config = scratch.join(format!("watches-{}.curlrc", clients.len()));
            std::fs::write(
                &config,
                curl_config(url, bearer_token, opened, batch, lifetime),
            )?;
            let child = Command::new("curl")
                .arg("--config")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting curl")?;
            clients.push(child);
            opened += batch;
        }
        Ok(OpenWatches { clients })
    }

    /// Fails if a client has exited (its watches are gone).
    pub fn check_open(&mut self) -> Result<()> {
        for client in &mut self.clients {
            if let Some(status) = client.try_wait()? {
                anyhow::bail!("a watch client (curl) exited early: {status}");
            }
        }
        Ok(())
    }
}

impl Drop for OpenWatches {
    fn drop(&mut self) {
        for client in &mut self.clients {
            let _ = client.kill();
            let _ = client.wait();
        }
    }
}

/// A curl config with one `url` per watch; `--parallel` without `--parallel-immediate` waits for
/// the first connection and multiplexes the rest of the transfers over it.
fn curl_config(
    url: &str,
    bearer_token: &str,
    first: usize,
    count: usize,
    lifetime: Duration,
) -> String {
    let mut config = format!(
        "silent\ninsecure\nhttp2\nparallel\nparallel-max = {count}\nmax-time = {}\n\
         header = \"Authorization: Bearer {bearer_token}\"\n",
        lifetime.as_secs() + 5
    );
    for i in first..first + count {
        // A distinct query per watch keeps each one its own request in the apiserver's logs.
        let _ = writeln!(
            config,
            "url = \"{url}?watch=1&timeoutSeconds={}&resourceVersion=0&bench={i}\"\noutput = \"/dev/null\"",
            lifetime.as_secs()
        );
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_and_output_per_watch() {
        let config = curl_config("https://x/api", "t0k", 10, 3, Duration::from_secs(60));
        assert_eq!(config.matches("url = ").count(), 3);
        assert_eq!(config.matches("output = \"/dev/null\"").count(), 3);
        assert!(config.contains("bench=12\""));
        assert!(config.contains("timeoutSeconds=60&"));
        assert!(config.contains("parallel-max = 3\n"));
    }
}
