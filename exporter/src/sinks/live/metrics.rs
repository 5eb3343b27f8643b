//! The live view's own metrics (`apiscope_live_*`): what the bus holds, what it dropped and why,
//! and who was refused.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Why rows did not reach a subscriber.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// The subscriber read too slowly and the broadcast ring overtook it (it got a `dropped`).
    SlowClient,
    /// The subscriber did not take a batch within the write timeout and was disconnected.
    WriteTimeout,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SlowClient => "slow_client",
            DropReason::WriteTimeout => "write_timeout",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Default)]
pub struct LiveMetrics {
    published: Counter,
    /// Old rows pushed out of the history by its count or byte bound (they were delivered live).
    history_evicted: Counter,
    history_rows: Gauge,
    history_bytes: Gauge,
    dropped: Family<ReasonLabel, Counter>,
    subscribers: Gauge,
    auth_failures: Counter,
    filter_errors: Counter,
}

impl LiveMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("apiscope_live");
        r.register(
            "published_requests",
            "Requests published on the live bus (after the capture policy)",
            self.published.clone(),
        );
        r.register(
            "history_evicted_requests",
            "Requests pushed out of the live history by its count or byte bound",
            self.history_evicted.clone(),
        );
        r.register(
            "history_requests",
            "Requests held in the live history",
            self.history_rows.clone(),
        );
        r.register_with_unit(
            "history",
            "Bytes held in the live history (as counted against --ui-max-history-bytes)",
            Unit::Bytes,
            self.history_bytes.clone(),
        );
        r.register(
            "dropped_requests",
            "Requests a live subscriber did not get, by reason (slow_client, write_timeout)",
            self.dropped.clone(),
        );
        r.register(
            "subscribers",
            "Live WebSocket connections open now",
            self.subscribers.clone(),
        );
        r.register(
            "auth_failures",
            "Live view requests refused for a missing or wrong bearer token",
            self.auth_failures.clone(),
        );
        r.register(
            "filter_errors",
            "Subscriptions refused because their filter did not parse",
            self.filter_errors.clone(),
        );
    }

    pub fn published(&self) {
        self.published.inc();
    }

    pub fn history_evicted(&self) {
        self.history_evicted.inc();
    }

    pub fn set_history(&self, rows: usize, bytes: usize) {
        self.history_rows
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
        self.history_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn dropped(&self, reason: DropReason, count: u64) {
        self.dropped
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc_by(count);
    }

    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        self.dropped
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .get()
    }

    pub fn subscriber_opened(&self) {
        self.subscribers.inc();
    }

    pub fn subscriber_closed(&self) {
        self.subscribers.dec();
    }

    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.get()
    }

    pub fn filter_error(&self) {
        self.filter_errors.inc();
    }
}
