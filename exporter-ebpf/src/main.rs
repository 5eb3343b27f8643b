//! apiscope's kernel side: uprobes on Go's `crypto/tls.(*Conn)` Write, Read and Close, and
//! header-level hooks in `golang.org/x/net/http2` (decoded request and response header blocks,
//! which the wire decoder cannot recover on connections older than the capture).
//!
//! Go's amd64 register ABI (Go 1.17+): receiver in RAX, a slice argument's pointer in RBX and
//! length in RCX, the first result in RAX; the running goroutine's `g` in R14. Read is probed at
//! entry (save the buffer) and at each RET instruction (RAX = n): never with a uretprobe, because
//! Go moves goroutine stacks and a patched return address would crash the process.
#![no_std]
#![no_main]

use core::ffi::c_void;

use apiscope_common::{
    ChunkEvent, ChunkHeader, ChunkKind, ConnInfo, GoOffsets, HEADER_BLOCK_BYTES,
    HEADER_FIELD_SENSITIVE, HEADER_MESSAGE_REQUEST, HEADER_MESSAGE_RESPONSE,
    HEADER_MESSAGE_TRAILERS, HeaderBlockPrefix, HeaderFieldPrefix, KERNEL_COUNTER_SLOTS,
    KernelCounter, MAX_CHUNK_DATA, MAX_HEADER_FIELDS, MAX_HEADER_NAME, MAX_HEADER_VALUE,
    MAX_SEGMENTS_PER_CALL, OpenHeaderBlock, PendingRead, ProcessAddress, SocketPair,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated::bpf_probe_read_user as probe_read_user_raw,
    },
    macros::{map, uprobe},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::ProbeContext,
};

/// Upper bound on payload bytes copied per `Read`/`Write` call; userspace may lower it at load time.
#[unsafe(no_mangle)]
static CAPTURE_BYTES_PER_CALL: u32 = MAX_CHUNK_DATA as u32 * MAX_SEGMENTS_PER_CALL;

/// Chunk events to userspace. Userspace sets the size at load time (`--ring-buffer-bytes`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(32 << 20, 0);

/// One event under construction per CPU: too large for the 512-byte BPF stack.
#[map]
static SCRATCH: PerCpuArray<ChunkEvent> = PerCpuArray::with_max_entries(1, 0);

/// Struct offsets per traced pid; a pid missing here is not traced.
#[map]
static GO_OFFSETS: HashMap<u32, GoOffsets> = HashMap::with_max_entries(1024, 0);

/// Connection facts read once from Go memory, keyed by (pid, *tls.Conn); removed at Close.
#[map]
static CONNECTIONS: LruHashMap<ProcessAddress, ConnInfo> = LruHashMap::with_max_entries(65536, 0);

/// Read calls between entry and return, keyed by (pid, goroutine): goroutines move between threads.
#[map]
static PENDING_READS: LruHashMap<ProcessAddress, PendingRead> =
    LruHashMap::with_max_entries(65536, 0);

/// A request header block under construction per CPU (too large for the stack); also the
/// template a response block is copied from into `OPEN_RESPONSES`.
#[map]
static HEADER_SCRATCH: PerCpuArray<OpenHeaderBlock> = PerCpuArray::with_max_entries(1, 0);

/// Response header blocks between `writeResHeaders.writeFrame`'s entry and its RET, keyed by
/// (pid, goroutine): the fields arrive in separate `WriteField` calls, and the goroutine may
/// change CPUs in between. Bounded: an entry left by a panicking writeFrame is evicted (LRU).
#[map]
static OPEN_RESPONSES: LruHashMap<ProcessAddress, OpenHeaderBlock> =
    LruHashMap::with_max_entries(512, 0);

/// The last request header frame per serve goroutine: (`*MetaHeadersFrame`, stream id). A
/// function that must grow its stack re-runs its prologue, so the entry probe fires twice
/// with the same arguments; a later frame differs in the pointer or the (rising) stream id.
#[map]
static LAST_REQUEST_FRAME: LruHashMap<ProcessAddress, [u64; 2]> =
    LruHashMap::with_max_entries(16384, 0);

/// What the kernel side could not deliver (see `KernelCounter`).
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KERNEL_COUNTER_SLOTS, 0);

#[inline(always)]
fn count(counter: KernelCounter, by: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *slot += by };
    }
}

#[inline(always)]
fn regs(ctx: &ProbeContext) -> &aya_ebpf::bindings::pt_regs {
    // SAFETY: a uprobe's context is the task's saved user registers.
    unsafe { &*ctx.regs }
}

#[uprobe]
pub fn tls_write_entry(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let (conn, buf, len) = (r.rax, r.rbx, r.rcx);
    emit_payload(ChunkKind::Write, conn, r.r14, buf, len);
    0
}

#[uprobe]
pub fn tls_read_entry(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if GO_OFFSETS.get_ptr(pid).is_none() {
        return 0;
    }
    // Copy register values into locals before building the key (verifier-friendly).
    let goroutine = r.r14;
    let pending = PendingRead {
        conn_ptr: r.rax,
        buf_ptr: r.rbx,
        buf_len: r.rcx,
    };
    let key = ProcessAddress {
        addr: goroutine,
        pid,
        _pad: 0,
    };
    let _ = PENDING_READS.insert(&key, &pending, 0);
    0
}

/// Attached at every RET instruction of `crypto/tls.(*Conn).Read`.
#[uprobe]
pub fn tls_read_return(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let goroutine = r.r14;
    let returned = r.rax as i64;
    let key = ProcessAddress {
        addr: goroutine,
        pid,
        _pad: 0,
    };
    // SAFETY: the value is copied out before the entry is removed.
    let Some(pending) = (unsafe { PENDING_READS.get(&key) }).copied() else {
        if GO_OFFSETS.get_ptr(pid).is_some() {
            count(KernelCounter::ReadWithoutEntry, 1);
        }
        return 0;
    };
    let _ = PENDING_READS.remove(&key);
    if returned > 0 && (returned as u64) <= pending.buf_len {
        emit_payload(
            ChunkKind::Read,
            pending.conn_ptr,
            goroutine,
            pending.buf_ptr,
            returned as u64,
        );
    }
    0
}

#[uprobe]
pub fn tls_close_entry(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let (conn, goroutine) = (r.rax, r.r14);
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let Some(offsets) = (unsafe { GO_OFFSETS.get(pid) }).copied() else {
        return 0;
    };
    let Some(event) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: the per-CPU scratch entry is ours for the duration of this program.
    let event = unsafe { &mut *event };
    let key = ProcessAddress {
        addr: conn,
        pid,
        _pad: 0,
    };
    event.header = ChunkHeader {
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        conn_ptr: conn,
        goroutine,
        pid,
        tid: pid_tgid as u32,
        kind: ChunkKind::Close as u32,
        len: 0,
        captured_len: 0,
        segment: 0,
        conn: connection_info(&key, conn, &offsets),
    };
    let _ = CONNECTIONS.remove(&key);
    submit(event, 0);
    0
}

/// Entry of `golang.org/x/net/http2.(*serverConn).processHeaders(f *MetaHeadersFrame)`: the
/// request's header block, already HPACK-decoded by Go. RAX = `sc`, RBX = `f`.
#[uprobe]
pub fn http2_process_headers(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let (server_conn, frame, goroutine) = (r.rax, r.rbx, r.r14);
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let Some(o) = (unsafe { GO_OFFSETS.get(pid) }).copied() else {
        return 0;
    };
    if o.http2_enabled == 0 {
        return 0;
    }
    let Some(headers_frame) = read_user::<u64>(frame + o.http2_meta_headers_frame_headers_frame)
    else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    let Some(stream_id) = read_user::<u32>(headers_frame + o.http2_headers_frame_stream_id) else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    let goroutine_key = ProcessAddress {
        addr: goroutine,
        pid,
        _pad: 0,
    };
    let this_frame = [frame, stream_id as u64];
    if let Some(last) = unsafe { LAST_REQUEST_FRAME.get(&goroutine_key) } {
        if *last == this_frame {
            return 0;
        }
    }
    let _ = LAST_REQUEST_FRAME.insert(&goroutine_key, &this_frame, 0);
    let (Some(conn), Some(fields_ptr), Some(fields_len)) = (
        // The net.Conn interface's data word: the *tls.Conn the TLS probes key connections by.
        read_user::<u64>(server_conn + o.http2_server_conn_conn + 8),
        read_user::<u64>(frame + o.http2_meta_headers_frame_fields),
        read_user::<u64>(frame + o.http2_meta_headers_frame_fields + 8),
    ) else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    let Some(block) = HEADER_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: the per-CPU scratch entry is ours for the duration of this program.
    let block = unsafe { &mut *block };
    open_block(
        block,
        conn,
        goroutine,
        pid_tgid,
        &o,
        stream_id,
        HEADER_MESSAGE_REQUEST,
    );
    for i in 0..MAX_HEADER_FIELDS {
        if i as u64 >= fields_len {
            break;
        }
        let field = fields_ptr + i as u64 * o.hpack_header_field_size;
        let name = field + o.hpack_header_field_name;
        let value = field + o.hpack_header_field_value;
        let (Some(name_ptr), Some(name_len), Some(value_ptr), Some(value_len), Some(sensitive)) = (
            read_user::<u64>(name),
            read_user::<u64>(name + 8),
            read_user::<u64>(value),
            read_user::<u64>(value + 8),
            read_user::<u8>(field + o.hpack_header_field_sensitive),
        ) else {
            block.dropped_fields += 1;
            continue;
        };
        append_field(
            block,
            name_ptr,
            name_len,
            value_ptr,
            value_len,
            sensitive != 0,
        );
    }
    if fields_len > MAX_HEADER_FIELDS as u64 {
        block.dropped_fields += (fields_len - MAX_HEADER_FIELDS as u64) as u32;
    }
    submit_header_block(block);
    0
}

/// Entry of `golang.org/x/net/http2.(*writeResHeaders).writeFrame(ctx writeContext)`: opens
/// the goroutine's response header block. RAX = `w`, RBX/RCX = `ctx` (itab, data word: the
/// `*serverConn`).
#[uprobe]
pub fn http2_write_res_headers_entry(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let (writer, server_conn, goroutine) = (r.rax, r.rcx, r.r14);
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let Some(o) = (unsafe { GO_OFFSETS.get(pid) }).copied() else {
        return 0;
    };
    if o.http2_enabled == 0 {
        return 0;
    }
    let (Some(stream_id), Some(status), Some(conn)) = (
        read_user::<u32>(writer + o.http2_write_res_headers_stream_id),
        read_user::<i64>(writer + o.http2_write_res_headers_status),
        read_user::<u64>(server_conn + o.http2_server_conn_conn + 8),
    ) else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    let Some(block) = HEADER_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: the per-CPU scratch entry is ours for the duration of this program.
    let block = unsafe { &mut *block };
    // writeResHeaders without a status code writes trailers.
    let message = if status != 0 {
        HEADER_MESSAGE_RESPONSE
    } else {
        HEADER_MESSAGE_TRAILERS
    };
    open_block(block, conn, goroutine, pid_tgid, &o, stream_id, message);
    let key = ProcessAddress {
        addr: goroutine,
        pid,
        _pad: 0,
    };
    // A repeated entry (stack growth) just reopens the still empty block.
    let _ = OPEN_RESPONSES.insert(&key, block, 0);
    0
}

/// Entry of `golang.org/x/net/http2/hpack.(*Encoder).WriteField(f HeaderField)`: appends to the
/// goroutine's open response block, if any (the encoder also serves other writers). RAX = `e`;
/// the struct argument `f` is split over registers in field order: RBX/RCX = `Name` (pointer,
/// length), RDI/RSI = `Value`, R8 = `Sensitive`.
#[uprobe]
pub fn hpack_write_field(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let (goroutine, name_ptr, name_len, value_ptr, value_len, sensitive) =
        (r.r14, r.rbx, r.rcx, r.rdi, r.rsi, r.r8 & 0xff);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = ProcessAddress {
        addr: goroutine,
        pid,
        _pad: 0,
    };
    let Some(block) = OPEN_RESPONSES.get_ptr_mut(&key) else {
        return 0;
    };
    // SAFETY: only this goroutine touches its entry, and a goroutine runs on one thread at a time.
    let block = unsafe { &mut *block };
    if block.fields + block.dropped_fields > 0
        && block.last_name_ptr == name_ptr
        && block.last_value_ptr == value_ptr
    {
        return 0;
    }
    block.last_name_ptr = name_ptr;
    block.last_value_ptr = value_ptr;
    if block.fields + block.dropped_fields >= MAX_HEADER_FIELDS {
        block.dropped_fields += 1;
        return 0;
    }
    append_field(
        block,
        name_ptr,
        name_len,
        value_ptr,
        value_len,
        sensitive != 0,
    );
    0
}

/// Attached at every RET instruction of `(*writeResHeaders).writeFrame`: sends the block.
#[uprobe]
pub fn http2_write_res_headers_return(ctx: ProbeContext) -> u32 {
    let r = regs(&ctx);
    let goroutine = r.r14;
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = ProcessAddress {
        addr: goroutine,
        pid,
        _pad: 0,
    };
    let Some(block) = OPEN_RESPONSES.get_ptr_mut(&key) else {
        return 0;
    };
    // SAFETY: as in hpack_write_field.
    submit_header_block(unsafe { &mut *block });
    let _ = OPEN_RESPONSES.remove(&key);
    0
}

#[inline(always)]
fn open_block(
    block: &mut OpenHeaderBlock,
    conn: u64,
    goroutine: u64,
    pid_tgid: u64,
    offsets: &GoOffsets,
    stream_id: u32,
    message: u32,
) {
    let pid = (pid_tgid >> 32) as u32;
    let key = ProcessAddress {
        addr: conn,
        pid,
        _pad: 0,
    };
    block.used = 0;
    block.fields = 0;
    block.dropped_fields = 0;
    block.stream_id = stream_id;
    block.message = message;
    block.last_name_ptr = 0;
    block.last_value_ptr = 0;
    block.event.header = ChunkHeader {
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        conn_ptr: conn,
        goroutine,
        pid,
        tid: pid_tgid as u32,
        kind: ChunkKind::Headers as u32,
        len: 0,
        captured_len: 0,
        segment: 0,
        // The same cache the TLS probes fill, so the event joins its connection's chunks.
        conn: connection_info(&key, conn, offsets),
    };
}

const BLOCK_PREFIX: u64 = core::mem::size_of::<HeaderBlockPrefix>() as u64;
const FIELD_PREFIX: u64 = core::mem::size_of::<HeaderFieldPrefix>() as u64;

/// Packs one field after the ones already in `block`, or counts it as dropped when it is too
/// long or does not fit. Offsets are masked and lengths clamped although the runtime checks
/// already bound them: the masks are what the verifier can follow (the data area has room
/// for one largest field past `HEADER_BLOCK_BYTES`).
#[inline(always)]
fn append_field(
    block: &mut OpenHeaderBlock,
    name_ptr: u64,
    name_len: u64,
    value_ptr: u64,
    value_len: u64,
    sensitive: bool,
) {
    let used = block.used as u64;
    if name_len > MAX_HEADER_NAME as u64
        || value_len > MAX_HEADER_VALUE as u64
        || used + FIELD_PREFIX + name_len + value_len > HEADER_BLOCK_BYTES as u64
    {
        block.dropped_fields += 1;
        return;
    }
    let at = BLOCK_PREFIX + (used & (HEADER_BLOCK_BYTES as u64 - 1));
    let name_copy = core::cmp::min(name_len, MAX_HEADER_NAME as u64);
    let value_copy = core::cmp::min(value_len, MAX_HEADER_VALUE as u64);
    let data = block.event.data.as_mut_ptr();
    let prefix = HeaderFieldPrefix {
        name_len: name_copy as u16,
        value_len: value_copy as u16,
        flags: if sensitive { HEADER_FIELD_SENSITIVE } else { 0 },
    };
    // SAFETY: `at + FIELD_PREFIX + name_copy + value_copy` <= the data area's size (see above).
    let ok = unsafe {
        core::ptr::write_unaligned(data.add(at as usize) as *mut HeaderFieldPrefix, prefix);
        probe_read_user_raw(
            data.add((at + FIELD_PREFIX) as usize) as *mut c_void,
            name_copy as u32,
            name_ptr as *const c_void,
        ) >= 0
            && probe_read_user_raw(
                data.add((at + FIELD_PREFIX + name_copy) as usize) as *mut c_void,
                value_copy as u32,
                value_ptr as *const c_void,
            ) >= 0
    };
    if !ok {
        block.dropped_fields += 1;
        return;
    }
    block.used = (used + FIELD_PREFIX + name_copy + value_copy) as u32;
    block.fields += 1;
}

#[inline(always)]
fn submit_header_block(block: &mut OpenHeaderBlock) {
    let used = core::cmp::min(block.used as u64, HEADER_BLOCK_BYTES as u64);
    let prefix = HeaderBlockPrefix {
        stream_id: block.stream_id,
        message: block.message,
        fields: block.fields,
        dropped_fields: block.dropped_fields,
    };
    // SAFETY: the prefix fits at the front of the data area.
    unsafe {
        core::ptr::write_unaligned(
            block.event.data.as_mut_ptr() as *mut HeaderBlockPrefix,
            prefix,
        )
    };
    let payload = BLOCK_PREFIX + used;
    block.event.header.len = payload as u32;
    block.event.header.captured_len = payload as u32;
    let size = core::mem::size_of::<ChunkHeader>() as u64 + payload;
    // SAFETY: `size` <= size_of::<HeaderEvent>(); the block outlives the call.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_ringbuf_output(
            &EVENTS as *const RingBuf as *mut c_void,
            &block.event as *const _ as *mut c_void,
            size,
            0,
        )
    };
    if ret < 0 {
        count(KernelCounter::RingbufFull, 1);
        count(KernelCounter::HeaderBlocksFailed, 1);
    } else {
        count(KernelCounter::EventsSent, 1);
        count(KernelCounter::HeaderBlocks, 1);
        if block.dropped_fields > 0 {
            count(
                KernelCounter::HeaderFieldsDropped,
                block.dropped_fields as u64,
            );
        }
    }
}

#[inline(always)]
fn emit_payload(kind: ChunkKind, conn: u64, goroutine: u64, buf: u64, len: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let pid = (pid_tgid >> 32) as u32;
    let Some(offsets) = (unsafe { GO_OFFSETS.get(pid) }).copied() else {
        return;
    };
    if len == 0 {
        return;
    }
    let Some(event) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the per-CPU scratch entry is ours for the duration of this program.
    let event = unsafe { &mut *event };
    let key = ProcessAddress {
        addr: conn,
        pid,
        _pad: 0,
    };
    let info = connection_info(&key, conn, &offsets);
    let limit = core::cmp::min(
        unsafe { core::ptr::read_volatile(&CAPTURE_BYTES_PER_CALL) } as u64,
        len,
    );
    let timestamp_ns = unsafe { bpf_ktime_get_ns() };

    let mut offset: u64 = 0;
    for segment in 0..MAX_SEGMENTS_PER_CALL {
        if offset >= len {
            break;
        }
        let remaining = len - offset;
        let last = segment == MAX_SEGMENTS_PER_CALL - 1 || offset + MAX_CHUNK_DATA as u64 >= limit;
        // The last event stands for everything left, so an uncopied tail is a gap of known size.
        let stands_for = if last {
            remaining
        } else {
            core::cmp::min(remaining, MAX_CHUNK_DATA as u64)
        };
        let wanted = if offset >= limit {
            0
        } else {
            core::cmp::min(limit - offset, stands_for)
        };
        let copy = core::cmp::min(wanted, MAX_CHUNK_DATA as u64) as u32;
        event.header = ChunkHeader {
            timestamp_ns,
            conn_ptr: conn,
            goroutine,
            pid,
            tid: pid_tgid as u32,
            kind: kind as u32,
            len: core::cmp::min(stands_for, u32::MAX as u64) as u32,
            captured_len: copy,
            segment,
            conn: info,
        };
        // SAFETY: `copy` <= MAX_CHUNK_DATA, the size of `event.data`.
        let read = unsafe {
            probe_read_user_raw(
                event.data.as_mut_ptr() as *mut c_void,
                copy,
                (buf + offset) as *const c_void,
            )
        };
        if read < 0 {
            count(KernelCounter::PayloadReadFailed, 1);
            return;
        }
        if stands_for > copy as u64 {
            count(KernelCounter::TruncatedBytes, stands_for - copy as u64);
        }
        submit(event, copy);
        if last {
            break;
        }
        offset += stands_for;
    }
}

#[inline(always)]
fn submit(event: &ChunkEvent, captured: u32) {
    let size =
        core::mem::size_of::<ChunkHeader>() + core::cmp::min(captured as usize, MAX_CHUNK_DATA);
    // SAFETY: `size` <= size_of::<ChunkEvent>(); the scratch entry outlives the call.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_ringbuf_output(
            &EVENTS as *const RingBuf as *mut c_void,
            event as *const ChunkEvent as *mut c_void,
            size as u64,
            0,
        )
    };
    if ret < 0 {
        count(KernelCounter::RingbufFull, 1);
    } else {
        count(KernelCounter::EventsSent, 1);
    }
}

/// Cached per connection; on first sight walks tls.Conn -> net.Conn -> *net.TCPConn -> netFD.
#[inline(always)]
fn connection_info(key: &ProcessAddress, conn: u64, offsets: &GoOffsets) -> ConnInfo {
    if let Some(info) = unsafe { CONNECTIONS.get(key) } {
        return *info;
    }
    let info = read_connection_info(conn, offsets);
    let _ = CONNECTIONS.insert(key, &info, 0);
    info
}

#[inline(always)]
fn read_user<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_user faults safely on bad addresses.
    unsafe { bpf_probe_read_user(addr as *const T) }.ok()
}

#[inline(always)]
fn read_connection_info(conn: u64, o: &GoOffsets) -> ConnInfo {
    let mut info = ConnInfo {
        fd: -1,
        ..ConnInfo::default()
    };
    info.is_client = read_user::<u8>(conn + o.tls_conn_is_client)
        .map(|b| (b != 0) as u32)
        .unwrap_or(0);
    // The net.Conn interface's data word points at the *net.TCPConn.
    let Some(tcp_conn) = read_user::<u64>(conn + o.tls_conn_conn + 8) else {
        return info;
    };
    let Some(netfd) = read_user::<u64>(tcp_conn + o.net_conn_fd) else {
        return info;
    };
    if netfd == 0 {
        return info;
    }
    if let Some(fd) = read_user::<i64>(netfd + o.netfd_sysfd) {
        if (0..=i32::MAX as i64).contains(&fd) {
            info.fd = fd as i32;
        }
    }
    let local = read_tcp_addr(netfd + o.netfd_laddr, o);
    let remote = read_tcp_addr(netfd + o.netfd_raddr, o);
    if let (Some((lf, la, lp)), Some((rf, ra, rp))) = (local, remote) {
        if lf == rf {
            info.sockets = SocketPair {
                family: lf,
                local_port: lp,
                remote_port: rp,
                local_addr: la,
                remote_addr: ra,
            };
        }
    }
    info
}

/// Reads a `net.Addr` interface holding a `*net.TCPAddr`: (family, address bytes, port).
#[inline(always)]
fn read_tcp_addr(iface: u64, o: &GoOffsets) -> Option<(u32, [u8; 16], u16)> {
    let addr = read_user::<u64>(iface + 8)?;
    if addr == 0 {
        return None;
    }
    let ip_ptr = read_user::<u64>(addr + o.tcpaddr_ip)?;
    let ip_len = read_user::<u64>(addr + o.tcpaddr_ip + 8)?;
    let port = read_user::<i64>(addr + o.tcpaddr_port)?;
    let mut bytes = [0u8; 16];
    let family = match ip_len {
        4 => {
            let v4 = read_user::<[u8; 4]>(ip_ptr)?;
            bytes[..4].copy_from_slice(&v4);
            4
        }
        16 => {
            bytes = read_user::<[u8; 16]>(ip_ptr)?;
            6
        }
        _ => return None,
    };
    Some((family, bytes, port as u16))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
