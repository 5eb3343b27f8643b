//! Reassembly stage: the ordered byte stream of each connection and direction.
//!
//! The capture delivers a connection's chunks in the order the process made its calls (one ring
//! buffer; Go serializes a connection's Reads and, separately, its Writes), so no reordering by
//! sequence number is possible or needed. What this stage adds:
//! - turns each chunk into [`Piece`]s: the copied bytes, then a gap of known length for what the
//!   capture did not copy (a truncated large write), so the parser can skip it in frame sync;
//! - notices time running backwards within a direction (counted; the data is passed on as is);
//! - keeps the per-connection state table bounded: closed connections are removed, connections
//!   idle longer than `idle_timeout` and, over `max_connections`, the least recently active ones
//!   are evicted (counted);
//! - accounts the bytes later stages hold per connection and in total, so the pipeline can evict
//!   the heaviest connection when the total budget is exceeded.

pub mod metrics;

use std::collections::HashMap;
use std::time::Duration;

use crate::vocabulary::{ConnectionId, Direction};

pub use metrics::ReassemblyMetrics;

/// One piece of a reassembled byte stream: bytes, or a gap of known length that the capture
/// did not copy (the parser skips it and stays in frame sync when it falls inside a payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Bytes(&'a [u8]),
    Gap(u32),
}

#[derive(Clone, Debug)]
pub struct ReassemblyConfig {
    /// Connections tracked at once; beyond, the least recently active is evicted.
    pub max_connections: usize,
    /// A connection with no event for this long is evicted (its decoder state is lost).
    pub idle_timeout: Duration,
    /// Bytes later stages may hold for one connection (partial frames, kept bodies).
    pub max_buffered_bytes_per_connection: usize,
    /// Bytes later stages may hold for all connections together.
    pub max_buffered_bytes_total: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_connections: 8192,
            // Watches send a bookmark about once a minute; an hour of silence is a dead peer.
            idle_timeout: Duration::from_secs(3600),
            max_buffered_bytes_per_connection: 8 << 20,
            max_buffered_bytes_total: 256 << 20,
        }
    }
}

/// The pieces of one data chunk: the copied bytes, then the uncopied rest as a gap.
pub fn pieces(data: &[u8], len: u32) -> impl Iterator<Item = Piece<'_>> {
    let copied = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let missing = len.saturating_sub(copied);
    let bytes = (!data.is_empty()).then_some(Piece::Bytes(data));
    let gap = (missing > 0).then_some(Piece::Gap(missing));
    bytes.into_iter().chain(gap)
}

/// Per-connection bookkeeping of the stage.
#[derive(Clone, Debug)]
struct Tracked {
    last_event_ns: u64,
    last_ns_by_direction: [u64; 2],
    buffered_bytes: usize,
}

/// The connection table: which connections are live, how recently, and how much they hold.
pub struct Reassembler {
    config: ReassemblyConfig,
    connections: HashMap<ConnectionId, Tracked>,
    buffered_total: usize,
}

/// Why a connection left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    TooManyConnections,
    OverMemoryBudget,
}

impl Reassembler {
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler {
            config,
            connections: HashMap::new(),
            buffered_total: 0,
        }
    }

    pub fn config(&self) -> &ReassemblyConfig {
        &self.config
    }

    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    pub fn buffered_total(&self) -> usize {
        self.buffered_total
    }

    /// Records an event on `connection`. Returns the connections that must be evicted to make
    /// room for it (least recently active first), if the table is full.
    pub fn observe(
        &mut self,
        connection: ConnectionId,
        direction: Option<Direction>,
        timestamp_ns: u64,
        metrics: &ReassemblyMetrics,
    ) -> Vec<(ConnectionId, Eviction)> {
        let mut evict = Vec::new();
        if !self.connections.contains_key(&connection)
            && self.connections.len() >= self.config.max_connections
        {
            if let Some(oldest) = self.least_recently_active() {
                self.forget(&oldest);
                metrics.evicted_too_many.inc();
                evict.push((oldest, Eviction::TooManyConnections));
            }
        }
        let tracked = self.connections.entry(connection).or_insert(Tracked {
            last_event_ns: timestamp_ns,
            last_ns_by_direction: [0; 2],
            buffered_bytes: 0,
        });
        tracked.last_event_ns = tracked.last_event_ns.max(timestamp_ns);
        if let Some(direction) = direction {
            let last = &mut tracked.last_ns_by_direction[direction as usize];
            if timestamp_ns < *last {
                metrics.out_of_order.inc();
            }
            *last = (*last).max(timestamp_ns);
        }
        evict
    }

    /// Updates what later stages hold for `connection`. Returns connections to evict (the
    /// connection itself if it alone is over its limit; the heaviest ones while the total is
    /// over budget).
    pub fn account(
        &mut self,
        connection: ConnectionId,
        buffered_bytes: usize,
        metrics: &ReassemblyMetrics,
    ) -> Vec<(ConnectionId, Eviction)> {
        let Some(tracked) = self.connections.get_mut(&connection) else {
            return Vec::new();
        };
        self.buffered_total = self.buffered_total - tracked.buffered_bytes + buffered_bytes;
        tracked.buffered_bytes = buffered_bytes;
        let mut evict = Vec::new();
        if buffered_bytes > self.config.max_buffered_bytes_per_connection {
            self.forget(&connection);
            metrics.evicted_memory.inc();
            evict.push((connection, Eviction::OverMemoryBudget));
        }
        while self.buffered_total > self.config.max_buffered_bytes_total {
            let Some(heaviest) = self
                .connections
                .iter()
                .max_by_key(|(_, t)| t.buffered_bytes)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.forget(&heaviest);
            metrics.evicted_memory.inc();
            evict.push((heaviest, Eviction::OverMemoryBudget));
        }
        metrics.buffered_bytes.set(self.buffered_total as i64);
        evict
    }

    /// The connection closed: forget it.
    pub fn close(&mut self, connection: &ConnectionId) {
        self.forget(connection);
    }

    /// Connections idle for longer than the timeout at `now_ns`, removed from the table.
    pub fn evict_idle(&mut self, now_ns: u64, metrics: &ReassemblyMetrics) -> Vec<ConnectionId> {
        let timeout = u64::try_from(self.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let idle: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, t)| now_ns.saturating_sub(t.last_event_ns) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in &idle {
            self.forget(id);
            metrics.evicted_idle.inc();
        }
        idle
    }

    fn forget(&mut self, connection: &ConnectionId) {
        if let Some(tracked) = self.connections.remove(connection) {
            self.buffered_total -= tracked.buffered_bytes;
        }
    }

    fn least_recently_active(&self) -> Option<ConnectionId> {
        self.connections
            .iter()
            .min_by_key(|(_, t)| t.last_event_ns)
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests;
