//! Header blocks from the HTTP/2 header hooks: opened with the stream id, filled one field at
//! a time, sent as one `ChunkKind::Headers` event.

use core::ffi::c_void;

use apiscope_common::{
    ChunkHeader, ChunkKind, GoOffsets, HEADER_BLOCK_BYTES, HeaderBlockPrefix, HeaderFieldPrefix,
    KernelCounter, MAX_HEADER_NAME, MAX_HEADER_VALUE, OpenHeaderBlock,
};
use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_ktime_get_ns,
    generated::bpf_probe_read_user as probe_read_user_raw,
};

use crate::emit::{connection_info, read_user, ring_output};
use crate::maps::{GO_OFFSETS, HEADER_SCRATCH, count, process_address};

/// `bpf_get_current_pid_tgid()` and the traced process's offsets, when its header hooks are on.
#[inline(always)]
pub fn header_hook_offsets() -> Option<(u64, GoOffsets)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let offsets = (unsafe { GO_OFFSETS.get((pid_tgid >> 32) as u32) }).copied()?;
    (offsets.http2_enabled != 0).then_some((pid_tgid, offsets))
}

/// The per-CPU block under construction: ours for the duration of the program.
#[inline(always)]
pub fn scratch_block() -> Option<&'static mut OpenHeaderBlock> {
    let block = HEADER_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU, and a program runs to completion on its CPU.
    Some(unsafe { &mut *block })
}

/// What a response's writer holds at `writeResHeaders.writeFrame`: the stream id, the status
/// code (0 for trailers) and the `*tls.Conn` behind the `*serverConn`; counted as a lost block
/// when Go memory cannot be read.
#[inline(always)]
pub fn read_response_start(
    writer: u64,
    server_conn: u64,
    o: &GoOffsets,
) -> Option<(u32, u32, u64)> {
    let (Some(stream_id), Some(status), Some(conn)) = (
        read_user::<u32>(writer + o.http2_write_res_headers_stream_id),
        read_user::<i64>(writer + o.http2_write_res_headers_status),
        // The net.Conn interface's data word: the *tls.Conn the TLS probes key connections by.
        read_user::<u64>(server_conn + o.http2_server_conn_conn + 8),
    ) else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return None;
    };
    Some((stream_id, status.clamp(0, u32::MAX as i64) as u32, conn))
}

#[inline(always)]
pub fn open_block(
    block: &mut OpenHeaderBlock,
    conn: u64,
    goroutine: u64,
    pid_tgid: u64,
    offsets: &GoOffsets,
    stream_id: u32,
    message: u32,
    status: u32,
) {
    let pid = (pid_tgid >> 32) as u32;
    let key = process_address(pid, conn);
    block.used = 0;
    block.fields = 0;
    block.dropped_fields = 0;
    block.stream_id = stream_id;
    block.message = message;
    block.status = status;
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

/// [`append_field`] with a name known to the program (not in the traced process's memory).
#[inline(always)]
pub fn append_named_field<const N: usize>(
    block: &mut OpenHeaderBlock,
    name: &[u8; N],
    value_ptr: u64,
    value_len: u64,
) {
    let used = block.used as u64;
    if N > MAX_HEADER_NAME
        || value_len > MAX_HEADER_VALUE as u64
        || used + FIELD_PREFIX + N as u64 + value_len > HEADER_BLOCK_BYTES as u64
    {
        block.dropped_fields += 1;
        return;
    }
    let at = BLOCK_PREFIX + (used & (HEADER_BLOCK_BYTES as u64 - 1));
    let value_copy = core::cmp::min(value_len, MAX_HEADER_VALUE as u64);
    let data = block.event.data.as_mut_ptr();
    let prefix = HeaderFieldPrefix {
        name_len: N as u16,
        value_len: value_copy as u16,
        flags: 0,
    };
    // SAFETY: as in `append_field`; N <= MAX_HEADER_NAME.
    let ok = unsafe {
        core::ptr::write_unaligned(data.add(at as usize) as *mut HeaderFieldPrefix, prefix);
        core::ptr::write_unaligned(
            data.add((at + FIELD_PREFIX) as usize) as *mut [u8; N],
            *name,
        );
        probe_read_user_raw(
            data.add((at + FIELD_PREFIX + N as u64) as usize) as *mut c_void,
            value_copy as u32,
            value_ptr as *const c_void,
        ) >= 0
    };
    if !ok {
        block.dropped_fields += 1;
        return;
    }
    block.used = (used + FIELD_PREFIX + N as u64 + value_copy) as u32;
    block.fields += 1;
}

/// Packs one field after the ones already in `block`, or counts it as dropped when it is too
/// long or does not fit. Offsets are masked and lengths clamped although the runtime checks
/// already bound them: the masks are what the verifier can follow (the data area has room
/// for one largest field past `HEADER_BLOCK_BYTES`).
#[inline(always)]
pub fn append_field(
    block: &mut OpenHeaderBlock,
    name_ptr: u64,
    name_len: u64,
    value_ptr: u64,
    value_len: u64,
    flags: u32,
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
        flags,
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
pub fn submit_header_block(block: &mut OpenHeaderBlock) {
    let used = core::cmp::min(block.used as u64, HEADER_BLOCK_BYTES as u64);
    let prefix = HeaderBlockPrefix {
        stream_id: block.stream_id,
        message: block.message,
        fields: block.fields,
        dropped_fields: block.dropped_fields,
        status: block.status,
        _pad: 0,
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
    if ring_output(&block.event as *const _ as *const c_void, size) {
        count(KernelCounter::HeaderBlocks, 1);
        if block.dropped_fields > 0 {
            count(
                KernelCounter::HeaderFieldsDropped,
                block.dropped_fields as u64,
            );
        }
    } else {
        count(KernelCounter::HeaderBlocksFailed, 1);
    }
}
