//! Recording round trips, malformed input, and tshark's view of a recording.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::capture::chunk::Bytes;
use crate::capture::{ChunkEventKind, TlsChunk};
use crate::vocabulary::{ConnectionId, Direction, Role};

const CLOCK_OFFSET_NS: i64 = 1_700_000_000_000_000_000;

fn connection(pid: u32, conn_ptr: u64) -> ConnectionId {
    ConnectionId {
        pid,
        conn_ptr,
        first_seen_ns: 1_000 + conn_ptr,
    }
}

fn addr(text: &str) -> Option<SocketAddr> {
    Some(text.parse().unwrap())
}

/// Builds chunks of one connection with increasing timestamps.
struct Conn {
    id: ConnectionId,
    role: Role,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

impl Conn {
    fn chunk(&self, timestamp_ns: u64, kind: ChunkEventKind) -> TlsChunk {
        TlsChunk {
            timestamp_ns,
            connection: self.id,
            tid: self.id.pid.wrapping_add(1),
            goroutine: timestamp_ns.wrapping_add(0xc000_1000),
            fd: 7,
            role: self.role,
            local: self.local,
            remote: self.remote,
            kind,
        }
    }

    fn data(&self, timestamp_ns: u64, direction: Direction, bytes: &[u8]) -> TlsChunk {
        self.truncated(timestamp_ns, direction, bytes, bytes.len() as u32)
    }

    fn truncated(
        &self,
        timestamp_ns: u64,
        direction: Direction,
        bytes: &[u8],
        len: u32,
    ) -> TlsChunk {
        self.chunk(
            timestamp_ns,
            ChunkEventKind::Data {
                direction,
                len,
                data: Bytes(bytes.to_vec()),
            },
        )
    }

    fn close(&self, timestamp_ns: u64) -> TlsChunk {
        self.chunk(timestamp_ns, ChunkEventKind::Close)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every shape a recording must carry: both families and roles, both directions, truncation
/// (partial and total), multi-segment chunks, empty chunks, closes, unknown addresses, a
/// connection reused after its close, and the two ends of one loopback connection.
fn varied_chunks() -> Vec<TlsChunk> {
    use Direction::{Egress, Ingress};
    let v4_server = Conn {
        id: connection(100, 0xc000_1000),
        role: Role::Server,
        local: addr("10.0.0.1:6443"),
        remote: addr("10.0.0.2:51000"),
    };
    let v6_client = Conn {
        id: connection(100, 0xc000_2000),
        role: Role::Client,
        local: addr("[fd00::5]:40000"),
        remote: addr("[fd00::6]:2379"),
    };
    let unknown = Conn {
        id: connection(100, 0xc000_3000),
        role: Role::Server,
        local: None,
        remote: None,
    };
    let half_known = Conn {
        id: connection(101, 0xc000_4000),
        role: Role::Client,
        local: None,
        remote: addr("[::1]:443"),
    };
    let loop_client = Conn {
        id: connection(100, 0xc000_5000),
        role: Role::Client,
        local: addr("127.0.0.1:45000"),
        remote: addr("127.0.0.1:6443"),
    };
    let loop_server = Conn {
        id: connection(100, 0xc000_6000),
        role: Role::Server,
        local: addr("127.0.0.1:6443"),
        remote: addr("127.0.0.1:45000"),
    };
    vec![
        v4_server.data(10, Ingress, b"request bytes"),
        v6_client.data(11, Egress, b"to etcd"),
        v4_server.data(12, Egress, &pattern(150_000, 1)), // three segments
        v6_client.data(13, Ingress, &pattern(65_000, 2)), // exactly one full segment
        v4_server.truncated(14, Ingress, &pattern(100, 3), 5_000),
        v4_server.truncated(15, Egress, &[], 300), // nothing copied at all
        unknown.data(16, Ingress, b"who am I talking to"),
        v4_server.data(17, Ingress, b""),
        half_known.data(18, Egress, b"half known"),
        loop_client.data(19, Egress, b"PRI * HTTP/2.0"),
        loop_server.data(20, Ingress, b"PRI * HTTP/2.0"),
        unknown.close(21),
        v6_client.truncated(22, Egress, &pattern(70_000, 4), 200_000),
        v4_server.chunk(
            23,
            ChunkEventKind::Data {
                direction: Egress,
                len: 2,
                data: Bytes(b"more than len".to_vec()),
            },
        ),
        v4_server.close(24),
        v4_server.data(25, Ingress, b"after the close"),
        v6_client.close(26),
        loop_server.close(27),
        loop_client.close(28),
    ]
}

fn record(chunks: &[TlsChunk]) -> Vec<u8> {
    let mut writer = PcapngWriter::with_clock_offset(Vec::new(), CLOCK_OFFSET_NS).unwrap();
    for chunk in chunks {
        writer.write_chunk(chunk).unwrap();
    }
    writer.into_inner().unwrap()
}

fn read_all(bytes: &[u8]) -> Result<Vec<TlsChunk>, ReadError> {
    ChunkReader::new(bytes).collect()
}

#[test]
fn round_trip_is_exact() {
    let chunks = varied_chunks();
    let bytes = record(&chunks);
    let mut reader = ChunkReader::new(&bytes[..]);
    let read: Vec<TlsChunk> = reader.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len(), chunks.len());
    for (i, (read, written)) in read.iter().zip(&chunks).enumerate() {
        assert_eq!(read, written, "chunk {i}");
    }
    assert_eq!(reader.skipped_packets(), 0);
}

#[test]
fn extreme_field_values_round_trip() {
    let conn = Conn {
        id: ConnectionId {
            pid: u32::MAX,
            conn_ptr: u64::MAX,
            first_seen_ns: u64::MAX,
        },
        role: Role::Client,
        local: addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        remote: addr("0.0.0.0:0"),
    };
    let mut chunk = conn.truncated(u64::MAX, Direction::Ingress, b"x", u32::MAX);
    chunk.goroutine = u64::MAX;
    chunk.fd = -1;
    chunk.tid = 0;
    let chunks = vec![
        chunk,
        conn.truncated(0, Direction::Egress, &[], u32::MAX),
        conn.close(u64::MAX),
    ];
    assert_eq!(read_all(&record(&chunks)).unwrap(), chunks);
    // Far-future and far-past wall clocks clamp instead of overflowing.
    for offset in [i64::MAX, i64::MIN] {
        let mut writer = PcapngWriter::with_clock_offset(Vec::new(), offset).unwrap();
        writer.write_chunk(&chunks[0]).unwrap();
        assert_eq!(
            read_all(&writer.into_inner().unwrap()).unwrap(),
            chunks[..1]
        );
    }
}

#[test]
fn recording_file_is_private_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcapng");
    // An existing world-readable file is truncated and made private.
    std::fs::write(&path, b"old contents").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let chunks = varied_chunks();
    let mut writer = PcapngWriter::create(&path).unwrap();
    for chunk in &chunks {
        writer.write_chunk(chunk).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read_chunks(&path).unwrap(), chunks);

    let fresh = dir.path().join("fresh.pcapng");
    drop(PcapngWriter::create(&fresh).unwrap());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&fresh).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(read_chunks(&fresh).unwrap(), Vec::new());
}

#[test]
fn refuses_to_write_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, b"keep me").unwrap();
    let link = dir.path().join("link.pcapng");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let error = PcapngWriter::create(&link).err().expect("symlink refused");
    assert!(error.to_string().contains("symbolic link"), "{error:#}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
}

#[test]
fn oversized_chunk_is_refused_before_writing() {
    let conn = Conn {
        id: connection(1, 1),
        role: Role::Server,
        local: None,
        remote: None,
    };
    let mut writer = PcapngWriter::with_clock_offset(Vec::new(), 0).unwrap();
    let huge = conn.data(1, Direction::Ingress, &vec![0; 64 * 1024 * 1024 + 1]);
    assert!(writer.write_chunk(&huge).is_err());
    let bytes = writer.into_inner().unwrap();
    assert_eq!(read_all(&bytes).unwrap(), Vec::new());
}

/// Offsets and lengths of the blocks of a (little-endian) recording.
fn blocks(bytes: &[u8]) -> Vec<(usize, u32, usize)> {
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let block_type = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        blocks.push((at, block_type, len));
        at += len;
    }
    blocks
}

/// Reading `bytes` cut at `cut` either fails (naming an offset up to the cut) or, at a block
/// boundary between chunks, yields a prefix of `chunks`.
fn check_cut(
    bytes: &[u8],
    chunks: &[TlsChunk],
    boundaries: &[usize],
    cut: usize,
) -> Result<usize, ReadError> {
    match read_all(&bytes[..cut]) {
        Ok(read) => {
            assert!(
                boundaries.contains(&cut),
                "cut at {cut} inside a block must fail"
            );
            assert_eq!(read[..], chunks[..read.len()], "cut at {cut}");
            Ok(read.len())
        }
        Err(error) => {
            assert!(error.to_string().contains("offset"), "{error}");
            assert!(error.offset() <= cut as u64);
            Err(error)
        }
    }
}

#[test]
fn every_truncation_is_an_error_or_a_prefix() {
    let all = varied_chunks();
    let small: Vec<TlsChunk> = [0, 1, 4, 5, 6, 11]
        .into_iter()
        .map(|i| all[i].clone())
        .collect();
    let bytes = record(&small);
    let boundaries: Vec<usize> = blocks(&bytes).iter().map(|(at, _, _)| *at).collect();
    for cut in 0..bytes.len() {
        let _ = check_cut(&bytes, &small, &boundaries, cut);
    }

    // Between the segments of a multi-segment chunk: an error naming the chunk's first block.
    let big = all[..3].to_vec();
    let bytes = record(&big);
    let boundaries: Vec<usize> = blocks(&bytes).iter().map(|(at, _, _)| *at).collect();
    let mut inside_chunk = 0;
    for &boundary in &boundaries {
        for cut in [
            boundary.saturating_sub(1),
            boundary,
            boundary + 1,
            boundary + 9,
        ] {
            let result = check_cut(&bytes, &big, &boundaries, cut.min(bytes.len()));
            if result.is_err_and(|e| e.to_string().contains("file ends inside chunk 2")) {
                inside_chunk += 1;
            }
        }
    }
    assert_eq!(
        inside_chunk, 2,
        "two cuts fall between the three segments of chunk 2"
    );
}

#[test]
fn garbage_and_bad_lengths_are_errors() {
    let bytes = record(&varied_chunks()[..4]);
    let error = read_all(b"").unwrap_err();
    assert!(error.to_string().contains("empty file"), "{error}");
    let error = read_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap_err();
    assert!(
        error.to_string().contains("not a pcapng file") && error.offset() == 0,
        "{error}"
    );
    let error = read_all(&[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4]).unwrap_err();
    assert!(error.to_string().contains("byte-order magic"), "{error}");

    let (packet_at, _, packet_len) = blocks(&bytes)[2];
    let with_length = |len: u32| {
        let mut bad = bytes.clone();
        bad[packet_at + 4..packet_at + 8].copy_from_slice(&len.to_le_bytes());
        bad
    };
    for bad_len in [0, 11, 13, 0xffff_fff0, 1 << 30, packet_len as u32 + 4] {
        let error = read_all(&with_length(bad_len)).unwrap_err();
        assert_eq!(
            error.offset(),
            packet_at as u64,
            "length {bad_len}: {error}"
        );
    }
    let mut bad_trailer = bytes.clone();
    bad_trailer[packet_at + packet_len - 4] ^= 0x40;
    let error = read_all(&bad_trailer).unwrap_err();
    assert!(error.to_string().contains("trailing length"), "{error}");

    // A segment whose metadata claims more segments than follow.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains(r#""segment":0,"segments":1"#));
    let lying = String::from_utf8_lossy(&bytes).replacen(r#""segments":1"#, r#""segments":2"#, 1);
    assert!(read_all(lying.as_bytes()).is_err());
}

#[test]
fn corrupted_bytes_never_panic() {
    let bytes = record(&varied_chunks()[..6]);
    // A fixed xorshift sequence: reproducible, and covers headers, lengths, options and JSON.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3_000 {
        let mut corrupted = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % corrupted.len() as u64) as usize;
            corrupted[at] = next() as u8;
        }
        let _ = read_all(&corrupted);
    }
}

#[test]
fn foreign_packets_are_skipped_and_counted() {
    let conn = Conn {
        id: connection(5, 5),
        role: Role::Server,
        local: addr("10.0.0.1:443"),
        remote: addr("10.0.0.9:4000"),
    };
    let chunk = conn.data(1, Direction::Ingress, b"hello");
    let mut bytes = record(std::slice::from_ref(&chunk));
    // An Enhanced Packet Block from another tool: a user comment, no apiscope metadata.
    let mut body = Vec::new();
    body.extend_from_slice(&[0; 12]); // interface 0, timestamp
    body.extend_from_slice(&4u32.to_le_bytes());
    body.extend_from_slice(&4u32.to_le_bytes());
    body.extend_from_slice(b"abcd");
    body.extend_from_slice(&[1, 0, 5, 0]);
    body.extend_from_slice(b"hello\0\0\0");
    body.extend_from_slice(&[0; 4]);
    bytes.extend_from_slice(&6u32.to_le_bytes());
    bytes.extend_from_slice(&((body.len() + 12) as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&((body.len() + 12) as u32).to_le_bytes());
    let mut reader = ChunkReader::new(&bytes[..]);
    assert_eq!(
        reader.by_ref().collect::<Result<Vec<_>, _>>().unwrap(),
        vec![chunk]
    );
    assert_eq!(reader.skipped_packets(), 1);
}

/// Rewrites a little-endian recording as big-endian, field by field.
fn to_big_endian(bytes: &[u8]) -> Vec<u8> {
    fn swap(out: &mut [u8], at: usize, width: usize) {
        out[at..at + width].reverse();
    }
    fn swap_options(out: &mut [u8], mut at: usize, end: usize) {
        while at + 4 <= end {
            let len = u16::from_le_bytes([out[at + 2], out[at + 3]]) as usize;
            swap(out, at, 2);
            swap(out, at + 2, 2);
            at += 4 + len.next_multiple_of(4);
        }
    }
    let mut out = bytes.to_vec();
    for (at, block_type, len) in blocks(bytes) {
        swap(&mut out, at, 4);
        swap(&mut out, at + 4, 4);
        swap(&mut out, at + len - 4, 4);
        let body = at + 8;
        match block_type {
            0x0a0d0d0a => {
                swap(&mut out, body, 4);
                swap(&mut out, body + 4, 2);
                swap(&mut out, body + 6, 2);
                swap(&mut out, body + 8, 8);
                swap_options(&mut out, body + 16, at + len - 4);
            }
            1 => {
                swap(&mut out, body, 2);
                swap(&mut out, body + 2, 2);
                swap(&mut out, body + 4, 4);
                swap_options(&mut out, body + 8, at + len - 4);
            }
            6 => {
                for field in 0..5 {
                    swap(&mut out, body + 4 * field, 4);
                }
                let captured =
                    u32::from_le_bytes(bytes[body + 12..body + 16].try_into().unwrap()) as usize;
                swap_options(
                    &mut out,
                    body + 20 + captured.next_multiple_of(4),
                    at + len - 4,
                );
            }
            other => panic!("unexpected block type {other}"),
        }
    }
    out
}

#[test]
fn big_endian_sections_are_read() {
    let chunks = varied_chunks();
    let big_endian = to_big_endian(&record(&chunks));
    assert_eq!(&big_endian[8..12], &[0x1a, 0x2b, 0x3c, 0x4d]);
    assert_eq!(read_all(&big_endian).unwrap(), chunks);
    if let Some(json) = tshark_json(
        &write_temp(&big_endian),
        &["-T", "fields", "-e", "frame.number"],
    ) {
        assert!(!json.is_empty());
    }
}

// ---- tshark -------------------------------------------------------------------------------

/// Whether tshark can run; when it cannot, fails under APISCOPE_REQUIRE_TOOLS=1, else skips.
fn tshark_available() -> bool {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("APISCOPE_REQUIRE_TOOLS").is_none(),
            "tshark is required (APISCOPE_REQUIRE_TOOLS=1)"
        );
        eprintln!("skipped: tshark is not installed");
    }
    ok
}

fn write_temp(bytes: &[u8]) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .suffix(".pcapng")
        .tempfile()
        .unwrap();
    std::io::Write::write_all(&mut file, bytes).unwrap();
    file.into_temp_path()
}

/// tshark's standard output for `args` on `path`, or `None` if tshark is not there.
fn tshark_json(path: &Path, args: &[&str]) -> Option<String> {
    if !tshark_available() {
        return None;
    }
    let output = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark failed: {stderr}");
    assert!(
        !stderr.contains("appears to be damaged") && !stderr.contains("isn't a capture file"),
        "{stderr}"
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

// HTTP/2 by hand (RFC 9113 framing, RFC 7541 literal header fields): independent of our parser.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const DATA: u8 = 0;
const SETTINGS: u8 = 4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn h2_frame(frame_type: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[frame_type, flags]);
    frame.extend_from_slice(&stream_id.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// HPACK integer with a 7-bit prefix (string lengths, Huffman bit clear).
fn hpack_length(len: usize, out: &mut Vec<u8>) {
    if len < 127 {
        out.push(len as u8);
        return;
    }
    out.push(127);
    let mut rest = len - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A header block of "literal header field without indexing, new name" entries.
fn hpack_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(0x00);
        hpack_length(name.len(), &mut block);
        block.extend_from_slice(name.as_bytes());
        hpack_length(value.len(), &mut block);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

const API_PORT: u16 = 6443;
const BODY_LEN: usize = 100_000;

/// A request and its response on one connection, as the apiserver (server role) saw them: the
/// response body is large enough to span several TCP segments and several DATA frames.
fn http2_exchange() -> Vec<TlsChunk> {
    let conn = Conn {
        id: connection(4242, 0xc000_7000),
        role: Role::Server,
        local: addr(&format!("10.1.0.1:{API_PORT}")),
        remote: addr("10.1.0.2:52000"),
    };
    let mut request = PREFACE.to_vec();
    request.extend(h2_frame(SETTINGS, 0, 0, &[]));
    request.extend(h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &hpack_block(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/api/v1/namespaces/default/configmaps"),
            (":authority", "10.1.0.1:6443"),
        ]),
    ));
    let mut response = h2_frame(SETTINGS, 0, 0, &[]);
    response.extend(h2_frame(SETTINGS, 0x1, 0, &[])); // ACK
    response.extend(h2_frame(
        HEADERS,
        END_HEADERS,
        1,
        &hpack_block(&[(":status", "200"), ("content-type", "application/json")]),
    ));
    let body = pattern(BODY_LEN, 9);
    let (first, second) = body.split_at(16_384);
    response.extend(h2_frame(DATA, 0, 1, first));
    response.extend(h2_frame(DATA, END_STREAM, 1, second));
    // Go writes frame by frame; here the response goes as two writes split mid-frame.
    let (write1, write2) = response.split_at(30_000);
    vec![
        conn.data(1_000, Direction::Ingress, &request),
        conn.data(2_000, Direction::Egress, write1),
        conn.data(3_000, Direction::Egress, write2),
        conn.close(4_000),
    ]
}

#[test]
fn tshark_dissects_a_recording_as_http2() {
    let chunks = http2_exchange();
    let path = write_temp(&record(&chunks));
    let decode_as = format!("tcp.port=={API_PORT},http2");
    let fields = [
        "frame.time_epoch",
        "ip.src",
        "tcp.srcport",
        "tcp.flags.str",
        "tcp.checksum.status",
        "ip.checksum.status",
        "http2.type",
        "http2.headers.method",
        "http2.headers.path",
        "http2.headers.status",
        "http2.length",
        "http2.body.reassembled.data",
        "tcp.analysis.flags",
        "frame.comment",
    ];
    let mut args = vec!["-d", decode_as.as_str(), "-T", "json"];
    for field in fields {
        args.extend(["-e", field]);
    }
    let Some(json) = tshark_json(&path, &args) else {
        return;
    };
    let packets: serde_json::Value = serde_json::from_str(&json).unwrap();
    let layers: Vec<&serde_json::Value> = packets
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["_source"]["layers"])
        .collect();
    let strings = |layer: &serde_json::Value, field: &str| -> Vec<String> {
        layer[field]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let all =
        |field: &str| -> Vec<String> { layers.iter().flat_map(|l| strings(l, field)).collect() };

    assert_eq!(strings(layers[0], "tcp.flags.str"), ["··········S·"]);
    assert_eq!(
        strings(layers[0], "ip.src"),
        ["10.1.0.2"],
        "the remote peer is the TCP client"
    );
    assert!(
        all("tcp.checksum.status").iter().all(|s| s == "1"),
        "TCP checksums good: {:?}",
        all("tcp.checksum.status")
    );
    assert!(
        all("ip.checksum.status").iter().all(|s| s == "1"),
        "IP checksums good"
    );
    let last = layers.last().unwrap();
    assert_eq!(
        strings(last, "tcp.flags.str"),
        ["·······A···F"],
        "close is a FIN"
    );
    assert_eq!(
        strings(last, "ip.src"),
        ["10.1.0.1"],
        "from the process's side"
    );
    // Wall-clock time: monotonic 1000 ns plus the offset.
    let epoch = strings(layers[0], "frame.time_epoch")[0].clone();
    assert!(epoch.starts_with("1700000000.000001000"), "{epoch}");

    assert_eq!(all("http2.headers.method"), ["GET"]);
    assert_eq!(
        all("http2.headers.path"),
        ["/api/v1/namespaces/default/configmaps"]
    );
    assert_eq!(all("http2.headers.status"), ["200"]);
    // Frames (one packet may carry several): type and length are listed in step.
    let frames: Vec<(String, usize)> = all("http2.type")
        .into_iter()
        .zip(all("http2.length").iter().map(|l| l.parse().unwrap()))
        .collect();
    let data_frames: Vec<usize> = frames
        .iter()
        .filter(|(t, _)| t == "0")
        .map(|(_, len)| *len)
        .collect();
    assert_eq!(
        data_frames,
        [16_384, BODY_LEN - 16_384],
        "DATA frames: {frames:?}"
    );
    assert_eq!(
        frames.iter().filter(|(t, _)| t == "1").count(),
        2,
        "HEADERS frames: {frames:?}"
    );
    // tshark reassembles the body from the DATA frames: the bytes must be exactly ours.
    let body_hex: String = pattern(BODY_LEN, 9)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        all("http2.body.reassembled.data"),
        [body_hex],
        "DATA payload bytes"
    );
    let comments = all("frame.comment");
    assert!(
        comments.iter().any(|c| c.contains(r#""event":"close""#)),
        "metadata shown as comments"
    );
}

#[test]
fn tshark_sees_the_gap_of_a_truncated_chunk() {
    let conn = Conn {
        id: connection(9, 9),
        role: Role::Client,
        local: addr("[fd00::1]:40000"),
        remote: addr("[fd00::2]:443"),
    };
    let chunks = vec![
        conn.data(1, Direction::Egress, b"first"),
        conn.truncated(2, Direction::Egress, b"part", 1_000),
        conn.data(3, Direction::Egress, b"after the gap"),
    ];
    let path = write_temp(&record(&chunks));
    let args = [
        "-T",
        "fields",
        "-e",
        "ipv6.src",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.len",
        "-e",
        "tcp.analysis.lost_segment",
    ];
    let Some(text) = tshark_json(&path, &args) else {
        return;
    };
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 6, "{text}");
    assert_eq!(rows[0][0], "fd00::1", "the process is the TCP client");
    // Relative sequence numbers: 1 + 5 ("first") + 4 ("part") + 996 missing bytes.
    assert_eq!(rows[5][1..3], ["1006", "13"], "{text}");
    assert_eq!(rows[5][3], "1", "tshark flags the missing segment: {text}");
}

#[test]
fn tshark_sees_each_connection_once() {
    use Direction::{Egress, Ingress};
    // The apiserver's loopback client: both ends of one TCP connection are captured.
    let client_end = Conn {
        id: connection(1, 0xa),
        role: Role::Client,
        local: addr("127.0.0.1:45000"),
        remote: addr("127.0.0.1:6443"),
    };
    let server_end = Conn {
        id: connection(1, 0xb),
        role: Role::Server,
        local: addr("127.0.0.1:6443"),
        remote: addr("127.0.0.1:45000"),
    };
    let unknown = Conn {
        id: connection(1, 0xc),
        role: Role::Server,
        local: None,
        remote: None,
    };
    let chunks = vec![
        client_end.data(1, Egress, b"hello"),
        server_end.data(2, Ingress, b"hello"),
        unknown.data(3, Ingress, b"from somewhere"),
        server_end.data(4, Egress, b"world"),
        client_end.data(5, Ingress, b"world"),
    ];
    let path = write_temp(&record(&chunks));
    let args = [
        "-T",
        "fields",
        "-e",
        "tcp.stream",
        "-e",
        "ip.src",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.len",
        "-e",
        "tcp.analysis.flags",
    ];
    let Some(text) = tshark_json(&path, &args) else {
        return;
    };
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert!(
        rows.iter().all(|r| r[5].is_empty()),
        "no TCP analysis warnings: {text}"
    );
    let streams: std::collections::BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(streams.len(), 3, "{text}");
    let data_rows: Vec<&Vec<&str>> = rows.iter().filter(|r| r[4] != "0").collect();
    // The first end keeps the real addresses; the second moves to synthetic loopback
    // addresses and client port, keeping the server port.
    assert_eq!(data_rows[0][1..4], ["127.0.0.1", "45000", "6443"], "{text}");
    assert!(
        data_rows[1][1].starts_with("127.") && data_rows[1][1] != "127.0.0.1",
        "{text}"
    );
    assert_eq!(data_rows[1][3], "6443", "{text}");
    // Unknown addresses: synthetic loopback endpoints and the synthetic server port.
    assert!(data_rows[2][1].starts_with("127."), "{text}");
    assert_eq!(data_rows[2][3], SYNTHETIC_SERVER_PORT.to_string(), "{text}");
}

#[test]
fn comments_read_in_one_pass_as_the_generic_path_reads_them() {
    use super::meta::{PacketComment, SegmentMeta, parse_comment, parse_comment_generic};
    let segment = |result: Result<PacketComment, String>| match result {
        Ok(PacketComment::Segment(meta)) => Some(meta),
        _ => None,
    };
    for (index, chunk) in varied_chunks().iter().enumerate() {
        let json = SegmentMeta::for_chunk(chunk, index as u64, 1).to_json();
        let fast = segment(parse_comment(&json)).expect("a segment");
        assert_eq!(Some(fast), segment(parse_comment_generic(&json)), "{json}");
    }
    // What the typed pass does not take still gets the generic answers.
    assert!(matches!(
        parse_comment(r#"{"apiscope":1,"synthetic":"handshake"}"#),
        Ok(PacketComment::Synthetic)
    ));
    assert!(matches!(
        parse_comment(r#"{"note":"from someone else","pid":"x"}"#),
        Ok(PacketComment::Foreign)
    ));
    let json = SegmentMeta::for_chunk(&varied_chunks()[0], 0, 1).to_json();
    let newer = json.replacen(r#""apiscope":1"#, r#""apiscope":2"#, 1);
    assert!(parse_comment(&newer).unwrap_err().contains("version 2"));
    let incomplete = json.replacen(r#""pid":"#, r#""not_pid":"#, 1);
    assert!(
        parse_comment(&incomplete)
            .unwrap_err()
            .contains("invalid apiscope metadata")
    );
}
