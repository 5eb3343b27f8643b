//! The live bus: every finished request (after the capture policy) gets an increasing id, is
//! serialized once, kept in a history bounded in count and bytes, and broadcast to the live
//! subscribers through a bounded ring. A subscriber the ring overtakes learns how many rows it
//! missed; nothing waits for a subscriber, and nothing here grows without bound.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;

use super::metrics::LiveMetrics;
use crate::filter::Filter;
use crate::k8s::ApiRequest;
use crate::k8s::api_request::CaptureLevel;
use crate::sinks::Sink;

/// `--ui-max-history`
pub const DEFAULT_MAX_HISTORY: usize = 10_000;
/// `--ui-max-history-bytes`
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 64 << 20;
/// `--ui-subscriber-queue`: rows a subscriber may fall behind before it is told it missed some.
pub const DEFAULT_SUBSCRIBER_QUEUE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveLimits {
    pub max_history: usize,
    pub max_history_bytes: usize,
    pub subscriber_queue: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            max_history: DEFAULT_MAX_HISTORY,
            max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
            subscriber_queue: DEFAULT_SUBSCRIBER_QUEUE,
        }
    }
}

/// One published request: the struct (for filters and the detail endpoint) and its protocol
/// `Row` JSON, serialized once for every subscriber.
#[derive(Debug)]
pub struct LiveRow {
    pub id: u64,
    pub request: ApiRequest,
    /// `{"id":N,"request":{...}}`
    pub json: Box<str>,
}

impl LiveRow {
    pub fn new(id: u64, request: ApiRequest) -> LiveRow {
        #[derive(serde::Serialize)]
        struct Row<'a> {
            id: u64,
            request: &'a ApiRequest,
        }
        let json = serde_json::to_string(&Row {
            id,
            request: &request,
        })
        .expect("ApiRequest serializes (plain data)")
        .into_boxed_str();
        LiveRow { id, request, json }
    }

    /// What the row costs to hold, as counted against the byte bound: its JSON and about as much
    /// again for the struct's own strings, plus the struct.
    pub fn cost_bytes(&self) -> usize {
        2 * self.json.len() + std::mem::size_of::<LiveRow>()
    }
}

#[derive(Default)]
struct History {
    rows: VecDeque<Arc<LiveRow>>,
    bytes: usize,
    next_id: u64,
}

/// The history and the live ring, shared by the sink (publishing on the decode thread) and the
/// server's connections (reading on the runtime).
pub struct LiveBus {
    limits: LiveLimits,
    history: Mutex<History>,
    live: broadcast::Sender<Arc<LiveRow>>,
    metrics: LiveMetrics,
}

/// A subscription's start: the history that matched, then the live rows that follow it with no
/// gap and no overlap.
pub struct Subscription {
    pub history: Vec<Arc<LiveRow>>,
    pub live: broadcast::Receiver<Arc<LiveRow>>,
}

/// Which history a subscriber asks for (the protocol's `subscribe.history`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    pub limit: usize,
    pub since_unix_nano: Option<u64>,
}

impl LiveBus {
    pub fn new(limits: LiveLimits) -> Arc<LiveBus> {
        let (live, _) = broadcast::channel(limits.subscriber_queue.max(1));
        Arc::new(LiveBus {
            limits,
            history: Mutex::new(History {
                next_id: 1,
                ..History::default()
            }),
            live,
            metrics: LiveMetrics::default(),
        })
    }

    pub fn limits(&self) -> LiveLimits {
        self.limits
    }

    pub fn metrics(&self) -> &LiveMetrics {
        &self.metrics
    }

    /// Adds one request; never blocks on a subscriber (the broadcast ring overwrites its oldest
    /// row instead). Returns the id given.
    pub fn publish(&self, request: ApiRequest) -> u64 {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let id = history.next_id;
        history.next_id += 1;
        let row = Arc::new(LiveRow::new(id, request));
        history.bytes += row.cost_bytes();
        history.rows.push_back(row.clone());
        while history.rows.len() > self.limits.max_history
            || (history.bytes > self.limits.max_history_bytes && history.rows.len() > 1)
        {
            let Some(old) = history.rows.pop_front() else {
                break;
            };
            history.bytes -= old.cost_bytes();
            self.metrics.history_evicted();
        }
        // A row bigger than the whole byte bound is not kept, but still goes out live.
        if history.bytes > self.limits.max_history_bytes {
            if let Some(old) = history.rows.pop_front() {
                history.bytes -= old.cost_bytes();
                self.metrics.history_evicted();
            }
        }
        self.metrics.set_history(history.rows.len(), history.bytes);
        self.metrics.published();
        // Sent under the lock, so a subscriber's history snapshot and its live receiver meet
        // exactly. No receiver is not an error: nobody is watching.
        let _ = self.live.send(row);
        id
    }

    /// The history matching `filter` as asked (oldest first, at most `limit`, the bus's
    /// `max_history` and `max_history_bytes`), and the live rows after it.
    pub fn subscribe(&self, filter: &Filter, asked: HistoryRequest) -> Subscription {
        let (snapshot, live) = {
            let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            let snapshot: Vec<Arc<LiveRow>> = history.rows.iter().cloned().collect();
            (snapshot, self.live.subscribe())
        };
        // Filtering runs after the lock is released: the decode thread never waits for it.
        let limit = asked.limit.min(self.limits.max_history);
        let mut picked = Vec::new();
        let mut bytes = 0usize;
        let mut take = |row: &Arc<LiveRow>| -> bool {
            if picked.len() >= limit || bytes + row.json.len() > self.limits.max_history_bytes {
                return false;
            }
            if filter.matches(&row.request) {
                bytes += row.json.len();
                picked.push(row.clone());
            }
            true
        };
        match asked.since_unix_nano {
            Some(since) => {
                // Publication order is end order only nearly (requests end on several
                // connections): the first row at or after `since`, then everything after it.
                let start = snapshot
                    .iter()
                    .position(|row| row.request.end_unix_nano >= since)
                    .unwrap_or(snapshot.len());
                for row in &snapshot[start..] {
                    if !take(row) {
                        break;
                    }
                }
            }
            None => {
                for row in snapshot.iter().rev() {
                    if !take(row) {
                        break;
                    }
                }
                picked.reverse();
            }
        }
        Subscription {
            history: picked,
            live,
        }
    }

    /// One request by id, while the history still holds it.
    pub fn get(&self, id: u64) -> Option<Arc<LiveRow>> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let index = history.rows.binary_search_by_key(&id, |row| row.id).ok()?;
        history.rows.get(index).cloned()
    }
}

/// The [`Sink`] that feeds a [`LiveBus`].
pub struct LiveSink {
    bus: Arc<LiveBus>,
}

impl LiveSink {
    pub fn new(bus: Arc<LiveBus>) -> LiveSink {
        LiveSink { bus }
    }
}

impl Sink for LiveSink {
    fn send(&mut self, request: &ApiRequest) -> Result<()> {
        // Level None: counted in metrics only, like the spans and log records.
        if request.capture_level != CaptureLevel::None {
            self.bus.publish(request.clone());
        }
        Ok(())
    }

    fn register(&self, registry: &mut Registry) {
        self.bus.metrics().register(registry);
    }
}
