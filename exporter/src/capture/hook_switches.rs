//! Per-connection switches of the HTTP/2 header hooks, from the decoder to the kernel side.
//!
//! The header hooks exist for connections older than the capture, whose HPACK tables the wire
//! decoder never saw. On every other connection they cost a uprobe hit and a copy of the header
//! block out of Go memory per request and response (about two thirds of a GET's program time)
//! for data the wire already gives. So the decoder reports when it knows a connection's tables
//! in both directions (`off`: the hooks return at once for it), and when it lost them (`on`:
//! for the rest of that connection, since a loss the decoder cannot see may have happened too).
//! The kernel side switches a connection back on by itself when it loses its bytes (ring
//! buffer full, truncated, unreadable), so a late `off` from a decoder that is behind cannot
//! override a loss it has not reached yet: `off` only ever creates an entry.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::vocabulary::ConnectionId;

/// Switches not yet applied, at most one per connection (the later wins, and `on` beats a
/// pending `off`). Bounded: past `MAX_PENDING` new `off`s are not queued (the hooks simply
/// stay on, which is always correct); an `on` is always kept.
#[derive(Debug, Default)]
pub struct HookSwitches {
    pending: Mutex<HashMap<(u32, u64), HookState>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookState {
    /// The wire decoder knows the connection's HPACK tables: hooks off for it.
    Off,
    /// The wire decoder lost them (or forgot the connection): hooks on until it closes.
    On,
}

const MAX_PENDING: usize = 65536;

impl HookSwitches {
    pub fn switch(&self, connection: &ConnectionId, state: HookState) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (connection.pid, connection.conn_ptr);
        match (state, pending.get(&key)) {
            (HookState::Off, Some(HookState::On)) => {}
            (HookState::Off, None) if pending.len() >= MAX_PENDING => {}
            _ => {
                pending.insert(key, state);
            }
        }
    }

    /// The switches to apply now, keyed by (pid, `*tls.Conn`).
    pub fn take(&self) -> HashMap<(u32, u64), HookState> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(conn_ptr: u64) -> ConnectionId {
        ConnectionId {
            pid: 7,
            conn_ptr,
            first_seen_ns: 1,
        }
    }

    #[test]
    fn on_beats_a_pending_off_and_is_never_dropped() {
        let switches = HookSwitches::default();
        switches.switch(&connection(1), HookState::Off);
        switches.switch(&connection(1), HookState::On);
        switches.switch(&connection(1), HookState::Off);
        switches.switch(&connection(2), HookState::Off);
        let taken = switches.take();
        assert_eq!(taken[&(7, 1)], HookState::On);
        assert_eq!(taken[&(7, 2)], HookState::Off);
        assert!(switches.take().is_empty());
    }

    #[test]
    fn past_the_bound_only_on_is_queued() {
        let switches = HookSwitches::default();
        for conn in 0..MAX_PENDING as u64 {
            switches.switch(&connection(conn), HookState::Off);
        }
        switches.switch(&connection(u64::MAX), HookState::Off);
        switches.switch(&connection(u64::MAX - 1), HookState::On);
        let taken = switches.take();
        assert_eq!(taken.len(), MAX_PENDING + 1);
        assert_eq!(taken[&(7, u64::MAX - 1)], HookState::On);
        assert!(!taken.contains_key(&(7, u64::MAX)));
    }
}
