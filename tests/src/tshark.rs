//! tshark as an independent HTTP/2 oracle: dissects a pcapng recording and lists every HTTP/2
//! frame it finds, so that tests can compare apiscope's view of the traffic with Wireshark's.
//!
//! Runs `tshark -T json -x --no-duplicate-keys` once and walks the dissection tree: with the JSON
//! tree (unlike `-e` field lists) each HTTP/2 frame keeps its own fields even when one TCP packet
//! carries several frames. Fields relied on: `frame.number`, `tcp.stream`, `tcp.srcport`,
//! `tcp.dstport`, `ip.src` / `ip.dst` (or `ipv6.*`); per frame, the `http2.stream` subtree with
//! `http2.type`, `http2.flags`, `http2.length`, `http2.streamid`, and `http2.header` /
//! `http2.header.name` / `http2.header.value`; and `http2.stream_raw` (from `-x`: the frame's
//! bytes as tshark framed them) for payloads.
//!
//! Payloads come from the raw frame bytes rather than `http2.data.data`, because on the frame
//! that ends a stream tshark replaces `http2.data.data` with the whole reassembled (and maybe
//! decompressed) body.

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

const HTTP2_DATA: u8 = 0x0;
const FLAG_PADDED: u8 = 0x8;

/// One HTTP/2 frame as tshark dissected it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsharkHttp2Frame {
    /// The packet in which tshark dissected the frame: the last one it needed for a frame that
    /// spans TCP segments.
    pub frame_number: u64,
    /// tshark's TCP conversation index (`tcp.stream`).
    pub tcp_stream: u64,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dst_ip: IpAddr,
    pub dst_port: u16,
    pub stream_id: u32,
    pub frame_type: u8,
    pub flags: u8,
    /// Payload length from the frame header (padding included).
    pub length: u32,
    /// Decoded header fields (HEADERS, CONTINUATION, PUSH_PROMISE), in order; empty when tshark
    /// could not decode the block (e.g. HPACK state lost to a gap).
    pub headers: Vec<(String, String)>,
    /// The frame payload as tshark framed it (padding included), if it showed the raw bytes.
    pub payload: Option<Vec<u8>>,
    /// DATA frames: the payload without the pad length and padding; `None` for other types.
    pub data: Option<Vec<u8>>,
}

impl TsharkHttp2Frame {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a runnable tshark is on the PATH.
pub fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Dissects `pcapng` with tshark, decoding TCP `decode_ports` as HTTP/2 (plus tshark's HTTP/2
/// heuristic elsewhere), and returns every HTTP/2 frame in capture order.
pub fn dissect_http2(pcapng: &Path, decode_ports: &[u16]) -> Result<Vec<TsharkHttp2Frame>> {
    let mut command = Command::new("tshark");
    command
        .arg("-r")
        .arg(pcapng)
        .args([
            "-n",
            "-T",
            "json",
            "-x",
            "--no-duplicate-keys",
            "-Y",
            "http2",
        ])
        .args(["--enable-heuristic", "http2_tcp"])
        // Body content dissectors add nothing here and only bloat the JSON.
        .args(["--disable-protocol", "json,data-text-lines,grpc,protobuf"]);
    for port in decode_ports {
        command.arg("-d").arg(format!("tcp.port=={port},http2"));
    }
    let output = command
        .output()
        .context("running tshark (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "tshark failed on {} ({}): {}",
            pcapng.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_tshark_json(&output.stdout)
        .with_context(|| format!("reading tshark's dissection of {}", pcapng.display()))
}

/// Extracts the HTTP/2 frames from `tshark -T json --no-duplicate-keys` output.
pub fn parse_tshark_json(json: &[u8]) -> Result<Vec<TsharkHttp2Frame>> {
    // tshark prints nothing at all (not `[]`) when no packet passes the display filter.
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let packets: Value = serde_json::from_slice(json).context("tshark output is not JSON")?;
    let packets = packets
        .as_array()
        .context("tshark output is not a JSON array")?;
    let mut frames = Vec::new();
    for packet in packets {
        let layers = &packet["_source"]["layers"];
        let frame_number = number(first(&layers["frame"]), "frame.number")?;
        parse_packet(layers, frame_number, &mut frames)
            .with_context(|| format!("packet {frame_number}"))?;
    }
    Ok(frames)
}

fn parse_packet(
    layers: &Value,
    frame_number: u64,
    frames: &mut Vec<TsharkHttp2Frame>,
) -> Result<()> {
    let tcp = first(&layers["tcp"]);
    let (ip, prefix) = if layers["ip"].is_null() {
        (first(&layers["ipv6"]), "ipv6")
    } else {
        (first(&layers["ip"]), "ip")
    };
    let address = |name: &str| -> Result<IpAddr> {
        let field = format!("{prefix}.{name}");
        text(ip, &field)?
            .parse()
            .with_context(|| format!("{field} is not an address"))
    };
    let (src_ip, dst_ip) = (address("src")?, address("dst")?);
    let tcp_stream = number(tcp, "tcp.stream")?;
    let src_port = number(tcp, "tcp.srcport")?.try_into()?;
    let dst_port = number(tcp, "tcp.dstport")?.try_into()?;
    for http2 in one_or_many(&layers["http2"]) {
        // `http2.stream_raw` is [hex, offset, length, bitmask, type], or a list of those when
        // one `http2` item holds several frames.
        let raws: Vec<&Value> = match &http2["http2.stream_raw"] {
            Value::Array(items) if items.first().is_some_and(Value::is_array) => {
                items.iter().collect()
            }
            Value::Null => Vec::new(),
            single => vec![single],
        };
        for (index, stream) in one_or_many(&http2["http2.stream"]).enumerate() {
            // The connection preface is an `http2.stream` too, without a frame header.
            if stream["http2.type"].is_null() {
                continue;
            }
            let frame_type: u8 = number(stream, "http2.type")?.try_into()?;
            let flags: u8 = number(stream, "http2.flags")?.try_into()?;
            let length: u32 = number(stream, "http2.length")?.try_into()?;
            let stream_id: u32 = number(stream, "http2.streamid")?.try_into()?;
            let headers = one_or_many(&stream["http2.header"])
                .filter_map(|header| {
                    let name = header["http2.header.name"].as_str()?;
                    let value = header["http2.header.value"].as_str().unwrap_or_default();
                    Some((name.to_string(), value.to_string()))
                })
                .collect();
            let payload = match raws.get(index).and_then(|raw| raw[0].as_str()) {
                Some(hex) => Some(frame_payload(&hex_bytes(hex)?, frame_type, length)?),
                None => None,
            };
            let data = match (&payload, frame_type) {
                (Some(payload), HTTP2_DATA) => Some(strip_padding(payload, flags)?),
                _ => None,
            };
            frames.push(TsharkHttp2Frame {
                frame_number,
                tcp_stream,
                src_ip,
                src_port,
                dst_ip,
                dst_port,
                stream_id,
                frame_type,
                flags,
                length,
                headers,
                payload,
                data,
            });
        }
    }
    Ok(())
}

/// The payload of a frame's raw bytes, checked against the header fields tshark reported.
fn frame_payload(frame: &[u8], frame_type: u8, length: u32) -> Result<Vec<u8>> {
    let header_length = frame
        .get(..3)
        .map(|l| u32::from_be_bytes([0, l[0], l[1], l[2]]));
    if frame.len() != 9 + length as usize || header_length != Some(length) || frame[3] != frame_type
    {
        bail!("raw bytes of a {length}-byte frame of type {frame_type} do not match its header");
    }
    Ok(frame[9..].to_vec())
}

/// A DATA payload without its pad length octet and padding (RFC 9113 section 6.1).
fn strip_padding(payload: &[u8], flags: u8) -> Result<Vec<u8>> {
    if flags & FLAG_PADDED == 0 {
        return Ok(payload.to_vec());
    }
    let padding = usize::from(
        *payload
            .first()
            .context("padded frame without a pad length")?,
    );
    let end = payload
        .len()
        .checked_sub(padding)
        .filter(|end| *end >= 1)
        .context("padding exceeds the frame")?;
    Ok(payload[1..end].to_vec())
}

/// tshark's rendering of a bytes field: `0a:1b:2c` in the JSON tree (`0a1b2c` with `-e`).
fn hex_bytes(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if !digits.len().is_multiple_of(2) {
        bail!("odd number of hex digits in a bytes field");
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).context("bytes field is not hex")?;
            u8::from_str_radix(pair, 16).with_context(|| format!("{pair:?} is not a hex byte"))
        })
        .collect()
}

/// With `--no-duplicate-keys`, a key that occurs more than once holds an array: iterate either.
fn one_or_many(value: &Value) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match value {
        Value::Array(items) => items,
        Value::Null => &[],
        single => std::slice::from_ref(single),
    };
    items.iter()
}

/// The first of one-or-many (e.g. the outer IP header of a tunnelled packet).
fn first(value: &Value) -> &Value {
    one_or_many(value).next().unwrap_or(&Value::Null)
}

fn text<'a>(object: &'a Value, field: &str) -> Result<&'a str> {
    first(&object[field])
        .as_str()
        .with_context(|| format!("no {field} in tshark's output"))
}

/// A numeric field: tshark prints numbers as strings, decimal or `0x` hexadecimal (flags).
fn number(object: &Value, field: &str) -> Result<u64> {
    let text = text(object, field)?;
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .with_context(|| format!("{field} = {text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use apiscope::capture::chunk::Bytes;
    use apiscope::capture::{ChunkEventKind, TlsChunk};
    use apiscope::record::PcapngWriter;
    use apiscope::vocabulary::{ConnectionId, Direction, Role};

    use super::*;

    // HTTP/2 by hand (RFC 9113 framing, RFC 7541 literal header fields without indexing).
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const SETTINGS: u8 = 4;
    const END_STREAM: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;

    /// A frame as built, for comparison with tshark's view.
    #[derive(Clone, Debug)]
    struct Built {
        src_port: u16,
        dst_port: u16,
        frame_type: u8,
        flags: u8,
        stream_id: u32,
        length: u32,
        headers: Vec<(String, String)>,
        payload: Vec<u8>,
        data: Option<Vec<u8>>,
    }

    /// One direction of one connection: frames appended, bytes written as chunks.
    struct Flow {
        src_port: u16,
        dst_port: u16,
        bytes: Vec<u8>,
        built: Vec<Built>,
    }

    impl Flow {
        fn new(src_port: u16, dst_port: u16) -> Self {
            Flow {
                src_port,
                dst_port,
                bytes: Vec::new(),
                built: Vec::new(),
            }
        }

        fn frame(&mut self, frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) {
            self.bytes
                .extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            self.bytes.extend_from_slice(&[frame_type, flags]);
            self.bytes.extend_from_slice(&stream_id.to_be_bytes());
            self.bytes.extend_from_slice(payload);
            self.built.push(Built {
                src_port: self.src_port,
                dst_port: self.dst_port,
                frame_type,
                flags,
                stream_id,
                length: payload.len() as u32,
                headers: Vec::new(),
                payload: payload.to_vec(),
                data: (frame_type == DATA).then(|| payload.to_vec()),
            });
        }

        fn headers(&mut self, flags: u8, stream_id: u32, headers: &[(&str, &str)]) {
            let mut block = Vec::new();
            for (name, value) in headers {
                block.push(0x00); // literal header field without indexing, new name
                for text in [name, value] {
                    assert!(text.len() < 127, "one-byte HPACK lengths only");
                    block.push(text.len() as u8);
                    block.extend_from_slice(text.as_bytes());
                }
            }
            self.frame(HEADERS, flags | END_HEADERS, stream_id, &block);
            self.built.last_mut().unwrap().headers = headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
        }

        /// A padded DATA frame: tshark reports the payload without the padding.
        fn padded_data(&mut self, flags: u8, stream_id: u32, data: &[u8], padding: u8) {
            let mut payload = vec![padding];
            payload.extend_from_slice(data);
            payload.extend(std::iter::repeat_n(0, padding.into()));
            self.frame(DATA, flags | 0x8, stream_id, &payload);
            self.built.last_mut().unwrap().data = Some(data.to_vec());
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
            .collect()
    }

    fn chunk(
        conn: u64,
        role: Role,
        local: SocketAddr,
        remote: SocketAddr,
        t: u64,
        kind: ChunkEventKind,
    ) -> TlsChunk {
        TlsChunk {
            timestamp_ns: t,
            connection: ConnectionId {
                pid: 77,
                conn_ptr: conn,
                first_seen_ns: 1,
            },
            tid: 78,
            goroutine: 0xc000_0000 + t,
            fd: 5,
            role,
            local: Some(local),
            remote: Some(remote),
            kind,
        }
    }

    fn data(bytes: &[u8], direction: Direction) -> ChunkEventKind {
        ChunkEventKind::Data {
            direction,
            len: bytes.len() as u32,
            data: Bytes(bytes.to_vec()),
        }
    }

    /// An exchange shaped like kubectl against the apiserver (IPv4, the process is the server),
    /// and a gRPC-like one as from the apiserver to etcd (IPv6, the process is the client).
    fn exchanges() -> (Vec<TlsChunk>, Vec<Built>) {
        let (apiserver, kubectl): (SocketAddr, SocketAddr) = (
            "10.2.0.1:6443".parse().unwrap(),
            "10.2.0.2:53000".parse().unwrap(),
        );
        let mut request = Flow::new(53000, 6443);
        request.bytes.extend_from_slice(PREFACE);
        request.frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
        request.headers(
            END_STREAM,
            1,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/api/v1/pods"),
                (":authority", "k"),
            ],
        );
        request.headers(
            0,
            3,
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/api/v1/namespaces/default/configmaps"),
                (":authority", "k"),
            ],
        );
        request.frame(DATA, END_STREAM, 3, br#"{"kind":"ConfigMap"}"#);
        let mut response = Flow::new(6443, 53000);
        response.frame(SETTINGS, 0, 0, &[]);
        response.frame(SETTINGS, ACK, 0, &[]);
        response.headers(
            0,
            1,
            &[(":status", "200"), ("content-type", "application/json")],
        );
        response.frame(DATA, 0, 1, &pattern(16_384, 1)); // body reassembled from three frames
        response.padded_data(0, 1, &pattern(1_000, 2), 7);
        response.frame(DATA, END_STREAM, 1, &pattern(90_000, 3)); // spans TCP segments
        response.headers(0, 3, &[(":status", "201"), ("content-encoding", "gzip")]);
        response.padded_data(END_STREAM, 3, b"not really gzip", 3); // one-frame body

        let (local, etcd): (SocketAddr, SocketAddr) = (
            "[fd00::1]:41000".parse().unwrap(),
            "[fd00::2]:2379".parse().unwrap(),
        );
        let mut grpc_request = Flow::new(41000, 2379);
        grpc_request.bytes.extend_from_slice(PREFACE);
        grpc_request.frame(SETTINGS, 0, 0, &[]);
        grpc_request.headers(
            0,
            1,
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/etcdserverpb.KV/Range"),
                (":authority", "e"),
            ],
        );
        grpc_request.frame(DATA, END_STREAM, 1, b"\0\0\0\0\x02ab");
        let mut grpc_response = Flow::new(2379, 41000);
        grpc_response.headers(
            0,
            1,
            &[(":status", "200"), ("content-type", "application/grpc")],
        );
        grpc_response.frame(DATA, 0, 1, b"\0\0\0\0\x01z");
        grpc_response.headers(END_STREAM, 1, &[("grpc-status", "0")]);

        let (a, b) = (0xc000_a000, 0xc000_b000);
        let (ingress, egress) = (Direction::Ingress, Direction::Egress);
        // The response goes out in writes that cut frames in the middle.
        let (r1, rest) = response.bytes.split_at(100);
        let (r2, r3) = rest.split_at(40_000);
        let chunks = vec![
            chunk(
                a,
                Role::Server,
                apiserver,
                kubectl,
                10,
                data(&request.bytes, ingress),
            ),
            chunk(
                b,
                Role::Client,
                local,
                etcd,
                11,
                data(&grpc_request.bytes, egress),
            ),
            chunk(a, Role::Server, apiserver, kubectl, 12, data(r1, egress)),
            chunk(a, Role::Server, apiserver, kubectl, 13, data(r2, egress)),
            chunk(
                b,
                Role::Client,
                local,
                etcd,
                14,
                data(&grpc_response.bytes, ingress),
            ),
            chunk(a, Role::Server, apiserver, kubectl, 15, data(r3, egress)),
            chunk(
                a,
                Role::Server,
                apiserver,
                kubectl,
                16,
                ChunkEventKind::Close,
            ),
        ];
        let mut built = request.built;
        built.extend(grpc_request.built);
        built.extend(response.built);
        built.extend(grpc_response.built);
        (chunks, built)
    }

    fn tshark_or_skip() -> bool {
        if tshark_available() {
            return true;
        }
        assert!(
            std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
            "tshark is required (APISCOPE_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipped: tshark is not installed");
        false
    }

    /// A recording in the temp directory, removed on drop.
    struct TempRecording(std::path::PathBuf);

    impl TempRecording {
        fn write(name: &str, chunks: &[TlsChunk]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "apiscope-tshark-{name}-{}.pcapng",
                std::process::id()
            ));
            let mut writer = PcapngWriter::create(&path).unwrap();
            for chunk in chunks {
                writer.write_chunk(chunk).unwrap();
            }
            writer.flush().unwrap();
            TempRecording(path)
        }
    }

    impl Drop for TempRecording {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn dissects_every_frame_of_a_recording() {
        if !tshark_or_skip() {
            return;
        }
        let (chunks, built) = exchanges();
        let recording = TempRecording::write("frames", &chunks);
        let frames = dissect_http2(&recording.0, &[6443, 2379]).unwrap();
        let key = |src: u16, dst: u16| -> (u16, u16) { (src, dst) };
        for (src, dst) in [(53000, 6443), (6443, 53000), (41000, 2379), (2379, 41000)] {
            let theirs: Vec<&TsharkHttp2Frame> = frames
                .iter()
                .filter(|f| key(f.src_port, f.dst_port) == (src, dst))
                .collect();
            let ours: Vec<&Built> = built
                .iter()
                .filter(|b| (b.src_port, b.dst_port) == (src, dst))
                .collect();
            assert_eq!(
                theirs.len(),
                ours.len(),
                "frames {src} -> {dst}: {theirs:#?}"
            );
            for (t, o) in theirs.iter().zip(&ours) {
                let what = format!("{src} -> {dst} frame {t:?}");
                assert_eq!(
                    (t.frame_type, t.flags, t.stream_id, t.length),
                    (o.frame_type, o.flags, o.stream_id, o.length),
                    "{what}"
                );
                assert_eq!(t.headers, o.headers, "{what}");
                assert_eq!(t.payload.as_ref(), Some(&o.payload), "{what}");
                assert_eq!(t.data, o.data, "{what}");
            }
        }
        assert_eq!(frames.len(), built.len());

        let post = frames
            .iter()
            .find(|f| f.header(":method") == Some("POST") && f.dst_port == 6443)
            .unwrap();
        assert_eq!(
            post.header(":path"),
            Some("/api/v1/namespaces/default/configmaps")
        );
        assert_eq!(
            (post.src_ip.to_string(), post.dst_ip.to_string()),
            ("10.2.0.2".into(), "10.2.0.1".into())
        );
        let etcd = frames.iter().find(|f| f.src_port == 2379).unwrap();
        assert_eq!(etcd.src_ip.to_string(), "fd00::2");
        assert_ne!(post.tcp_stream, etcd.tcp_stream);
        // Frames come in capture order, several may share a packet, and a frame that spans TCP
        // segments is reported in the packet that completes it.
        assert!(
            frames
                .windows(2)
                .all(|w| w[0].frame_number <= w[1].frame_number)
        );
        assert!(
            frames
                .windows(2)
                .any(|w| w[0].frame_number == w[1].frame_number)
        );
    }

    #[test]
    fn ports_not_decoded_yield_no_frames() {
        if !tshark_or_skip() {
            return;
        }
        let (chunks, _) = exchanges();
        let recording = TempRecording::write("ports", &chunks);
        let frames = dissect_http2(&recording.0, &[2379]).unwrap();
        assert!(
            !frames.is_empty()
                && frames
                    .iter()
                    .all(|f| f.src_port == 2379 || f.dst_port == 2379)
        );
        assert!(dissect_http2(&recording.0, &[9]).unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_an_error() {
        if !tshark_or_skip() {
            return;
        }
        let error = dissect_http2(Path::new("/nonexistent/recording.pcapng"), &[443]).unwrap_err();
        assert!(error.to_string().contains("tshark failed"), "{error:#}");
    }

    #[test]
    fn parses_tshark_json_shapes() {
        // One frame alone (objects), several in a packet (arrays), the preface, IPv6.
        let json = br#"[
          {"_source": {"layers": {
            "frame": {"frame.number": "4"},
            "ipv6": {"ipv6.src": "fd00::1", "ipv6.dst": "fd00::2"},
            "tcp": {"tcp.srcport": "41000", "tcp.dstport": "2379", "tcp.stream": "2"},
            "http2": [
              {"http2.stream_raw": ["505249", 40, 3, 0, 26],
               "http2.stream": {"http2.magic": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}},
              {"http2.stream_raw": ["0000020105000000017878", 43, 11, 0, 0],
               "http2.stream": {"http2.length": "2", "http2.type": "1", "http2.flags": "0x05",
                "http2.streamid": "1",
                "http2.header": {"http2.header.name": ":path", "http2.header.value": "/x"}}},
              {"http2.stream_raw": [["000004000900000001010405ff", 54, 13, 0, 0],
                                    ["000000000100000001", 67, 9, 0, 0]],
               "http2.stream": [
                 {"http2.length": "4", "http2.type": "0", "http2.flags": "0x09", "http2.streamid": "1",
                  "http2.data.data": "ff:ff:ff:ff:ff"},
                 {"http2.length": "0", "http2.type": "0", "http2.flags": "0x01", "http2.streamid": "1"}]}
            ]}}}
        ]"#;
        let frames = parse_tshark_json(json).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].headers, [(":path".to_string(), "/x".to_string())]);
        assert_eq!(
            (
                frames[0].flags,
                frames[0].frame_number,
                frames[0].tcp_stream
            ),
            (5, 4, 2)
        );
        assert_eq!(frames[0].payload.as_deref(), Some(&b"xx"[..]));
        assert_eq!(frames[0].data, None);
        assert_eq!(frames[1].payload, Some(vec![1, 4, 5, 0xff]));
        assert_eq!(
            frames[1].data,
            Some(vec![4, 5]),
            "pad length 1 and one byte of padding removed"
        );
        assert_eq!(frames[2].data, Some(Vec::new()));
        assert_eq!(frames[1].src_ip.to_string(), "fd00::1");
        let mismatched = String::from_utf8_lossy(json).replace("0000020105", "0000030105");
        assert!(
            parse_tshark_json(mismatched.as_bytes()).is_err(),
            "raw bytes must match the header"
        );
        assert!(parse_tshark_json(b"").unwrap().is_empty());
        assert!(parse_tshark_json(b"{").is_err());
        assert!(parse_tshark_json(br#"[{"_source": {"layers": {"frame": {}}}}]"#).is_err());
    }
}
