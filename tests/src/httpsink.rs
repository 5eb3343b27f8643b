//! A small recording HTTP/1.1 server that stands in for an HTTP back end of the collector (Loki's
//! OTLP endpoint, a Prometheus remote-write receiver): it answers every request `200 OK` and keeps
//! it (method, path, headers, body with gzip undone) for the test to inspect. Keep-alive and
//! `Content-Length` bodies (what Go's HTTP client sends) are supported; chunked bodies are not.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cluster::process::poll_until;

const MAX_BODY: usize = 64 * 1024 * 1024;

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct SinkRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    /// The body, gunzipped when `Content-Encoding: gzip` (other encodings are left as sent).
    pub body: Vec<u8>,
}

pub struct HttpSink {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<SinkRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HttpSink {
    /// Listens on a free loopback port.
    pub fn start(name: &str) -> Result<HttpSink> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a sink")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let requests = Arc::clone(&requests);
                        // Connection threads end when the client closes or goes idle (timeout).
                        let _ = thread::Builder::new().name("sink-connection".into()).spawn(
                            move || {
                                let _ = serve(stream, &requests);
                            },
                        );
                    }
                })
                .context("starting the sink thread")?
        };
        Ok(HttpSink {
            addr,
            requests,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<SinkRequest> {
        self.requests.lock().expect("sink lock").clone()
    }

    /// Waits (bounded) for a request that `matches`, and returns it.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&SinkRequest) -> bool,
    ) -> Result<SinkRequest> {
        poll_until(what, timeout, Duration::from_millis(50), || {
            Ok(self.requests().into_iter().find(|request| matches(request)))
        })
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<SinkRequest>>) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length.min(MAX_BODY)];
        reader.read_exact(&mut body)?;
        if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice()).read_to_end(&mut plain)?;
            body = plain;
        }
        let close = headers
            .get("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        requests.lock().expect("sink lock").push(SinkRequest {
            method,
            path,
            headers,
            body,
        });
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        if close {
            return Ok(());
        }
    }
}
