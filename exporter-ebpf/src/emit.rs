//! Building chunk events and handing them to the ring buffer; reading Go memory.

use core::ffi::c_void;

use apiscope_common::{
    ChunkEvent, ChunkHeader, ChunkKind, ConnInfo, GoOffsets, KernelCounter, MAX_CHUNK_DATA,
    MAX_SEGMENTS_PER_CALL, ProcessAddress, SocketPair,
};
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
    generated::bpf_probe_read_user as probe_read_user_raw,
};

use crate::maps::{
    CAPTURE_BYTES_PER_CALL, CONNECTIONS, EVENTS, GO_OFFSETS, RING_WAKEUP_BYTES, SCRATCH, count,
    process_address, wire_bytes_lost,
};

/// Copies `len` bytes at `buf` (split into events of at most `MAX_CHUNK_DATA`) as the
/// connection's next chunk(s) of `kind`.
#[inline(always)]
pub fn emit_payload(kind: ChunkKind, conn: u64, goroutine: u64, buf: u64, len: u64) {
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
    let key = process_address(pid, conn);
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
            wire_bytes_lost(&key);
            return;
        }
        if stands_for > copy as u64 {
            count(KernelCounter::TruncatedBytes, stands_for - copy as u64);
            wire_bytes_lost(&key);
        }
        let size =
            core::mem::size_of::<ChunkHeader>() + core::cmp::min(copy as usize, MAX_CHUNK_DATA);
        if !ring_output(event as *const ChunkEvent as *const c_void, size as u64) {
            wire_bytes_lost(&key);
        }
        if last {
            break;
        }
        offset += stands_for;
    }
}

/// Copies `size` bytes at `data` into the ring buffer; false (and counted) when it is full.
/// Wakes the consumer only when this event brings the unread bytes up to
/// `RING_WAKEUP_BYTES`: below that the consumer's drain timer picks events up.
#[inline(always)]
pub fn ring_output(data: *const c_void, size: u64) -> bool {
    let threshold = unsafe { core::ptr::read_volatile(&RING_WAKEUP_BYTES) };
    let unread = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = if unread < threshold && unread + size >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    // SAFETY: `data` points at `size` readable bytes of a map value owned by this program.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_ringbuf_output(
            &EVENTS as *const _ as *mut c_void,
            data as *mut c_void,
            size,
            flags as u64,
        )
    };
    if ret < 0 {
        count(KernelCounter::RingbufFull, 1);
        false
    } else {
        count(KernelCounter::EventsSent, 1);
        true
    }
}

/// Cached per connection; on first sight walks tls.Conn -> net.Conn -> *net.TCPConn -> netFD.
#[inline(always)]
pub fn connection_info(key: &ProcessAddress, conn: u64, offsets: &GoOffsets) -> ConnInfo {
    if let Some(info) = unsafe { CONNECTIONS.get(key) } {
        return *info;
    }
    let info = read_connection_info(conn, offsets);
    // A Read that returns after Close sees the closed socket (fd -1): caching that would hand
    // the old connection's facts to the next connection Go allocates at this address.
    if info.fd >= 0 {
        let _ = CONNECTIONS.insert(key, &info, 0);
    }
    info
}

#[inline(always)]
pub fn read_user<T>(addr: u64) -> Option<T> {
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
