//! The `--serve-ui` / `--ui-*` flags and starting the server from them. `capture` takes
//! [`LiveUiArgs`] (`--serve-ui` plus the server flags), `relay` its own `--listen` plus the same
//! [`LiveServerArgs`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::auth::{Token, runtime_dir};
use super::bus::{
    DEFAULT_MAX_HISTORY, DEFAULT_MAX_HISTORY_BYTES, DEFAULT_SUBSCRIBER_QUEUE, LiveBus, LiveLimits,
};
use super::server::{DEFAULT_UI_ADDRESS, LiveServerConfig, PlainTcp, serve_live};
use super::tls::Tls;
use crate::vocabulary::parse_duration;

#[derive(clap::Args, Clone, Debug)]
pub struct LiveUiArgs {
    /// Serve the live view (UI, WebSocket, request API) from this process, on this address
    /// (default 127.0.0.1:9465: this node only). Requires the bearer token (see --ui-token-file).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_UI_ADDRESS)]
    pub serve_ui: Option<SocketAddr>,
    #[command(flatten)]
    pub server: LiveServerArgs,
}

/// The live view server's own flags: token, TLS, bounds.
#[derive(clap::Args, Clone, Debug)]
pub struct LiveServerArgs {
    /// File holding the live view's bearer token. Without it a random token is made at start,
    /// written to a 0600 file under the runtime directory and printed once, in the UI's URL, on
    /// stderr.
    #[arg(long, value_name = "PATH")]
    pub ui_token_file: Option<PathBuf>,
    /// Serve the live view over TLS with this certificate chain (PEM); needs --ui-tls-key.
    #[arg(long, value_name = "PATH", requires = "ui_tls_key")]
    pub ui_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --ui-tls-cert.
    #[arg(long, value_name = "PATH", requires = "ui_tls_cert")]
    pub ui_tls_key: Option<PathBuf>,
    /// Requests the live history holds (newest kept).
    #[arg(long, default_value_t = DEFAULT_MAX_HISTORY)]
    pub ui_max_history: usize,
    /// Bytes the live history holds (each request counted as twice its JSON).
    #[arg(long, default_value_t = DEFAULT_MAX_HISTORY_BYTES)]
    pub ui_max_history_bytes: usize,
    /// Requests a live client may fall behind before it skips ahead (and gets a `dropped`).
    #[arg(long, default_value_t = DEFAULT_SUBSCRIBER_QUEUE)]
    pub ui_subscriber_queue: usize,
    /// A live client that takes no data for this long is disconnected.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ui_write_timeout: Duration,
}

impl LiveUiArgs {
    /// The bus, when the live view is on.
    pub fn bus(&self) -> Option<Arc<LiveBus>> {
        self.serve_ui.map(|_| self.server.bus())
    }

    /// Starts the server for `bus` (when `--serve-ui` is given); prints where to open it.
    pub async fn serve(
        &self,
        bus: &Arc<LiveBus>,
    ) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
        match self.serve_ui {
            Some(address) => Ok(Some(self.server.serve(address, "serve-ui", bus).await?)),
            None => Ok(None),
        }
    }
}

impl LiveServerArgs {
    pub fn bus(&self) -> Arc<LiveBus> {
        LiveBus::new(LiveLimits {
            max_history: self.ui_max_history.max(1),
            max_history_bytes: self.ui_max_history_bytes,
            subscriber_queue: self.ui_subscriber_queue.max(1),
        })
    }

    /// Serves `bus` on `address` (`mode` goes into `hello`); prints where to open it.
    pub async fn serve(
        &self,
        address: SocketAddr,
        mode: &'static str,
        bus: &Arc<LiveBus>,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let (token, generated) = match &self.ui_token_file {
            Some(path) => (Token::from_file(path)?, None),
            None => {
                let token = Token::generate()?;
                let path = token.write_private(&runtime_dir())?;
                (token, Some(path))
            }
        };
        let url_token = generated.as_ref().map(|_| token.as_text());
        let config = LiveServerConfig {
            mode,
            write_timeout: self.ui_write_timeout,
            ..LiveServerConfig::default()
        };
        let (bound, task) = match (&self.ui_tls_cert, &self.ui_tls_key) {
            (Some(cert), Some(key)) => {
                let tls = Tls::from_pem_files(cert, key)?;
                serve_live(address, bus.clone(), token, config, tls).await?
            }
            _ => serve_live(address, bus.clone(), token, config, PlainTcp).await?,
        };
        let scheme = if self.ui_tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let host = if bound.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            bound.ip().to_string()
        };
        let host = if bound.is_ipv6() && host != "127.0.0.1" {
            format!("[{host}]")
        } else {
            host
        };
        match (url_token, generated) {
            // Printed once, on stderr (not the log): the token is in it.
            (Some(token), Some(path)) => eprintln!(
                "live view: {scheme}://{host}:{}/#token={token}\n(token also in {})",
                bound.port(),
                path.display()
            ),
            _ => eprintln!(
                "live view: {scheme}://{host}:{}/#token=<the token in --ui-token-file>",
                bound.port()
            ),
        }
        Ok((bound, task))
    }
}
