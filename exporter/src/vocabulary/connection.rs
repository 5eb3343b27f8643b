//! Which connection, which side, which way: the names every stage uses for a connection.

use serde::{Deserialize, Serialize};

/// Which way the bytes went, seen from the traced process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Written by the process (`tls.Conn.Write`).
    Egress,
    /// Read by the process (`tls.Conn.Read`).
    Ingress,
}

/// The process's side of the TLS connection (`tls.Conn.isClient`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The process accepted the connection: incoming API requests.
    #[default]
    Server,
    /// The process dialed out: etcd, webhooks, aggregated APIs, its own loopback client.
    Client,
}

/// Identity of one connection: the `*tls.Conn` address is reused after garbage collection, so it is
/// paired with the process and the time the connection was first seen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct ConnectionId {
    pub pid: u32,
    pub conn_ptr: u64,
    pub first_seen_ns: u64,
}
