//! The live view's server (docs/live-view.md): the UI, the WebSocket stream and the request API
//! on one port, over plain TCP or TLS. Each WebSocket connection is one task reading its own
//! receiver of the bus; a connection that cannot keep up loses rows (and is told how many),
//! one that stops reading altogether is closed after the write timeout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{debug, info, warn};

use super::assets;
use super::auth::{PROTOCOL, Token};
use super::bus::{HistoryRequest, LiveBus, LiveRow};
use super::metrics::DropReason;
use super::protocol::{
    ClientMessage, DEFAULT_HISTORY_LIMIT, PROTOCOL_VERSION, ServerMessage, requests_message,
};
use crate::filter::Filter;

/// `--serve-ui` without an address.
pub const DEFAULT_UI_ADDRESS: &str = "127.0.0.1:9465";
const SERVER: &str = concat!("apiscope ", env!("CARGO_PKG_VERSION"));
/// Client messages are one small subscribe: anything bigger is refused by the WebSocket layer.
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 << 10;

#[derive(Clone, Debug)]
pub struct LiveServerConfig {
    /// `hello.mode`: "serve-ui" or "relay".
    pub mode: &'static str,
    /// A `requests` batch goes out at this many rows...
    pub batch_max_rows: usize,
    /// ...or this long after its first row.
    pub batch_interval: Duration,
    /// A connection that takes no data for this long is closed (its rows counted dropped).
    pub write_timeout: Duration,
    /// WebSocket connections at once; more are refused with 503.
    pub max_subscribers: usize,
}

impl Default for LiveServerConfig {
    fn default() -> Self {
        LiveServerConfig {
            mode: "serve-ui",
            batch_max_rows: 256,
            batch_interval: Duration::from_millis(100),
            write_timeout: Duration::from_secs(30),
            max_subscribers: 64,
        }
    }
}

/// Accepts a plain TCP stream, or wraps it (TLS) before HTTP is spoken.
pub trait Acceptor: Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &self,
        stream: tokio::net::TcpStream,
    ) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

/// No TLS.
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self, stream: tokio::net::TcpStream) -> std::io::Result<Self::Stream> {
        Ok(stream)
    }
}

struct State {
    bus: Arc<LiveBus>,
    token: Token,
    config: LiveServerConfig,
    subscribers: Arc<Semaphore>,
}

/// Binds `address` and serves until the task is dropped; returns the bound address.
pub async fn serve_live<A: Acceptor>(
    address: SocketAddr,
    bus: Arc<LiveBus>,
    token: Token,
    config: LiveServerConfig,
    acceptor: A,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the live view on {address}"))?;
    let bound = listener.local_addr()?;
    info!(address = %bound, "serving the live view");
    let state = Arc::new(State {
        bus,
        token,
        subscribers: Arc::new(Semaphore::new(config.max_subscribers)),
        config,
    });
    let acceptor = Arc::new(acceptor);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let state = state.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A TLS handshake that never finishes must not hold the task forever.
                let stream =
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            return debug!(%peer, error = %e, "live view handshake failed");
                        }
                        Err(_) => return debug!(%peer, "live view handshake timed out"),
                    };
                let service =
                    hyper::service::service_fn(move |request| route(request, state.clone()));
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await
                {
                    debug!(%peer, error = %e, "live view connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, value);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    no_store(respond(status, "text/plain; charset=utf-8", body))
}

fn unauthorized(state: &State) -> Response<Body> {
    state.bus.metrics().auth_failure();
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "a valid bearer token is required\n",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn route(
    mut request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
    }
    let response = match path.as_str() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/api/v1/stream" => upgrade(&mut request, &state),
        _ if path.starts_with("/api/") => {
            let authorization = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
            if !state.token.accepts_authorization(authorization) {
                unauthorized(&state)
            } else if let Some(id) = path.strip_prefix("/api/v1/requests/") {
                request_detail(&state, id)
            } else {
                text(StatusCode::NOT_FOUND, "no such API\n")
            }
        }
        _ => match assets::lookup(&path) {
            Some(asset) => {
                let mut response = respond(StatusCode::OK, asset.content_type, asset.bytes);
                let cache = if asset.immutable {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static(cache));
                response
            }
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    Ok(response)
}

/// `GET /api/v1/requests/{id}`.
fn request_detail(state: &State, id: &str) -> Response<Body> {
    let Some(row) = id.parse::<u64>().ok().and_then(|id| state.bus.get(id)) else {
        return text(
            StatusCode::NOT_FOUND,
            "no such request (or no longer held)\n",
        );
    };
    no_store(respond(
        StatusCode::OK,
        "application/json",
        detail_json(&row),
    ))
}

/// The detail document: the bodies only as the capture policy rendered them.
pub fn detail_json(row: &LiveRow) -> String {
    #[derive(serde::Serialize)]
    struct Detail<'a> {
        id: u64,
        request: &'a crate::k8s::ApiRequest,
        frames: Vec<Frame>,
        /// Frames past the per-request bound, counted only.
        #[serde(skip_serializing_if = "is_zero")]
        frames_cut: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_bytes: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        response_bytes: Option<String>,
    }
    let request = &row.request;
    serde_json::to_string(&Detail {
        id: row.id,
        request,
        frames: request
            .frames
            .as_ref()
            .map(|f| f.frames.iter().map(Frame::of).collect())
            .unwrap_or_default(),
        frames_cut: request.frames.as_ref().map_or(0, |f| f.cut),
        request_bytes: request
            .request_body
            .as_ref()
            .map(|b| STANDARD.encode(&b.text)),
        response_bytes: request
            .response_body
            .as_ref()
            .map(|b| STANDARD.encode(&b.text)),
    })
    .expect("plain data serializes")
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// A frame as docs/live-view.md writes it.
#[derive(serde::Serialize)]
struct Frame {
    direction: &'static str,
    #[serde(rename = "type")]
    frame_type: String,
    flags: Vec<&'static str>,
    stream_id: u32,
    length: u32,
    unix_nano: u64,
}

impl Frame {
    fn of(frame: &crate::k8s::api_request::StreamFrame) -> Frame {
        let frame_type = match frame.frame_type {
            0 => "DATA",
            1 => "HEADERS",
            2 => "PRIORITY",
            3 => "RST_STREAM",
            4 => "SETTINGS",
            5 => "PUSH_PROMISE",
            6 => "PING",
            7 => "GOAWAY",
            8 => "WINDOW_UPDATE",
            9 => "CONTINUATION",
            other => return Frame::with_type(frame, format!("UNKNOWN_{other}")),
        };
        Frame::with_type(frame, frame_type.to_string())
    }

    fn with_type(frame: &crate::k8s::api_request::StreamFrame, frame_type: String) -> Frame {
        // RFC 9113 section 6: which bit means what depends on the type.
        let mut flags = Vec::new();
        let has = |bit: u8| frame.flags & bit != 0;
        match frame.frame_type {
            0 => {
                if has(0x1) {
                    flags.push("END_STREAM");
                }
                if has(0x8) {
                    flags.push("PADDED");
                }
            }
            1 => {
                if has(0x1) {
                    flags.push("END_STREAM");
                }
                if has(0x4) {
                    flags.push("END_HEADERS");
                }
                if has(0x8) {
                    flags.push("PADDED");
                }
                if has(0x20) {
                    flags.push("PRIORITY");
                }
            }
            5 | 9 => {
                if has(0x4) {
                    flags.push("END_HEADERS");
                }
                if frame.frame_type == 5 && has(0x8) {
                    flags.push("PADDED");
                }
            }
            4 | 6 if has(0x1) => flags.push("ACK"),
            _ => {}
        }
        Frame {
            direction: if frame.request_direction {
                "request"
            } else {
                "response"
            },
            frame_type,
            flags,
            stream_id: frame.stream_id,
            length: frame.length,
            unix_nano: frame.unix_nano,
        }
    }
}

fn header_contains(
    request: &Request<Incoming>,
    name: hyper::header::HeaderName,
    word: &str,
) -> bool {
    request.headers().get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(word))
        })
    })
}

/// The WebSocket handshake (RFC 6455) with the token checked before anything is upgraded.
fn upgrade(request: &mut Request<Incoming>, state: &Arc<State>) -> Response<Body> {
    let offered = request
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .map(|v| v.as_bytes());
    if !state.token.accepts_subprotocols(offered) {
        return unauthorized(state);
    }
    let key = request.headers().get(SEC_WEBSOCKET_KEY).cloned();
    let is_websocket = header_contains(request, CONNECTION, "upgrade")
        && header_contains(request, UPGRADE, "websocket")
        && request
            .headers()
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| is_websocket) else {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is expected here\n",
        );
    };
    let Ok(permit) = state.subscribers.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live view connections\n",
        );
    };
    let speaks_v1 = header_contains(request, SEC_WEBSOCKET_PROTOCOL, PROTOCOL);
    let on_upgrade = hyper::upgrade::on(request);
    let state = state.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return debug!(error = %e, "live view upgrade failed"),
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE_BYTES));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        state.bus.metrics().subscriber_opened();
        if let Err(e) = serve_subscriber(socket, &state).await {
            debug!(error = %e, "live view subscriber ended");
        }
        state.bus.metrics().subscriber_closed();
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    // The token's subprotocol is never echoed: it would put the token in the response.
    if speaks_v1 {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(PROTOCOL));
    }
    response
}

/// What one connection is subscribed to now.
struct Live {
    filter: Filter,
    receiver: broadcast::Receiver<Arc<LiveRow>>,
}

async fn serve_subscriber<S>(socket: WebSocketStream<S>, state: &State) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &state.config;
    let metrics = state.bus.metrics();
    let (mut sink, mut incoming) = socket.split();
    let mut send = async |text: String, rows: usize| -> Result<()> {
        match tokio::time::timeout(config.write_timeout, sink.send(Message::text(text))).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                metrics.dropped(DropReason::WriteTimeout, rows as u64);
                anyhow::bail!("the client took no data for {:?}", config.write_timeout)
            }
        }
    };
    send(
        ServerMessage::Hello {
            protocol: PROTOCOL_VERSION,
            mode: config.mode,
            server: SERVER,
            max_history: state.bus.limits().max_history,
        }
        .to_json(),
        0,
    )
    .await?;
    let mut live: Option<Live> = None;
    let mut batch: Vec<Arc<LiveRow>> = Vec::with_capacity(config.batch_max_rows);
    let mut batch_deadline = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = incoming.next() => {
                let text = match message {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(Message::Text(text))) => text,
                    // Pings are answered by the WebSocket layer; binary frames mean nothing here.
                    Some(Ok(_)) => continue,
                };
                batch.clear();
                live = None;
                let (filter_text, asked) = match serde_json::from_str::<ClientMessage>(&text) {
                    Ok(ClientMessage::Subscribe { filter, history }) => {
                        let asked = history.map_or(
                            HistoryRequest { limit: DEFAULT_HISTORY_LIMIT, since_unix_nano: None },
                            |h| HistoryRequest { limit: h.limit, since_unix_nano: h.since_unix_nano },
                        );
                        (filter, asked)
                    }
                    Err(e) => {
                        let message = format!("not a protocol message: {e}");
                        send(ServerMessage::Error { message: &message, column: None }.to_json(), 0).await?;
                        continue;
                    }
                };
                let filter = match Filter::parse(&filter_text) {
                    Ok(filter) => filter,
                    Err(e) => {
                        metrics.filter_error();
                        send(ServerMessage::Error { message: &e.message, column: Some(e.column) }.to_json(), 0).await?;
                        continue;
                    }
                };
                let subscription = state.bus.subscribe(&filter, asked);
                let count = subscription.history.len();
                for chunk in subscription.history.chunks(config.batch_max_rows.max(1)) {
                    send(requests_message(chunk.iter().map(|row| &*row.json)), chunk.len()).await?;
                }
                send(ServerMessage::HistoryEnd { count }.to_json(), 0).await?;
                live = Some(Live { filter, receiver: subscription.live });
            }
            received = async { live.as_mut().expect("guarded").receiver.recv().await }, if live.is_some() => {
                match received {
                    Ok(row) => {
                        let subscribed = live.as_ref().expect("guarded");
                        if subscribed.filter.matches(&row.request) {
                            if batch.is_empty() {
                                batch_deadline = tokio::time::Instant::now() + config.batch_interval;
                            }
                            batch.push(row);
                            if batch.len() >= config.batch_max_rows {
                                send(requests_message(batch.iter().map(|row| &*row.json)), batch.len()).await?;
                                batch.clear();
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(count)) => {
                        // What was batched before the gap goes first, so the order holds.
                        if !batch.is_empty() {
                            send(requests_message(batch.iter().map(|row| &*row.json)), batch.len()).await?;
                            batch.clear();
                        }
                        metrics.dropped(DropReason::SlowClient, count);
                        let reason = DropReason::SlowClient.as_str();
                        send(ServerMessage::Dropped { count, reason }.to_json(), 0).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        warn!("the live bus closed");
                        return Ok(());
                    }
                }
            }
            _ = tokio::time::sleep_until(batch_deadline), if !batch.is_empty() => {
                send(requests_message(batch.iter().map(|row| &*row.json)), batch.len()).await?;
                batch.clear();
            }
        }
    }
}
