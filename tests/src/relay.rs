//! A running `apiscope relay` for end-to-end tests (started on ephemeral loopback ports, its log
//! collected, stopped with SIGTERM, bounded), and a live-view WebSocket client speaking protocol
//! v1 (docs/live-view.md) with the bearer token as a subprotocol, as the browser does.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

use crate::apiscope::{ChildLog, apiscope_binary, scrape};

pub struct ApiscopeRelay {
    child: Child,
    log: ChildLog,
    /// host:port of the live view.
    pub address: String,
    /// host:port of `/metrics`.
    pub metrics_address: String,
}

impl ApiscopeRelay {
    /// `apiscope relay --kafka-brokers BOOTSTRAP --ui-token-file TOKEN ARGS` on loopback; returns
    /// once it serves both ports.
    pub fn start(
        name: &str,
        bootstrap: &str,
        token_file: &Path,
        args: &[&str],
    ) -> Result<ApiscopeRelay> {
        ApiscopeRelay::start_binary(&apiscope_binary(), name, bootstrap, token_file, args)
    }

    /// [`ApiscopeRelay::start`] with another apiscope build.
    pub fn start_binary(
        binary: &Path,
        name: &str,
        bootstrap: &str,
        token_file: &Path,
        args: &[&str],
    ) -> Result<ApiscopeRelay> {
        let mut child = Command::new(binary)
            .args(["--log", "info,apiscope=debug", "--log-json", "relay"])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-address",
                "127.0.0.1:0",
            ])
            .args(["--kafka-brokers", bootstrap])
            .arg("--ui-token-file")
            .arg(token_file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} relay", binary.display()))?;
        let stderr = child.stderr.take().context("relay stderr")?;
        let mut relay = ApiscopeRelay {
            child,
            log: ChildLog::read(stderr, format!("relay {name}: ")),
            address: String::new(),
            metrics_address: String::new(),
        };
        let metrics =
            relay.wait_for_log(&["serving Prometheus metrics"], Duration::from_secs(20))?;
        let metrics: serde_json::Value = serde_json::from_str(&metrics)?;
        relay.metrics_address = metrics["fields"]["address"]
            .as_str()
            .context("metrics address")?
            .to_string();
        let live = relay.wait_for_log(&["serving the live view"], Duration::from_secs(20))?;
        let live: serde_json::Value = serde_json::from_str(&live)?;
        relay.address = live["fields"]["address"]
            .as_str()
            .context("live view address")?
            .to_string();
        Ok(relay)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for a log line containing all of `needles`.
    pub fn wait_for_log(&mut self, needles: &[&str], timeout: Duration) -> Result<String> {
        self.log
            .wait_for(needles, timeout)
            .context("the relay's log")
    }

    pub fn scrape_metrics(&self) -> Result<String> {
        scrape(&self.metrics_address)
            .with_context(|| format!("scraping the relay's metrics on {}", self.metrics_address))
    }

    /// SIGTERM and a bounded wait for the exit.
    pub fn stop(mut self) -> Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the relay exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("the relay did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ApiscopeRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebSocket connection to `/api/v1/stream`.
pub struct LiveClient {
    socket: WebSocket<TcpStream>,
}

impl LiveClient {
    pub fn connect(address: &str, token: &str) -> Result<LiveClient> {
        let stream =
            TcpStream::connect(address).with_context(|| format!("connecting {address}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut request = format!("ws://{address}/api/v1/stream").into_client_request()?;
        let protocols = format!(
            "apiscope.v1, base64url.bearer.apiscope.{}",
            URL_SAFE_NO_PAD.encode(token)
        );
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(&protocols)?);
        let (socket, _) = tungstenite::client(request, stream)
            .map_err(|e| anyhow::anyhow!("WebSocket handshake with {address}: {e}"))?;
        Ok(LiveClient { socket })
    }

    /// `subscribe` with a filter and a history request (a JSON object, e.g. `{"limit":500}`).
    pub fn subscribe(&mut self, filter: &str, history: serde_json::Value) -> Result<()> {
        let message =
            serde_json::json!({"type": "subscribe", "filter": filter, "history": history});
        self.socket.send(Message::text(message.to_string()))?;
        Ok(())
    }

    /// The next server message, or `None` when none came within `timeout`.
    pub fn next_message(&mut self, timeout: Duration) -> Result<Option<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => return Ok(Some(serde_json::from_str(text.as_str())?)),
                Ok(Message::Close(frame)) => bail!("the server closed the stream: {frame:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(e) => bail!("reading the stream: {e}"),
            }
        }
    }
}
