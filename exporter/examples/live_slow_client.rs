//! Measures the live view's memory under clients that do not keep up: the `--serve-ui` server
//! on a loopback port, one client that subscribes and then never reads, one that reads a batch a
//! second, while requests are published at a fixed rate. Prints the process's RSS (VmRSS) and
//! peak (VmHWM) before, during and after, and what the bus counted as dropped.
//!
//! `cargo run --release -p apiscope --example live_slow_client -- [rows_per_second] [seconds]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use apiscope::k8s::ApiRequest;
use apiscope::k8s::api_request::{CaptureLevel, CapturedBody};
use apiscope::sinks::live::metrics::DropReason;
use apiscope::sinks::live::{LiveBus, LiveLimits, LiveServerConfig, PlainTcp, Token, serve_live};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "bench-token-0123456789abcdef";

fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_default()
    };
    format!("VmRSS {} VmHWM {}", field("VmRSS:"), field("VmHWM:"))
}

fn request(n: u64) -> ApiRequest {
    let mut request = ApiRequest::from_request_line(
        "PUT",
        &format!("/api/v1/namespaces/team-{}/configmaps/cm-{n}", n % 50),
        "application/json",
    );
    request.code = Some(200);
    request.user_agent = "kube-controller-manager/v1.37.2 (linux/amd64)".into();
    request.component = "kube-controller-manager".into();
    request.capture_level = CaptureLevel::Request;
    // About 1 KiB of captured body: a small configmap update.
    request.request_body = Some(CapturedBody {
        content_type: "application/json".into(),
        text: format!(r#"{{"data":{{"key":"{}"}}}}"#, "v".repeat(1000)),
        truncated: false,
        redacted: false,
    });
    request
}

async fn client(
    address: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut ask = format!("ws://{address}/api/v1/stream")
        .into_client_request()
        .unwrap();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    ask.headers_mut().insert(
        "sec-websocket-protocol",
        format!("apiscope.v1, base64url.bearer.apiscope.{token}")
            .parse()
            .unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ask).await.unwrap();
    socket
        .send(Message::text(
            r#"{"type":"subscribe","filter":"","history":{"limit":10000}}"#,
        ))
        .await
        .unwrap();
    socket
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    println!("start: {}", memory());
    let bus = LiveBus::new(LiveLimits::default());
    let config = LiveServerConfig {
        // Long enough that the never-reading client stays connected for the whole run.
        write_timeout: Duration::from_secs(seconds + 60),
        ..LiveServerConfig::default()
    };
    let token = Token::new(SECRET.as_bytes().to_vec()).unwrap();
    let (address, _server) = serve_live(
        "127.0.0.1:0".parse().unwrap(),
        bus.clone(),
        token,
        config,
        PlainTcp,
    )
    .await
    .unwrap();
    let _never_reads = client(address).await;
    let mut slow = client(address).await;
    let slow_reader = tokio::spawn(async move {
        let mut messages = 0u64;
        while let Some(Ok(_)) = slow.next().await {
            messages += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        messages
    });
    println!("clients connected: {}", memory());
    let publisher = {
        let bus: Arc<LiveBus> = bus.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut n = 0u64;
            for second in 0..seconds {
                for _ in 0..rate {
                    n += 1;
                    bus.publish(request(n));
                }
                let next = started + Duration::from_secs(second + 1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                if (second + 1) % 10 == 0 {
                    println!("after {}s ({n} rows): {}", second + 1, memory());
                }
            }
            n
        })
    };
    let published = publisher.await.unwrap();
    let metrics = bus.metrics();
    println!(
        "end: {} published {published}, dropped slow_client {}, write_timeout {}",
        memory(),
        metrics.dropped_total(DropReason::SlowClient),
        metrics.dropped_total(DropReason::WriteTimeout),
    );
    slow_reader.abort();
}
