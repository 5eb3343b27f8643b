//! Recording: the chunk stream as a pcapng file that Wireshark / tshark open and dissect as
//! HTTP/2 with no keys, and that `replay` reads back chunk for chunk.
//!
//! Each connection becomes a synthetic TCP conversation (LINKTYPE_RAW IPv4/IPv6 packets) with
//! the connection's real addresses: the TCP client is the remote peer for `Role::Server` and the
//! process for `Role::Client`; egress flows local -> remote. A connection's first chunk is
//! preceded by a SYN / SYN-ACK / ACK handshake; a close is a FIN from the process's side. Bytes
//! the capture did not copy (`data.len() < len`) advance the sequence number without being
//! written, so tshark reports a missing segment there.
//!
//! When an address is unknown, a stable synthetic loopback endpoint derived from the
//! `ConnectionId` stands in (127.x.y.z, or ::1 next to a known IPv6 peer; server port
//! [`SYNTHETIC_SERVER_PORT`]). When two open connections would share a 4-tuple (a process that
//! talks TLS to itself over loopback has both ends captured), the later one gets synthetic
//! IPv4 loopback addresses and client port, keeping its server port.
//!
//! Packet times are wall-clock (monotonic chunk time plus the realtime - monotonic offset taken
//! when the writer was created); the exact monotonic time and every other chunk field travel in
//! each packet's comment as JSON (see `meta.rs` for the format), which is what the reader uses.

mod meta;
mod packet;
mod pcapng;
mod session;

#[cfg(test)]
mod tests;

pub use pcapng::{ChunkReader, PcapngWriter, ReadError, read_chunks, realtime_minus_monotonic_ns};
pub use session::SYNTHETIC_SERVER_PORT;
