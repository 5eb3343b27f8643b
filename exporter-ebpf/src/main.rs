//! apiscope's kernel side: uprobes on Go's `crypto/tls.(*Conn)` Write, Read and Close.
//!
//! Go's amd64 register ABI (Go 1.17+): receiver in RAX, a slice argument's pointer in RBX and
//! length in RCX, the first result in RAX; the running goroutine's `g` in R14. Read is probed at
//! entry (save the buffer) and at each RET instruction (RAX = n): never with a uretprobe, because
//! Go moves goroutine stacks and a patched return address would crash the process.
#![no_std]
#![no_main]

use core::ffi::c_void;

use apiscope_common::{
    ChunkEvent, ChunkHeader, ChunkKind, ConnInfo, GoOffsets, KERNEL_COUNTER_SLOTS, KernelCounter,
    MAX_CHUNK_DATA, MAX_SEGMENTS_PER_CALL, PendingRead, ProcessAddress, SocketPair,
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
