//! Reassembly stage: the ordered byte stream of each connection and direction.
//!
//! The capture delivers a connection's chunks in the order the process made its calls (one ring
//! buffer; Go serializes a connection's Reads and, separately, its Writes), so no reordering by
//! sequence number is possible or needed. What this stage adds:
//! - turns each chunk into [`Piece`]s: the copied bytes, then a gap of known length for what the
//!   capture did not copy (a truncated large write), so the parser can skip it in frame sync;
//! - notices time running backwards within a direction (counted; the data is passed on as is);
//! - owns the one connection table ([`ConnectionTable`]), with every later stage's state per
//!   connection in it, and keeps it bounded: closed connections are removed, connections idle
//!   longer than `idle_timeout` and, over `max_connections`, the least recently active ones are
//!   evicted (counted per reason);
//! - accounts the bytes later stages hold per connection and in total, evicting the heaviest
//!   connection when the total budget is exceeded.

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

/// One connection's row: this stage's bookkeeping and the later stages' state (`S`, made when
/// the connection's first data or header block arrives).
#[derive(Clone, Debug)]
struct Tracked<S> {
    last_event_ns: u64,
    last_ns_by_direction: [u64; 2],
    buffered_bytes: usize,
    state: Option<S>,
}

/// The connection table, the only one: which connections are live, how recently, how much the
/// later stages hold for each, and those stages' per-connection state. Eviction (idle, count,
/// memory) happens here and nowhere else, counted per reason; what is evicted is handed back
/// with its state so the owner can end its open exchanges.
pub struct ConnectionTable<S> {
    config: ReassemblyConfig,
    connections: HashMap<ConnectionId, Tracked<S>>,
    buffered_total: usize,
}

/// Why a connection left the table before it closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    Idle,
    TooManyConnections,
    OverMemoryBudget,
}

/// A connection evicted from the table, with the later stages' state it had.
#[derive(Debug)]
pub struct Evicted<S> {
    pub connection: ConnectionId,
    pub reason: Eviction,
    pub state: Option<S>,
}

impl<S> ConnectionTable<S> {
    pub fn new(config: ReassemblyConfig) -> Self {
        ConnectionTable {
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

    /// Records an event on `connection`. Returns the connections evicted to make room for it
    /// (least recently active first), if the table is full.
    pub fn observe(
        &mut self,
        connection: ConnectionId,
        direction: Option<Direction>,
        timestamp_ns: u64,
        metrics: &ReassemblyMetrics,
    ) -> Vec<Evicted<S>> {
        let mut evicted = Vec::new();
        if !self.connections.contains_key(&connection)
            && self.connections.len() >= self.config.max_connections
        {
            if let Some(oldest) = self.least_recently_active() {
                metrics.evicted_too_many.inc();
                evicted.extend(self.evict(oldest, Eviction::TooManyConnections));
            }
        }
        let tracked = self.connections.entry(connection).or_insert(Tracked {
            last_event_ns: timestamp_ns,
            last_ns_by_direction: [0; 2],
            buffered_bytes: 0,
            state: None,
        });
        tracked.last_event_ns = tracked.last_event_ns.max(timestamp_ns);
        if let Some(direction) = direction {
            let last = &mut tracked.last_ns_by_direction[direction as usize];
            if timestamp_ns < *last {
                metrics.out_of_order.inc();
            }
            *last = (*last).max(timestamp_ns);
        }
        evicted
    }

    /// The later stages' state of an observed connection, made by `make` the first time.
    /// `None` if the connection is not in the table (not observed, or evicted since).
    pub fn state_or_insert_with(
        &mut self,
        connection: &ConnectionId,
        make: impl FnOnce() -> S,
    ) -> Option<&mut S> {
        let tracked = self.connections.get_mut(connection)?;
        Some(tracked.state.get_or_insert_with(make))
    }

    /// The state of every connection that has one.
    pub fn states(&self) -> impl Iterator<Item = &S> {
        self.connections.values().filter_map(|t| t.state.as_ref())
    }

    /// Updates what later stages hold for `connection`. Returns the connections evicted (the
    /// connection itself if it alone is over its limit; the heaviest ones while the total is
    /// over budget).
    pub fn account(
        &mut self,
        connection: ConnectionId,
        buffered_bytes: usize,
        metrics: &ReassemblyMetrics,
    ) -> Vec<Evicted<S>> {
        let Some(tracked) = self.connections.get_mut(&connection) else {
            return Vec::new();
        };
        self.buffered_total = self.buffered_total - tracked.buffered_bytes + buffered_bytes;
        tracked.buffered_bytes = buffered_bytes;
        let mut evicted = Vec::new();
        if buffered_bytes > self.config.max_buffered_bytes_per_connection {
            metrics.evicted_memory.inc();
            evicted.extend(self.evict(connection, Eviction::OverMemoryBudget));
        }
        while self.buffered_total > self.config.max_buffered_bytes_total {
            let Some(heaviest) = self
                .connections
                .iter()
                .max_by_key(|(id, t)| (t.buffered_bytes, first_seen_order(id)))
                .map(|(id, _)| *id)
            else {
                break;
            };
            metrics.evicted_memory.inc();
            evicted.extend(self.evict(heaviest, Eviction::OverMemoryBudget));
        }
        metrics.buffered_bytes.set(self.buffered_total as i64);
        evicted
    }

    /// The connection closed: forget it, handing back its state.
    pub fn close(&mut self, connection: &ConnectionId) -> Option<S> {
        self.forget(connection)?.state
    }

    /// Removes every connection (end of a recording, shutdown), with its state.
    pub fn drain(&mut self) -> Vec<(ConnectionId, Option<S>)> {
        self.buffered_total = 0;
        let mut drained: Vec<(ConnectionId, Option<S>)> = self
            .connections
            .drain()
            .map(|(id, tracked)| (id, tracked.state))
            .collect();
        // In the order the connections were first seen, not the hash map's: a replay's output
        // is the same on every run.
        drained.sort_unstable_by_key(|(id, _)| first_seen_order(id));
        drained
    }

    /// Connections idle for longer than the timeout at `now_ns`, removed from the table.
    pub fn evict_idle(&mut self, now_ns: u64, metrics: &ReassemblyMetrics) -> Vec<Evicted<S>> {
        let timeout = u64::try_from(self.config.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let mut idle: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, t)| now_ns.saturating_sub(t.last_event_ns) > timeout)
            .map(|(id, _)| *id)
            .collect();
        idle.sort_unstable_by_key(first_seen_order);
        let mut evicted = Vec::new();
        for id in idle {
            metrics.evicted_idle.inc();
            evicted.extend(self.evict(id, Eviction::Idle));
        }
        evicted
    }

    fn evict(&mut self, connection: ConnectionId, reason: Eviction) -> Option<Evicted<S>> {
        let tracked = self.forget(&connection)?;
        Some(Evicted {
            connection,
            reason,
            state: tracked.state,
        })
    }

    fn forget(&mut self, connection: &ConnectionId) -> Option<Tracked<S>> {
        let tracked = self.connections.remove(connection)?;
        self.buffered_total -= tracked.buffered_bytes;
        Some(tracked)
    }

    fn least_recently_active(&self) -> Option<ConnectionId> {
        self.connections
            .iter()
            .min_by_key(|(id, t)| (t.last_event_ns, first_seen_order(id)))
            .map(|(id, _)| *id)
    }
}

/// A total order on connections that does not depend on the hash map's iteration order.
fn first_seen_order(id: &ConnectionId) -> (u64, u32, u64) {
    (id.first_seen_ns, id.pid, id.conn_ptr)
}

#[cfg(test)]
mod tests;
