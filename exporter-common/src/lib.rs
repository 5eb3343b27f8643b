//! Structs that cross the kernel/user boundary, defined once for both sides.
//!
//! Layout rules: `#[repr(C)]`, no implicit padding (explicit `_pad` fields), `u32` flags instead
//! of `bool`, and compile-time size asserts so a change on one side cannot silently break the other.
#![no_std]

/// Largest payload one ring-buffer event carries. A larger `Write` is split into several events
/// (up to [`MAX_SEGMENTS_PER_CALL`]); what is left after that is reported as truncated.
/// A power of two so the eBPF side can bound lengths with a mask the verifier understands.
pub const MAX_CHUNK_DATA: usize = 16384;
/// Bound on the events one `Read`/`Write` call is split into (the verifier needs a constant bound).
pub const MAX_SEGMENTS_PER_CALL: u32 = 16;

/// What a [`ChunkHeader`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkKind {
    /// Plaintext passed to `crypto/tls.(*Conn).Write`: bytes the process sends.
    Write = 1,
    /// Plaintext returned by `crypto/tls.(*Conn).Read`: bytes the process receives.
    Read = 2,
    /// `crypto/tls.(*Conn).Close` was called: the connection ends (no payload).
    Close = 3,
    /// A decoded HTTP/2 header block from the header-level hooks: the payload is a
    /// [`HeaderBlockPrefix`] followed by `fields` packed fields (see [`HeaderFieldPrefix`]).
    Headers = 4,
}

impl ChunkKind {
    pub fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Write),
            2 => Some(Self::Read),
            3 => Some(Self::Close),
            4 => Some(Self::Headers),
            _ => None,
        }
    }
}

/// Socket addresses of a connection, read once from Go memory (`netFD.laddr` / `raddr`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketPair {
    /// 4 for IPv4 (first 4 bytes of the address arrays used), 6 for IPv6, 0 if unknown.
    pub family: u32,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SocketPair>() == 40);

/// Per-connection facts cached in a map on first sight, copied into every chunk header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// `netFD.pfd.Sysfd`, or -1 if the connection is not a plain `*net.TCPConn`.
    pub fd: i32,
    /// `tls.Conn.isClient`: 1 when this process dialed out (etcd, webhooks, its loopback client).
    pub is_client: u32,
    pub sockets: SocketPair,
}
const _: () = assert!(core::mem::size_of::<ConnInfo>() == 48);

/// Fixed-size front of every ring-buffer event; `captured_len` payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Address of the `*tls.Conn`: identifies the connection while it lives.
    pub conn_ptr: u64,
    /// Address of the runtime `g` (R14): the goroutine that made the call.
    pub goroutine: u64,
    pub pid: u32,
    pub tid: u32,
    /// A [`ChunkKind`] as `u32`.
    pub kind: u32,
    /// Bytes of the TLS stream this event stands for.
    pub len: u32,
    /// Payload bytes actually copied (`<= len`); fewer means a gap of `len - captured_len`.
    pub captured_len: u32,
    /// Index of this event within one split `Read`/`Write` call.
    pub segment: u32,
    pub conn: ConnInfo,
}
const _: () = assert!(core::mem::size_of::<ChunkHeader>() == 96);

/// Scratch layout the eBPF side fills before copying `size_of::<ChunkHeader>() + captured_len`
/// bytes of it to the ring buffer.
#[repr(C)]
pub struct ChunkEvent {
    pub header: ChunkHeader,
    pub data: [u8; MAX_CHUNK_DATA],
}

/// Bytes of packed fields one header event carries (after its [`HeaderBlockPrefix`]); fields
/// that do not fit are counted in `dropped_fields`. A power of two: the eBPF side masks offsets
/// with it. Large enough for a request with a bearer JWT (1-2 KiB) and the usual headers.
pub const HEADER_BLOCK_BYTES: usize = 8192;
/// Most fields read from one header block (a constant loop bound for the verifier).
pub const MAX_HEADER_FIELDS: u32 = 32;
/// Longest header name copied; a longer field is dropped (and counted), never cut.
pub const MAX_HEADER_NAME: usize = 128;
/// Longest header value copied; a longer field is dropped (and counted), never cut.
pub const MAX_HEADER_VALUE: usize = 4096;

/// [`HeaderBlockPrefix::message`]: a request's header block (`serverConn.processHeaders`).
pub const HEADER_MESSAGE_REQUEST: u32 = 1;
/// A response's header block (`writeResHeaders` with a status code).
pub const HEADER_MESSAGE_RESPONSE: u32 = 2;
/// Trailers (`writeResHeaders` without a status code), or request trailers.
pub const HEADER_MESSAGE_TRAILERS: u32 = 3;

/// Front of a header event's payload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderBlockPrefix {
    pub stream_id: u32,
    /// One of the `HEADER_MESSAGE_*` values.
    pub message: u32,
    /// Fields packed after this prefix.
    pub fields: u32,
    /// Fields seen but not copied (over [`MAX_HEADER_FIELDS`], too long, or out of room).
    pub dropped_fields: u32,
    /// A response's status code (`writeResHeaders.httpResCode`), 0 otherwise: userspace adds
    /// the `:status` field when the block does not carry one.
    pub status: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<HeaderBlockPrefix>() == 24);

/// Groups of a Go (swiss table) map read at most by the one-hit response hook: a small map
/// (up to 8 entries) is one group, a response's `http.Header` rarely needs more than two.
pub const MAX_MAP_GROUPS: u32 = 4;
/// Slots per swiss-table group (Go's `abi.SwissMapGroupSlots`).
pub const MAP_GROUP_SLOTS: u32 = 8;
/// Values read per header name (`http.Header` is `map[string][]string`); more are counted
/// as dropped.
pub const MAX_VALUES_PER_HEADER: u32 = 2;

/// Front of one packed field: `name_len` name bytes then `value_len` value bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderFieldPrefix {
    pub name_len: u16,
    pub value_len: u16,
    /// Bit 0: `hpack.HeaderField.Sensitive` (never indexed).
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<HeaderFieldPrefix>() == 8);
pub const HEADER_FIELD_SENSITIVE: u32 = 1;
/// Bit 1: read from a response's `http.Header` map, in map order and with the map's
/// (canonical) name; userspace puts such fields in the encoder's order (sorted by that name,
/// then lowercased).
pub const HEADER_FIELD_FROM_MAP: u32 = 2;

/// A header event as the eBPF side builds it. The data area is larger than
/// `HEADER_BLOCK_BYTES` by one largest field so that a masked write offset plus a bounded length
/// always stays inside the buffer in the verifier's eyes; only the first
/// `size_of::<HeaderBlockPrefix>() + HEADER_BLOCK_BYTES` bytes are ever used.
#[repr(C)]
pub struct HeaderEvent {
    pub header: ChunkHeader,
    pub data: [u8; HEADER_EVENT_DATA],
}
pub const HEADER_EVENT_DATA: usize = core::mem::size_of::<HeaderBlockPrefix>()
    + HEADER_BLOCK_BYTES
    + core::mem::size_of::<HeaderFieldPrefix>()
    + MAX_HEADER_NAME
    + MAX_HEADER_VALUE;

/// A header block being assembled: within one probe (a request at `processHeaders`, a
/// response at `writeResHeaders.writeFrame` from its header map), in per-CPU scratch; or, where
/// the map cannot be read, across `hpack.(*Encoder).WriteField` calls from writeFrame's entry
/// to its RET (in a map keyed by pid and goroutine). The counters are copied into the event's
/// [`HeaderBlockPrefix`] when it is sent.
#[repr(C)]
pub struct OpenHeaderBlock {
    /// Bytes of packed fields so far (after the prefix).
    pub used: u32,
    pub fields: u32,
    pub dropped_fields: u32,
    pub stream_id: u32,
    pub message: u32,
    pub status: u32,
    pub event: HeaderEvent,
}
const _: () = assert!(core::mem::size_of::<OpenHeaderBlock>() == 24 + 96 + HEADER_EVENT_DATA);

/// The register arguments of a Go function as its prologue spilled them to their ABI slots on
/// the goroutine stack (`entry SP + 8` onwards): a probe on a RET reads them from there, since
/// the registers no longer hold them. For `(*tls.Conn).Read(b []byte)`: receiver, `b`'s
/// pointer and length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SpilledReadArgs {
    pub conn_ptr: u64,
    pub buf_ptr: u64,
    pub buf_len: u64,
}
const _: () = assert!(core::mem::size_of::<SpilledReadArgs>() == 24);

/// Go's `bytes.Reader` (`s []byte; i int64; prevRune int`) without `prevRune`: `tls.Conn.input`,
/// the plaintext of the last TLS record read, `i` bytes of it consumed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoBytesReader {
    pub ptr: u64,
    pub len: u64,
    pub cap: u64,
    pub consumed: i64,
}
const _: () = assert!(core::mem::size_of::<GoBytesReader>() == 32);

/// Indexes of the per-CPU `PROBE_HITS` array: one slot per eBPF program, counted on every
/// hit, so users see what apiscope costs the traced process (each hit is a trap into the
/// kernel inside one of its threads).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    TlsWriteEntry = 0,
    TlsReadReturn = 1,
    TlsCloseEntry = 2,
    Http2ProcessHeaders = 3,
    Http2WriteResHeadersEntry = 4,
    HpackWriteField = 5,
    Http2WriteResHeadersReturn = 6,
    Http2ResponseHeaders = 7,
    TlsReadRecord = 8,
}
pub const PROBE_SLOTS: u32 = 9;

impl Probe {
    pub const ALL: [Probe; PROBE_SLOTS as usize] = [
        Probe::TlsWriteEntry,
        Probe::TlsReadReturn,
        Probe::TlsCloseEntry,
        Probe::Http2ProcessHeaders,
        Probe::Http2WriteResHeadersEntry,
        Probe::HpackWriteField,
        Probe::Http2WriteResHeadersReturn,
        Probe::Http2ResponseHeaders,
        Probe::TlsReadRecord,
    ];

    /// The eBPF program's name, also the `probe` label of `apiscope_capture_probe_hits_total`.
    pub const fn program(self) -> &'static str {
        match self {
            Probe::TlsWriteEntry => "tls_write_entry",
            Probe::TlsReadReturn => "tls_read_return",
            Probe::TlsCloseEntry => "tls_close_entry",
            Probe::Http2ProcessHeaders => "http2_process_headers",
            Probe::Http2WriteResHeadersEntry => "http2_write_res_headers_entry",
            Probe::HpackWriteField => "hpack_write_field",
            Probe::Http2WriteResHeadersReturn => "http2_write_res_headers_return",
            Probe::Http2ResponseHeaders => "http2_response_headers",
            Probe::TlsReadRecord => "tls_read_record",
        }
    }
}

/// An address inside one traced process: the key of the per-connection (`*tls.Conn`) and
/// per-goroutine (`runtime.g`) maps. Addresses alone collide across processes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessAddress {
    pub addr: u64,
    pub pid: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ProcessAddress>() == 16);

/// Go struct field offsets the probes need, filled per target binary from its Go version.
/// Stored per traced process in the `GO_OFFSETS` map (key: pid), which also tells the probes
/// which processes are traced.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoOffsets {
    /// `tls.Conn.conn` (a `net.Conn` interface: itab word, then data word).
    pub tls_conn_conn: u64,
    /// `tls.Conn.isClient`.
    pub tls_conn_is_client: u64,
    /// `net.conn.fd` inside `*net.TCPConn` (the interface's data word points at it).
    pub net_conn_fd: u64,
    /// `netFD.pfd` + `poll.FD.Sysfd`.
    pub netfd_sysfd: u64,
    /// `netFD.laddr` (a `net.Addr` interface).
    pub netfd_laddr: u64,
    /// `netFD.raddr`.
    pub netfd_raddr: u64,
    /// `net.TCPAddr.IP` (a slice: pointer, length, capacity).
    pub tcpaddr_ip: u64,
    /// `net.TCPAddr.Port`.
    pub tcpaddr_port: u64,
    /// 1 when the HTTP/2 header hooks below are attached and their offsets known; 0 switches
    /// them off (TLS capture does not depend on them).
    pub http2_enabled: u64,
    /// `http2.serverConn.conn` (a `net.Conn` interface; its data word is the `*tls.Conn`).
    pub http2_server_conn_conn: u64,
    /// `http2.MetaHeadersFrame.HeadersFrame` (an embedded `*HeadersFrame`).
    pub http2_meta_headers_frame_headers_frame: u64,
    /// `http2.MetaHeadersFrame.Fields` (a `[]hpack.HeaderField`).
    pub http2_meta_headers_frame_fields: u64,
    /// `http2.HeadersFrame.FrameHeader` + `http2.FrameHeader.StreamID`.
    pub http2_headers_frame_stream_id: u64,
    /// `http2.writeResHeaders.streamID`.
    pub http2_write_res_headers_stream_id: u64,
    /// `http2.writeResHeaders.httpResCode` (0 means trailers).
    pub http2_write_res_headers_status: u64,
    /// `hpack.HeaderField` size (the slice's element stride).
    pub hpack_header_field_size: u64,
    /// `hpack.HeaderField.Name`, `.Value` (strings) and `.Sensitive` (bool).
    pub hpack_header_field_name: u64,
    pub hpack_header_field_value: u64,
    pub hpack_header_field_sensitive: u64,
    /// `http2.writeResHeaders.h` (an `http.Header`: a map pointer), `.date`, `.contentType`,
    /// `.contentLength` (strings): what the one-hit response hook reads.
    pub http2_write_res_headers_header: u64,
    pub http2_write_res_headers_date: u64,
    pub http2_write_res_headers_content_type: u64,
    pub http2_write_res_headers_content_length: u64,
    /// Go's swiss-table maps (Go 1.24+; 0 for older releases): `maps.Map.dirPtr`,
    /// `maps.Map.dirLen`, `maps.table.groups` (a `groupsReference`: data pointer, then
    /// `lengthMask`), and for `map[string][]string` the group's size and where its slots
    /// start (8 slots of a 16-byte key and a 24-byte element each).
    pub go_map_dir_ptr: u64,
    pub go_map_dir_len: u64,
    pub go_map_table_groups: u64,
    pub go_map_header_group_size: u64,
    pub go_map_header_group_slots: u64,
    /// `tls.Conn.input` (a [`GoBytesReader`]), found in the binary's own `Read`; 0 when reads
    /// are probed at Read's RETs instead of once per record.
    pub tls_conn_input: u64,
    /// The frame `crypto/tls.(*Conn).Read` sets up: inside its body the receiver's spill slot
    /// is at `SP + tls_read_frame_size + 8`.
    pub tls_read_frame_size: u64,
}
const _: () = assert!(core::mem::size_of::<GoOffsets>() == 152 + 11 * 8);

/// Indexes of the per-CPU `COUNTERS` array: what the kernel side could not deliver.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelCounter {
    /// Ring buffer full: an event was lost.
    RingbufFull = 0,
    /// `bpf_probe_read_user` of a payload failed: an event was lost.
    PayloadReadFailed = 1,
    /// A Read probe could not read the call's spilled arguments from the goroutine stack.
    ReadArgumentsUnreadable = 2,
    /// Bytes of calls longer than `MAX_SEGMENTS_PER_CALL * MAX_CHUNK_DATA` not copied.
    TruncatedBytes = 3,
    /// Events written to the ring buffer.
    EventsSent = 4,
    /// Header blocks emitted by the HTTP/2 header hooks.
    HeaderBlocks = 5,
    /// Header fields the hooks saw but could not copy (also in each event's `dropped_fields`).
    HeaderFieldsDropped = 6,
    /// Header blocks lost: Go memory unreadable, or the ring buffer full.
    HeaderBlocksFailed = 7,
    /// A record probe found `tls.Conn.input` unreadable or inconsistent: the record was lost.
    ReadRecordUnreadable = 8,
    /// Header hook hits that returned at once: the wire decoder holds the connection's HPACK
    /// state for that direction (see `WIRE_HPACK_REQUESTS`).
    HeaderHooksSkipped = 9,
}
pub const KERNEL_COUNTER_SLOTS: u32 = 10;

/// Flags of the `WIRE_HPACK_KNOWN` map, keyed by (pid, `*tls.Conn`): userspace sets them while
/// its wire decoder knows the connection's whole HPACK table in that direction, so the header
/// hooks (which exist for connections older than the capture) have nothing to add and return
/// before reading Go memory. The eBPF side clears the entry itself when it loses bytes of the
/// connection (ring buffer full, truncated, unreadable: `WIRE_HPACK_LOST`, which userspace
/// never overwrites) and removes it at Close.
pub const WIRE_HPACK_REQUESTS: u32 = 1;
pub const WIRE_HPACK_RESPONSES: u32 = 2;
/// Tombstone: bytes of the connection were lost; its hooks stay on until Close removes it.
pub const WIRE_HPACK_LOST: u32 = 4;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data: #[repr(C)], no padding (asserted above), every bit pattern valid.
    unsafe impl aya::Pod for super::GoOffsets {}
    unsafe impl aya::Pod for super::ConnInfo {}
    unsafe impl aya::Pod for super::ProcessAddress {}
    unsafe impl aya::Pod for super::HeaderBlockPrefix {}
    unsafe impl aya::Pod for super::HeaderFieldPrefix {}
}
