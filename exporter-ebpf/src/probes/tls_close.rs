//! `crypto/tls.(*Conn).Close()`: the connection ends; its cached facts are forgotten.

use apiscope_common::{ChunkHeader, ChunkKind, Probe};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};

use crate::emit::{connection_info, ring_output};
use crate::maps::{
    CONNECTIONS, GO_OFFSETS, SCRATCH, hit, process_address, regs, wire_connection_closed,
};

#[uprobe]
pub fn tls_close_entry(ctx: ProbeContext) -> u32 {
    hit(Probe::TlsCloseEntry);
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
    let key = process_address(pid, conn);
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
    // The next connection Go allocates at this address starts unknown.
    wire_connection_closed(&key);
    ring_output(
        &event.header as *const ChunkHeader as *const core::ffi::c_void,
        core::mem::size_of::<ChunkHeader>() as u64,
    );
    0
}
