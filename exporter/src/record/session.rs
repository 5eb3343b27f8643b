//! Turns the chunk stream into TCP conversations that tshark can follow: one per connection, with
//! the real addresses, a handshake, consistent sequence numbers, gaps where bytes were not copied,
//! and a FIN when the process closes.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::meta::{SegmentMeta, synthetic_comment};
use super::packet::{
    MAX_SEGMENT_PAYLOAD, TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, TcpSegment, encode_tcp_packet,
};
use crate::capture::{ChunkEventKind, TlsChunk};
use crate::vocabulary::{ConnectionId, Direction, MessageKind, Role};

/// Largest payload one chunk may carry in a recording; the reader enforces the same bound, so
/// anything written can be read back.
pub(crate) const MAX_CHUNK_DATA: usize = 64 << 20;

/// Server port used when the server side of a connection is unknown.
pub const SYNTHETIC_SERVER_PORT: u16 = 6443;
/// Client ports of synthetic endpoints: below Linux's ephemeral range (32768-60999), so that
/// they never look like a real client of the same server.
const SYNTHETIC_CLIENT_PORTS: std::ops::Range<u16> = 10_000..30_000;

/// Window scale announced in the handshake: 65535 << 14 is about 1 GiB, so that one-way streams
/// (watches) that the synthetic peer never acknowledges do not look like a full window.
const WINDOW_SCALE: u8 = 14;
/// SYN options: MSS, NOP, window scale (padded to 8 bytes).
const SYN_OPTIONS: [u8; 8] = {
    let mss = (MAX_SEGMENT_PAYLOAD as u16).to_be_bytes();
    [2, 4, mss[0], mss[1], 1, 3, 3, WINDOW_SCALE]
};

/// One packet ready for an Enhanced Packet Block.
pub(crate) struct SyntheticPacket {
    /// IP packet (LINKTYPE_RAW).
    pub bytes: Vec<u8>,
    /// The packet's metadata comment.
    pub comment: String,
    /// CLOCK_MONOTONIC nanoseconds of the chunk it belongs to.
    pub timestamp_ns: u64,
}

/// Sequence state of one direction of a TCP connection.
#[derive(Clone, Copy)]
struct Flow {
    next_seq: u32,
    next_ip_id: u16,
}

struct TcpConnection {
    client: SocketAddr,
    server: SocketAddr,
    local_is_client: bool,
    client_flow: Flow,
    server_flow: Flow,
}

/// One direction of a connection, as seen by its sender.
struct Sending<'a> {
    src: SocketAddr,
    dst: SocketAddr,
    flow: &'a mut Flow,
    /// What the sender acknowledges: everything the receiver sent so far.
    ack: u32,
}

impl TcpConnection {
    fn sending(&mut self, local_sends: bool) -> Sending<'_> {
        if local_sends == self.local_is_client {
            Sending {
                src: self.client,
                dst: self.server,
                flow: &mut self.client_flow,
                ack: self.server_flow.next_seq,
            }
        } else {
            Sending {
                src: self.server,
                dst: self.client,
                flow: &mut self.server_flow,
                ack: self.client_flow.next_seq,
            }
        }
    }
}

/// The TCP state of every open connection of a recording.
#[derive(Default)]
pub(crate) struct TcpSynthesizer {
    connections: HashMap<ConnectionId, TcpConnection>,
    /// Which connection uses each (client, server) pair, to keep the pairs of open connections
    /// unique: a process talking TLS to itself (the apiserver's loopback client) has both ends
    /// of one TCP connection captured as two connections.
    pairs: HashMap<(SocketAddr, SocketAddr), ConnectionId>,
    next_chunk_index: u64,
}

impl TcpSynthesizer {
    /// The packets that represent `chunk`, advancing the connection's TCP state.
    pub fn packets_for(&mut self, chunk: &TlsChunk) -> Result<Vec<SyntheticPacket>, String> {
        let copied = match &chunk.kind {
            ChunkEventKind::Data { data, .. } => data.0.len(),
            ChunkEventKind::Close | ChunkEventKind::Headers { .. } => 0,
        };
        if copied > MAX_CHUNK_DATA {
            return Err(format!(
                "chunk of {copied} bytes exceeds the {MAX_CHUNK_DATA}-byte limit"
            ));
        }
        let index = self.next_chunk_index;
        self.next_chunk_index += 1;
        let mut packets = Vec::new();
        let connection = match self.connections.entry(chunk.connection) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let (client, server) = choose_endpoints(chunk, &self.pairs);
                self.pairs.insert((client, server), chunk.connection);
                let connection = entry.insert(open_connection(chunk, index, client, server));
                push_handshake(connection, chunk.timestamp_ns, &mut packets);
                connection
            }
        };
        match &chunk.kind {
            ChunkEventKind::Data {
                direction,
                len,
                data,
            } => {
                let mut sending = connection.sending(*direction == Direction::Egress);
                let payloads: Vec<&[u8]> = if data.0.is_empty() {
                    // A chunk with nothing copied still needs a packet to carry its metadata.
                    vec![&[]]
                } else {
                    data.0.chunks(MAX_SEGMENT_PAYLOAD).collect()
                };
                let mut meta = SegmentMeta::for_chunk(chunk, index, payloads.len() as u32);
                let last = payloads.len() - 1;
                for (i, payload) in payloads.iter().enumerate() {
                    let push = i == last && !payload.is_empty();
                    let flags = if push { TCP_ACK | TCP_PSH } else { TCP_ACK };
                    meta.segment = i as u32;
                    let segment = sending.segment(flags, payload);
                    packets.push(packet(&segment, meta.to_json(), chunk.timestamp_ns));
                    sending.advance(payload.len() as u32);
                }
                // Bytes the capture did not copy: a hole in the sequence space, as tshark expects
                // from a lost segment.
                let missing = len.saturating_sub(data.0.len().try_into().unwrap_or(u32::MAX));
                sending.flow.next_seq = sending.flow.next_seq.wrapping_add(missing);
            }
            ChunkEventKind::Headers { message, .. } => {
                // An empty segment in the direction the message travelled: it keeps the hook's
                // header block in order with the connection's data, without touching sequence
                // numbers (tshark sees a bare ACK).
                let egress = (*message == MessageKind::Response) == (chunk.role == Role::Server);
                let sending = connection.sending(egress);
                let meta = SegmentMeta::for_chunk(chunk, index, 1);
                let ack = sending.segment(TCP_ACK, &[]);
                packets.push(packet(&ack, meta.to_json(), chunk.timestamp_ns));
            }
            ChunkEventKind::Close => {
                let sending = connection.sending(true);
                let meta = SegmentMeta::for_chunk(chunk, index, 1);
                let fin = sending.segment(TCP_FIN | TCP_ACK, &[]);
                packets.push(packet(&fin, meta.to_json(), chunk.timestamp_ns));
                // Forget the connection: tables stay bounded by the open connections. A chunk
                // after the close would start a new conversation (fresh handshake and ISNs).
                let pair = (connection.client, connection.server);
                self.connections.remove(&chunk.connection);
                if self.pairs.get(&pair) == Some(&chunk.connection) {
                    self.pairs.remove(&pair);
                }
            }
        }
        Ok(packets)
    }
}

impl Sending<'_> {
    /// The sender's next segment.
    fn segment<'p>(&self, flags: u8, payload: &'p [u8]) -> TcpSegment<'p> {
        TcpSegment {
            src: self.src,
            dst: self.dst,
            seq: self.flow.next_seq,
            ack: self.ack,
            flags,
            window: u16::MAX,
            ip_id: self.flow.next_ip_id,
            options: &[],
            payload,
        }
    }

    /// Accounts for a segment sent with `len` bytes of payload.
    fn advance(&mut self, len: u32) {
        self.flow.next_seq = self.flow.next_seq.wrapping_add(len);
        self.flow.next_ip_id = self.flow.next_ip_id.wrapping_add(1);
    }
}

fn packet(segment: &TcpSegment<'_>, comment: String, timestamp_ns: u64) -> SyntheticPacket {
    let mut bytes = Vec::new();
    encode_tcp_packet(segment, &mut bytes);
    SyntheticPacket {
        bytes,
        comment,
        timestamp_ns,
    }
}

fn open_connection(
    chunk: &TlsChunk,
    chunk_index: u64,
    client: SocketAddr,
    server: SocketAddr,
) -> TcpConnection {
    // Stable per connection (deterministic output), and different if a connection is reopened.
    let isns = mix(connection_hash(&chunk.connection) ^ chunk_index);
    TcpConnection {
        client,
        server,
        local_is_client: chunk.role == Role::Client,
        client_flow: Flow {
            next_seq: isns as u32,
            next_ip_id: 1,
        },
        server_flow: Flow {
            next_seq: (isns >> 32) as u32,
            next_ip_id: 1,
        },
    }
}

/// SYN, SYN-ACK, ACK; afterwards both flows' `next_seq` are past their SYN.
fn push_handshake(
    connection: &mut TcpConnection,
    timestamp_ns: u64,
    packets: &mut Vec<SyntheticPacket>,
) {
    let (client, server) = (connection.client, connection.server);
    let client_isn = connection.client_flow.next_seq;
    let server_isn = connection.server_flow.next_seq;
    // Each SYN takes one sequence number.
    let syn = TcpSegment {
        src: client,
        dst: server,
        seq: client_isn,
        ack: 0,
        flags: TCP_SYN,
        window: u16::MAX,
        ip_id: 0,
        options: &SYN_OPTIONS,
        payload: &[],
    };
    let syn_ack = TcpSegment {
        src: server,
        dst: client,
        seq: server_isn,
        ack: client_isn.wrapping_add(1),
        flags: TCP_SYN | TCP_ACK,
        ..syn
    };
    let ack = TcpSegment {
        seq: client_isn.wrapping_add(1),
        ack: server_isn.wrapping_add(1),
        flags: TCP_ACK,
        options: &[],
        ..syn
    };
    for (segment, from_client) in [(syn, true), (syn_ack, false), (ack, true)] {
        let flow = if from_client {
            &mut connection.client_flow
        } else {
            &mut connection.server_flow
        };
        let segment = TcpSegment {
            ip_id: flow.next_ip_id,
            ..segment
        };
        packets.push(packet(
            &segment,
            synthetic_comment("handshake"),
            timestamp_ns,
        ));
        flow.next_ip_id = flow.next_ip_id.wrapping_add(1);
    }
    connection.client_flow.next_seq = client_isn.wrapping_add(1);
    connection.server_flow.next_seq = server_isn.wrapping_add(1);
}

/// (client, server) addresses for a new connection: the real ones where known; otherwise, and
/// when an open connection already uses the pair, stable synthetic loopback endpoints.
fn choose_endpoints(
    chunk: &TlsChunk,
    pairs: &HashMap<(SocketAddr, SocketAddr), ConnectionId>,
) -> (SocketAddr, SocketAddr) {
    let (known_client, known_server) = if chunk.role == Role::Client {
        (chunk.local, chunk.remote)
    } else {
        (chunk.remote, chunk.local)
    };
    let ipv6 = matches!(known_client.or(known_server), Some(SocketAddr::V6(_)));
    let hash = connection_hash(&chunk.connection);
    let client = known_client.unwrap_or_else(|| synthetic_endpoint(hash, false, ipv6));
    let server = known_server.unwrap_or_else(|| synthetic_endpoint(hash, true, ipv6));
    if !pairs.contains_key(&(client, server)) {
        return (client, server);
    }
    // The pair is taken (the other end of a loopback connection): move this one to synthetic
    // IPv4 loopback addresses and client port, keeping the server port so that "decode port P
    // as HTTP/2" still applies.
    let mut candidate = (client, server);
    for salt in 1..=16u64 {
        let salted = mix(hash.wrapping_add(salt));
        let client = synthetic_endpoint(salted, false, false);
        let server = SocketAddr::new(synthetic_endpoint(salted, true, false).ip(), server.port());
        candidate = (client, server);
        if !pairs.contains_key(&candidate) {
            break;
        }
    }
    candidate
}

/// A synthetic loopback endpoint derived from `hash`: 127.x.y.z (or ::1 for IPv6 connections)
/// and, for a client, a port in `SYNTHETIC_CLIENT_PORTS`.
fn synthetic_endpoint(hash: u64, server: bool, ipv6: bool) -> SocketAddr {
    let bits = mix(hash ^ if server { 0x5345_5256 } else { 0x434c_4e54 });
    let port = if server {
        SYNTHETIC_SERVER_PORT
    } else {
        let span = u64::from(SYNTHETIC_CLIENT_PORTS.end - SYNTHETIC_CLIENT_PORTS.start);
        SYNTHETIC_CLIENT_PORTS.start + (bits % span) as u16
    };
    let ip = if ipv6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        let [a, b, c, ..] = bits.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(127, a, b, 1 + c % 254))
    };
    SocketAddr::new(ip, port)
}

fn connection_hash(connection: &ConnectionId) -> u64 {
    mix(mix(mix(u64::from(connection.pid)) ^ connection.conn_ptr) ^ connection.first_seen_ns)
}

/// splitmix64's finalizer: a fixed, well-mixing hash (unlike std's, stable across Rust versions).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
