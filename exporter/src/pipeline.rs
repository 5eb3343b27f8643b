//! The decode pipeline: chunks in, [`ApiRequest`]s out, through reassembly -> http -> exchange ->
//! k8s. The same code runs on live capture and on a replayed recording.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::capture::hook_switches::{HookState, HookSwitches};
use crate::capture::{ChunkEventKind, TlsChunk};
use crate::exchange::{
    ConnectionFacts, Ending, Exchange, ExchangeAssembler, ExchangeLimits, ExchangeMetrics,
};
use crate::http::{HttpEvent, Protocol, ProtocolDecoder, ProtocolLimits};
use crate::k8s::ApiRequest;
use crate::k8s::body::BodyLimits;
use crate::k8s::open_requests::OpenRequest;
use crate::k8s::release::KubernetesRelease;
use crate::k8s::watch::WatchStreams;
use crate::policy::{CaptureLimits, CapturePolicy};
use crate::reassembly::{ConnectionTable, Evicted, ReassemblyConfig, ReassemblyMetrics, pieces};
use crate::vocabulary::{Role, parse_duration};

/// Decoder settings (`apiscope capture` / `apiscope replay` flags).
#[derive(Args, Clone, Debug)]
pub struct DecodeConfig {
    /// Body bytes kept per message for decoding (object names, Status, list sizes); the rest is
    /// counted but not kept.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Hard cap on a gzip-decoded body.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_decompressed_bytes: usize,
    /// Bytes the decoder may hold for one connection (partial frames and kept bodies).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_connection_bytes: usize,
    /// Bytes the decoder may hold for all connections together.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_decoder_bytes: usize,
    /// Connections decoded at once.
    #[arg(long, default_value_t = 8192)]
    pub max_decoded_connections: usize,
    /// A connection silent for this long is forgotten.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Also decode the traced process's outgoing connections (etcd, webhooks, its loopback
    /// client) and report them with `role: client`.
    #[arg(long)]
    pub include_outgoing: bool,
    /// Capture policy (YAML or JSON, in the style of an audit policy): which requests are
    /// reported and with which bodies. Without it, every request at level Metadata (no bodies).
    #[arg(long, value_name = "FILE")]
    pub capture_policy: Option<PathBuf>,
    /// Longest captured body text (levels Request and RequestResponse); longer bodies are cut
    /// and marked `truncated`.
    #[arg(long, default_value_t = 64 << 10)]
    pub max_captured_body_bytes: usize,
    /// The traced apiserver's Kubernetes release (e.g. 1.20.2), whose labelling rules the
    /// request metrics follow. Default: learnt from the apiserver's own loopback requests
    /// (`User-Agent: kube-apiserver/v1.X.Y`); the newest rules until then.
    #[arg(long, value_name = "VERSION", value_parser = parse_kubernetes_release)]
    pub kubernetes_version: Option<KubernetesRelease>,
    /// Keep each request's HTTP/2 frame list (set by `--serve-ui`, the only output showing it).
    #[arg(skip)]
    pub report_frames: bool,
}

fn parse_kubernetes_release(text: &str) -> Result<KubernetesRelease, String> {
    KubernetesRelease::parse(text).ok_or_else(|| format!("not a Kubernetes release: {text:?}"))
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            max_body_bytes: 1 << 20,
            max_decompressed_bytes: 16 << 20,
            max_connection_bytes: 8 << 20,
            max_decoder_bytes: 256 << 20,
            max_decoded_connections: 8192,
            idle_timeout: Duration::from_secs(3600),
            include_outgoing: false,
            capture_policy: None,
            max_captured_body_bytes: 64 << 10,
            kubernetes_version: None,
            report_frames: false,
        }
    }
}

/// Metrics of the decode stages.
#[derive(Default)]
pub struct DecodeMetrics {
    pub reassembly: ReassemblyMetrics,
    pub exchange: ExchangeMetrics,
    pub api_requests: Counter,
    pub incomplete_requests: Counter,
    pub outgoing_bytes_skipped: Counter,
    pub body_decode_errors: Counter,
}

impl DecodeMetrics {
    pub fn register(&self, registry: &mut Registry) {
        self.reassembly.register(registry);
        self.exchange.register(registry);
        let r = registry.sub_registry_with_prefix("apiscope_decode");

        r.register(
            "api_requests",
            "API requests decoded (complete or not)",
            self.api_requests.clone(),
        );
        r.register(
            "incomplete_requests",
            "API requests that ended without a complete response (reset, close, eviction)",
            self.incomplete_requests.clone(),
        );
        r.register_with_unit(
            "outgoing_skipped",
            "Bytes of the traced process's outgoing connections not decoded (see --include-outgoing)",
            prometheus_client::registry::Unit::Bytes,
            self.outgoing_bytes_skipped.clone(),
        );
        r.register(
            "body_errors",
            "Bodies that could not be decoded (bad JSON or protobuf, gzip over the cap...)",
            self.body_decode_errors.clone(),
        );
    }
}

struct ConnectionState {
    decoder: ProtocolDecoder,
    exchanges: ExchangeAssembler,
    /// What the kernel side was last told about this connection's header hooks (`None`:
    /// nothing, they are on).
    hooks: Option<HookState>,
}

/// Chunks in, API requests out.
pub struct DecodePipeline {
    config: DecodeConfig,
    realtime_offset_ns: i64,
    /// The one connection table: every stage's state of each connection.
    connections: ConnectionTable<ConnectionState>,
    events: Vec<HttpEvent>,
    finished: Vec<Exchange>,
    body_limits: BodyLimits,
    watches: Arc<WatchStreams>,
    policy: CapturePolicy,
    capture_limits: CaptureLimits,
    /// Live capture only: where to say which connections need the header hooks.
    hook_switches: Option<Arc<HookSwitches>>,
}

impl DecodePipeline {
    /// `realtime_offset_ns` is CLOCK_REALTIME - CLOCK_MONOTONIC of the capturing host. Uses the
    /// default capture policy; `config.capture_policy` is read by [`CapturePolicy::from_flag`]
    /// and given to [`DecodePipeline::with_policy`] (reading a file can fail, this cannot).
    pub fn new(config: DecodeConfig, realtime_offset_ns: i64) -> Self {
        DecodePipeline::with_policy(config, realtime_offset_ns, CapturePolicy::default())
    }

    pub fn with_policy(
        config: DecodeConfig,
        realtime_offset_ns: i64,
        policy: CapturePolicy,
    ) -> Self {
        let connections = ConnectionTable::new(ReassemblyConfig {
            max_connections: config.max_decoded_connections,
            idle_timeout: config.idle_timeout,
            max_buffered_bytes_per_connection: config.max_connection_bytes,
            max_buffered_bytes_total: config.max_decoder_bytes,
        });
        let body_limits = BodyLimits {
            max_decoded_bytes: config.max_decompressed_bytes,
            ..BodyLimits::default()
        };
        let capture_limits = CaptureLimits {
            max_captured_body_bytes: config.max_captured_body_bytes,
        };
        DecodePipeline {
            config,
            realtime_offset_ns,
            connections,
            events: Vec::new(),
            finished: Vec::new(),
            watches: Arc::new(WatchStreams {
                limits: body_limits.clone(),
            }),
            body_limits,
            policy,
            capture_limits,
            hook_switches: None,
        }
    }

    /// Reports to `switches` the server connections whose header blocks the wire decodes alone
    /// (their header hooks can be off) and those that lost that (hooks back on).
    pub fn report_hook_switches(&mut self, switches: Arc<HookSwitches>) {
        self.hook_switches = Some(switches);
    }

    pub fn set_realtime_offset(&mut self, realtime_offset_ns: i64) {
        self.realtime_offset_ns = realtime_offset_ns;
    }

    /// Feeds one chunk; finished requests are appended to `out`.
    pub fn push(&mut self, chunk: &TlsChunk, metrics: &DecodeMetrics, out: &mut Vec<ApiRequest>) {
        if chunk.role == Role::Client && !self.config.include_outgoing {
            if let Some((_, len, _)) = chunk.payload() {
                metrics.outgoing_bytes_skipped.inc_by(u64::from(len));
            }
            return;
        }
        let id = chunk.connection;
        let direction = chunk.payload().map(|(direction, _, _)| direction);
        let evicted =
            self.connections
                .observe(id, direction, chunk.timestamp_ns, &metrics.reassembly);
        self.end_evicted(evicted);
        let (config, watches) = (&self.config, &self.watches);
        let new_state = || connection_state(config, watches, chunk);
        match &chunk.kind {
            ChunkEventKind::Data {
                direction,
                len,
                data,
            } => {
                // Observed just above, so in the table.
                let Some(state) = self.connections.state_or_insert_with(&id, new_state) else {
                    return;
                };
                for piece in pieces(&data.0, *len) {
                    if let crate::reassembly::Piece::Gap(n) = piece {
                        metrics.reassembly.gap_bytes.inc_by(u64::from(n));
                    }
                    state
                        .decoder
                        .feed(*direction, chunk.timestamp_ns, piece, &mut self.events);
                }
                state
                    .exchanges
                    .set_protocol(protocol_label(state.decoder.protocol()));
                if let Some(switches) = &self.hook_switches {
                    switch_hooks(state, chunk, switches);
                }
                for event in self.events.drain(..) {
                    state
                        .exchanges
                        .on_event(event, &metrics.exchange, &mut self.finished);
                }
                let held = state.decoder.buffered_bytes() + state.exchanges.buffered_bytes();
                let evicted = self.connections.account(id, held, &metrics.reassembly);
                self.end_evicted(evicted);
            }
            ChunkEventKind::Headers {
                message,
                stream_id,
                fields,
                ..
            } => {
                let Some(state) = self.connections.state_or_insert_with(&id, new_state) else {
                    return;
                };
                state.exchanges.on_hook_headers(
                    *stream_id,
                    *message,
                    fields.clone(),
                    chunk.timestamp_ns,
                    &metrics.exchange,
                    &mut self.finished,
                );
            }
            ChunkEventKind::Close => {
                if let Some(mut state) = self.connections.close(&id) {
                    state.decoder.close(chunk.timestamp_ns, &mut self.events);
                    for event in self.events.drain(..) {
                        state
                            .exchanges
                            .on_event(event, &metrics.exchange, &mut self.finished);
                    }
                    state
                        .exchanges
                        .close(Ending::ConnectionClosed, &mut self.finished);
                }
            }
        }
        metrics
            .reassembly
            .connections
            .set(self.connections.connections() as i64);
        self.flush(metrics, out);
    }

    /// The requests the traced process's server connections are serving now (for the open-
    /// request gauges: cheap enough once a second, not per chunk).
    pub fn open_requests(&self) -> Vec<OpenRequest> {
        self.connections
            .states()
            .filter(|state| state.exchanges.facts().role == Role::Server)
            .flat_map(|state| state.exchanges.in_flight())
            .map(|exchange| OpenRequest::of(&exchange.request))
            .collect()
    }

    /// Forgets connections idle past the timeout (`now_ns` on the capture clock).
    pub fn evict_idle(&mut self, now_ns: u64, metrics: &DecodeMetrics, out: &mut Vec<ApiRequest>) {
        let evicted = self.connections.evict_idle(now_ns, &metrics.reassembly);
        self.end_evicted(evicted);
        self.flush(metrics, out);
    }

    /// Ends every open exchange (end of a recording, shutdown): they are reported incomplete.
    pub fn finish(&mut self, metrics: &DecodeMetrics, out: &mut Vec<ApiRequest>) {
        for (_, state) in self.connections.drain() {
            if let Some(mut state) = state {
                state
                    .exchanges
                    .close(Ending::Unfinished, &mut self.finished);
            }
        }
        self.flush(metrics, out);
    }

    /// Evicted connections' open exchanges end, reported incomplete.
    fn end_evicted(&mut self, evicted: Vec<Evicted<ConnectionState>>) {
        for evicted in evicted {
            if let Some(mut state) = evicted.state {
                // Its HPACK tables are forgotten with it: the hooks must take over.
                if let (Some(switches), Some(HookState::Off)) = (&self.hook_switches, state.hooks) {
                    switches.switch(&evicted.connection, HookState::On);
                }
                state.exchanges.close(Ending::Evicted, &mut self.finished);
            }
        }
    }

    fn flush(&mut self, metrics: &DecodeMetrics, out: &mut Vec<ApiRequest>) {
        for exchange in self.finished.drain(..) {
            // Streams with nothing to report: a connection closing with no request open, or a
            // stream seen only as a WINDOW_UPDATE.
            if !exchange.request.head_seen
                && exchange.request.fields.is_none()
                && !exchange.response.head_seen
                && exchange.response.fields.is_none()
            {
                continue;
            }
            let (mut request, bodies) =
                ApiRequest::from_exchange(&exchange, self.realtime_offset_ns, &self.body_limits);
            // Level, bodies and redaction: nothing leaves the pipeline before this.
            crate::policy::apply(&self.policy, &bodies, &mut request, &self.capture_limits);
            metrics.api_requests.inc();
            if request.incomplete.is_some() {
                metrics.incomplete_requests.inc();
            }
            if !request.decode_errors.is_empty() {
                metrics.body_decode_errors.inc();
            }
            out.push(request);
        }
    }
}

/// Off once the wire decodes the server connection's header blocks alone; on again, for good,
/// once it cannot.
fn switch_hooks(state: &mut ConnectionState, chunk: &TlsChunk, switches: &HookSwitches) {
    if chunk.role != Role::Server || state.hooks == Some(HookState::On) {
        return;
    }
    let decodable = state.decoder.header_blocks_decodable();
    let next = match (state.hooks, decodable) {
        (None, true) => HookState::Off,
        (Some(HookState::Off), false) => HookState::On,
        _ => return,
    };
    state.hooks = Some(next);
    switches.switch(&chunk.connection, next);
}

fn protocol_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http2 => "2",
        Protocol::Http1 => "1.1",
        Protocol::Unknown | Protocol::Opaque => "",
    }
}

/// A new connection's decoder and exchange state.
fn connection_state(
    config: &DecodeConfig,
    watches: &Arc<WatchStreams>,
    chunk: &TlsChunk,
) -> ConnectionState {
    ConnectionState {
        decoder: ProtocolDecoder::new(
            chunk.role,
            ProtocolLimits {
                report_frames: config.report_frames,
                ..ProtocolLimits::default()
            },
        ),
        exchanges: ExchangeAssembler::new(
            ConnectionFacts {
                connection: chunk.connection,
                role: chunk.role,
                local: chunk.local,
                remote: chunk.remote,
                protocol: "",
            },
            ExchangeLimits {
                max_body_bytes: config.max_body_bytes,
                ..ExchangeLimits::default()
            },
        )
        .with_response_streams(watches.clone()),
        hooks: None,
    }
}
