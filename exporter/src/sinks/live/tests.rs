//! The bus on its own, then the server with a real WebSocket client on a loopback port.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast::error::TryRecvError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::auth::{PROTOCOL, TOKEN_PROTOCOL_PREFIX, Token};
use super::bus::{HistoryRequest, LiveBus, LiveLimits, LiveRow, LiveSink};
use super::metrics::DropReason;
use super::server::{LiveServerConfig, PlainTcp, serve_live};
use crate::filter::Filter;
use crate::k8s::ApiRequest;
use crate::k8s::api_request::CaptureLevel;
use crate::sinks::Sink;
use crate::sinks::fixtures;

const SECRET: &str = "test-token-0123456789abcdef";

fn limits(max_history: usize, max_history_bytes: usize, subscriber_queue: usize) -> LiveLimits {
    LiveLimits {
        max_history,
        max_history_bytes,
        subscriber_queue,
    }
}

fn numbered(n: u64) -> ApiRequest {
    let mut request = fixtures::create_configmap();
    request.name = format!("cm-{n}");
    request.end_unix_nano = fixtures::START + n;
    request
}

fn watch(n: u64) -> ApiRequest {
    let mut request = fixtures::watch_pods();
    request.name = format!("watch-{n}");
    request.end_unix_nano = fixtures::START + n;
    request
}

fn ids(rows: &[Arc<LiveRow>]) -> Vec<u64> {
    rows.iter().map(|row| row.id).collect()
}

fn all() -> Filter {
    Filter::parse("").unwrap()
}

fn newest(limit: usize) -> HistoryRequest {
    HistoryRequest {
        limit,
        since_unix_nano: None,
    }
}

#[test]
fn history_then_live_in_order_with_no_gap() {
    let bus = LiveBus::new(LiveLimits::default());
    for n in 1..=5 {
        assert_eq!(bus.publish(numbered(n)), n);
    }
    let mut subscription = bus.subscribe(&all(), newest(3));
    assert_eq!(ids(&subscription.history), [3, 4, 5]);
    bus.publish(numbered(6));
    bus.publish(numbered(7));
    assert_eq!(subscription.live.try_recv().unwrap().id, 6);
    assert_eq!(subscription.live.try_recv().unwrap().id, 7);
    assert!(matches!(
        subscription.live.try_recv(),
        Err(TryRecvError::Empty)
    ));
    // The row is the protocol's Row, serialized once.
    let row: Value = serde_json::from_str(&bus.get(6).unwrap().json).unwrap();
    assert_eq!(row["id"], 6);
    assert_eq!(row["request"]["name"], "cm-6");
}

#[test]
fn history_from_a_time_and_through_a_filter() {
    let bus = LiveBus::new(LiveLimits::default());
    for n in 1..=6 {
        let request = if n % 2 == 0 { watch(n) } else { numbered(n) };
        bus.publish(request);
    }
    let watches = Filter::parse(r#"verb == "watch""#).unwrap();
    assert_eq!(ids(&bus.subscribe(&watches, newest(10)).history), [2, 4, 6]);
    assert_eq!(ids(&bus.subscribe(&watches, newest(2)).history), [4, 6]);
    let since = HistoryRequest {
        limit: 2,
        since_unix_nano: Some(fixtures::START + 3),
    };
    // From the first row ending at or after the time, oldest first.
    assert_eq!(ids(&bus.subscribe(&all(), since).history), [3, 4]);
    assert!(bus.subscribe(&all(), newest(0)).history.is_empty());
}

#[test]
fn the_history_is_bounded_in_count_and_bytes() {
    let bus = LiveBus::new(limits(4, usize::MAX, 16));
    for n in 1..=10 {
        bus.publish(numbered(n));
    }
    assert_eq!(
        ids(&bus.subscribe(&all(), newest(100)).history),
        [7, 8, 9, 10]
    );
    assert!(bus.get(6).is_none());
    assert!(bus.get(7).is_some());

    let one_row = LiveRow::new(1, numbered(1)).cost_bytes();
    let bus = LiveBus::new(limits(1000, 3 * one_row + one_row / 2, 16));
    for n in 1..=10 {
        bus.publish(numbered(n));
    }
    assert_eq!(ids(&bus.subscribe(&all(), newest(100)).history), [8, 9, 10]);
    // Asked for more than the bus keeps: capped by max_history.
    let bus = LiveBus::new(limits(2, usize::MAX, 16));
    for n in 1..=3 {
        bus.publish(numbered(n));
    }
    assert_eq!(bus.subscribe(&all(), newest(1_000_000)).history.len(), 2);
}

#[test]
fn a_row_larger_than_the_byte_bound_goes_out_live_but_is_not_kept() {
    let bus = LiveBus::new(limits(1000, 10, 16));
    let mut subscription = bus.subscribe(&all(), newest(10));
    bus.publish(numbered(1));
    assert_eq!(subscription.live.try_recv().unwrap().id, 1);
    assert!(bus.subscribe(&all(), newest(10)).history.is_empty());
}

#[test]
fn a_lagging_subscriber_is_told_how_many_it_missed() {
    let bus = LiveBus::new(limits(1000, usize::MAX, 8));
    let mut subscription = bus.subscribe(&all(), newest(0));
    for n in 1..=20 {
        bus.publish(numbered(n));
    }
    // The ring holds the newest 8: the first 12 are gone for this subscriber, never buffered.
    match subscription.live.try_recv() {
        Err(TryRecvError::Lagged(missed)) => assert_eq!(missed, 12),
        other => panic!("expected a lag, got {other:?}"),
    }
    assert_eq!(subscription.live.try_recv().unwrap().id, 13);
}

#[test]
fn the_sink_publishes_what_the_policy_lets_through() {
    let bus = LiveBus::new(LiveLimits::default());
    let mut sink = LiveSink::new(bus.clone());
    sink.send(&numbered(1)).unwrap();
    let mut quiet = numbered(2);
    quiet.capture_level = CaptureLevel::None;
    sink.send(&quiet).unwrap();
    let history = bus.subscribe(&all(), newest(10)).history;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].request.name, "cm-1");
}

// --- the server, with a real WebSocket client ---

struct Server {
    address: std::net::SocketAddr,
    bus: Arc<LiveBus>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(limits: LiveLimits, config: LiveServerConfig) -> Server {
    let bus = LiveBus::new(limits);
    let token = Token::new(SECRET.as_bytes().to_vec()).unwrap();
    let (address, task) = serve_live(
        "127.0.0.1:0".parse().unwrap(),
        bus.clone(),
        token,
        config,
        PlainTcp,
    )
    .await
    .unwrap();
    Server { address, bus, task }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    server: &Server,
    token: Option<&str>,
) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/api/v1/stream", server.address)
        .into_client_request()
        .unwrap();
    let mut protocols = PROTOCOL.to_string();
    if let Some(token) = token {
        protocols += &format!(", {TOKEN_PROTOCOL_PREFIX}{}", URL_SAFE_NO_PAD.encode(token));
    }
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (client, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("connect in time")?;
    assert_eq!(response.headers()["sec-websocket-protocol"], PROTOCOL);
    Ok(client)
}

async fn next_message(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("a message in time")
            .expect("the stream is open")
            .expect("a good frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn subscribe(client: &mut Client, filter: &str, limit: usize) {
    let message = serde_json::json!({
        "type": "subscribe", "filter": filter, "history": {"limit": limit, "since_unix_nano": null}
    });
    client
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

fn row_names(message: &Value) -> Vec<String> {
    assert_eq!(message["type"], "requests", "{message}");
    message["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["request"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// One HTTP/1.1 request on a fresh connection: (status, head, body).
async fn http_get(
    server: &Server,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        request += &format!("Authorization: {value}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_is_refused_and_counted() {
    let server = start(LiveLimits::default(), LiveServerConfig::default()).await;
    for token in [None, Some("wrong-token-0123456789abcdef")] {
        match connect(&server, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401)
            }
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    let (status, _, _) = http_get(&server, "/api/v1/requests/1", None).await;
    assert_eq!(status, 401);
    let (status, _, _) = http_get(&server, "/api/v1/requests/1", Some("Bearer nope")).await;
    assert_eq!(status, 401);
    assert_eq!(server.bus.metrics().auth_failures(), 4);
    assert!(connect(&server, Some(SECRET)).await.is_ok());
    assert_eq!(server.bus.metrics().auth_failures(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_history_end_then_live_through_the_filter() {
    let server = start(LiveLimits::default(), LiveServerConfig::default()).await;
    for n in 1..=3 {
        server.bus.publish(numbered(n));
    }
    server.bus.publish(watch(4));
    let mut client = connect(&server, Some(SECRET)).await.unwrap();
    let hello = next_message(&mut client).await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["mode"], "serve-ui");
    assert_eq!(hello["max_history"], 10_000);

    subscribe(&mut client, "", 2).await;
    let history = next_message(&mut client).await;
    assert_eq!(row_names(&history).len(), 2);
    assert_eq!(history["items"][0]["request"]["name"], "cm-3");
    assert_eq!(history["items"][1]["id"], 4);
    let end = next_message(&mut client).await;
    assert_eq!(end, serde_json::json!({"type": "history_end", "count": 2}));
    server.bus.publish(numbered(5));
    server.bus.publish(numbered(6));
    // Batched: both rows within the 100 ms window come in one message (or, at worst, two).
    let mut names = row_names(&next_message(&mut client).await);
    if names.len() < 2 {
        names.extend(row_names(&next_message(&mut client).await));
    }
    assert_eq!(names, ["cm-5", "cm-6"]);

    // A new subscribe replaces the old one; only watches pass now.
    subscribe(&mut client, r#"verb == "watch""#, 10).await;
    let history = next_message(&mut client).await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
    assert_eq!(history["items"][0]["request"]["verb"], "watch");
    assert_eq!(next_message(&mut client).await["type"], "history_end");
    server.bus.publish(numbered(7));
    server.bus.publish(watch(8));
    let live = next_message(&mut client).await;
    assert_eq!(live["items"].as_array().unwrap().len(), 1);
    assert_eq!(live["items"][0]["id"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_does_not_parse_is_refused_with_its_column() {
    let server = start(LiveLimits::default(), LiveServerConfig::default()).await;
    let mut client = connect(&server, Some(SECRET)).await.unwrap();
    assert_eq!(next_message(&mut client).await["type"], "hello");
    subscribe(&mut client, "verb == ", 10).await;
    let error = next_message(&mut client).await;
    assert_eq!(error["type"], "error", "{error}");
    assert!(error["column"].as_u64().unwrap() >= 1, "{error}");
    assert!(!error["message"].as_str().unwrap().is_empty());
    // Not a protocol message at all: an error without a column, and the socket stays open.
    client
        .send(Message::text("{\"type\":\"nope\"}"))
        .await
        .unwrap();
    let error = next_message(&mut client).await;
    assert_eq!(error["type"], "error");
    assert!(error.get("column").is_none());
    subscribe(&mut client, "", 10).await;
    assert_eq!(next_message(&mut client).await["type"], "history_end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_a_dropped_notice_and_the_stream_goes_on() {
    let server = start(limits(100, usize::MAX, 16), LiveServerConfig::default()).await;
    let mut client = connect(&server, Some(SECRET)).await.unwrap();
    assert_eq!(next_message(&mut client).await["type"], "hello");
    subscribe(&mut client, "", 0).await;
    assert_eq!(next_message(&mut client).await["type"], "history_end");
    // The client reads nothing while far more than the socket buffers hold is published.
    let published = 40_000u64;
    for n in 1..=published {
        server.bus.publish(numbered(n));
    }
    let mut seen = 0u64;
    let mut dropped = 0u64;
    let mut last_id = 0u64;
    while seen + dropped < published {
        let message = next_message(&mut client).await;
        match message["type"].as_str().unwrap() {
            "requests" => {
                for row in message["items"].as_array().unwrap() {
                    let id = row["id"].as_u64().unwrap();
                    assert!(id > last_id, "rows stay in order across the gap");
                    last_id = id;
                    seen += 1;
                }
            }
            "dropped" => {
                assert_eq!(message["reason"], "slow_client");
                dropped += message["count"].as_u64().unwrap();
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(dropped > 0, "the client was overtaken");
    assert_eq!(
        seen + dropped,
        published,
        "every row is either sent or counted"
    );
    assert_eq!(last_id, published, "the newest row arrives after the gap");
    assert_eq!(
        server.bus.metrics().dropped_total(DropReason::SlowClient),
        dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_after_the_write_timeout() {
    let config = LiveServerConfig {
        write_timeout: Duration::from_millis(500),
        ..LiveServerConfig::default()
    };
    let server = start(limits(100, usize::MAX, 16), config).await;
    let mut client = connect(&server, Some(SECRET)).await.unwrap();
    assert_eq!(next_message(&mut client).await["type"], "hello");
    subscribe(&mut client, "", 0).await;
    assert_eq!(next_message(&mut client).await["type"], "history_end");
    for n in 1..=40_000 {
        server.bus.publish(numbered(n));
    }
    let metrics = server.bus.metrics();
    for _ in 0..100 {
        if metrics.dropped_total(DropReason::WriteTimeout) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.dropped_total(DropReason::WriteTimeout) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_in_full_and_the_ui() {
    let server = start(LiveLimits::default(), LiveServerConfig::default()).await;
    let mut request = numbered(1);
    request.capture_level = CaptureLevel::Request;
    request.request_body = Some(crate::k8s::api_request::CapturedBody {
        content_type: "application/json".into(),
        text: r#"{"data":{"password":"[REDACTED]"}}"#.into(),
        truncated: false,
        redacted: true,
    });
    let frame =
        |request_direction, frame_type, flags, length| crate::k8s::api_request::StreamFrame {
            request_direction,
            frame_type,
            flags,
            stream_id: 7,
            length,
            unix_nano: fixtures::START,
        };
    request.frames = Some(crate::k8s::api_request::StreamFrames {
        frames: vec![
            frame(true, 1, 0x4, 120),
            frame(true, 0, 0x1, 180),
            frame(false, 1, 0x5, 90),
        ],
        cut: 3,
    });
    let id = server.bus.publish(request);
    let bearer = format!("Bearer {SECRET}");
    let (status, head, body) =
        http_get(&server, &format!("/api/v1/requests/{id}"), Some(&bearer)).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["id"], id);
    assert_eq!(detail["request"]["name"], "cm-1");
    assert_eq!(
        detail["frames"][0],
        serde_json::json!({"direction": "request", "type": "HEADERS", "flags": ["END_HEADERS"],
            "stream_id": 7, "length": 120, "unix_nano": fixtures::START})
    );
    assert_eq!(
        detail["frames"][1]["flags"],
        serde_json::json!(["END_STREAM"])
    );
    assert_eq!(detail["frames"][2]["direction"], "response");
    assert_eq!(
        detail["frames"][2]["flags"],
        serde_json::json!(["END_STREAM", "END_HEADERS"])
    );
    assert_eq!(detail["frames_cut"], 3);
    // The frames are the live view's alone: the request's own JSON does not carry them.
    assert!(detail["request"].get("frames").is_none());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(detail["request_bytes"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, br#"{"data":{"password":"[REDACTED]"}}"#);
    assert!(detail.get("response_bytes").is_none());
    let (status, _, _) = http_get(&server, "/api/v1/requests/999", Some(&bearer)).await;
    assert_eq!(status, 404);

    let (status, head, body) = http_get(&server, "/", None).await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html"), "{head}");
    assert!(body.contains("<html"));
    let (status, _, _) = http_get(&server, "/../Cargo.toml", None).await;
    assert_eq!(status, 404);
    let (status, _, body) = http_get(&server, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_the_token() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let tls = super::tls::Tls::from_pem_files(&cert_path, &key_path).unwrap();
    let bus = LiveBus::new(LiveLimits::default());
    bus.publish(numbered(1));
    let token = Token::new(SECRET.as_bytes().to_vec()).unwrap();
    let (address, task) = serve_live(
        "127.0.0.1:0".parse().unwrap(),
        bus.clone(),
        token,
        LiveServerConfig::default(),
        tls,
    )
    .await
    .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}/api/v1/stream", address.port())
        .into_client_request()
        .unwrap();
    let protocols = format!(
        "{PROTOCOL}, {TOKEN_PROTOCOL_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(SECRET)
    );
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let (mut client, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .unwrap()
    .unwrap();
    let hello = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
    assert_eq!(hello["type"], "hello");
    // Plain HTTP on the TLS port gets nothing served.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut response)).await;
    assert!(!String::from_utf8_lossy(&response).contains("ok"));
    task.abort();
}
