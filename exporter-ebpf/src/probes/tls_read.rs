//! What `crypto/tls.(*Conn).Read` receives, probed one of two ways (userspace picks per
//! binary, from Read's code):
//! - `tls_read_record`, on the instruction after Read's call to `readRecordOrCCS`: one hit per
//!   TLS record, which holds one or several HTTP/2 frames (Go's framer reads each frame in two
//!   Reads). RAX is the call's error (nil: a record was read); the receiver is read back from
//!   its ABI spill slot at `SP + frame size + 8`, and the record's plaintext from `c.input`.
//!   Read only calls it once `c.input` is drained, so each record is sent once, whole.
//! - `tls_read_return`, on each RET, where Read's code is not recognised: RAX is `n`, and the
//!   receiver and `b` are read back from their spill slots (entry SP + 8: at a RET, SP is back
//!   at its entry value). One hit per call.
//!
//! Either way Read's prologue must store the receiver (and `b`) before any call or branch —
//! userspace checks that in the function's code before attaching — and no per-goroutine state
//! is kept.

use apiscope_common::{ChunkKind, GoBytesReader, KernelCounter, Probe, SpilledReadArgs};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::uprobe, programs::ProbeContext};

use crate::emit::{emit_payload, read_user};
use crate::maps::{GO_OFFSETS, count, hit, process_address, regs, wire_bytes_lost};

/// Largest plaintext of one TLS record (RFC 8446 5.1, RFC 5246 6.2.1).
const MAX_RECORD_PLAINTEXT: u64 = 1 << 14;

/// A record of `conn` went by unread: counted, and the wire decoder can no longer be trusted
/// with its headers, so the header hooks stay on for it (as for every other loss, in `emit`).
#[inline(always)]
fn record_lost(pid: u32, conn: u64) -> u32 {
    count(KernelCounter::ReadRecordUnreadable, 1);
    wire_bytes_lost(&process_address(pid, conn));
    0
}

#[uprobe]
pub fn tls_read_record(ctx: ProbeContext) -> u32 {
    hit(Probe::TlsReadRecord);
    let r = regs(&ctx);
    if r.rax != 0 {
        // readRecordOrCCS failed: nothing new in c.input.
        return 0;
    }
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(offsets) = (unsafe { GO_OFFSETS.get(pid) }).copied() else {
        return 0;
    };
    if offsets.tls_conn_input == 0 {
        return 0;
    }
    let Some(conn) = read_user::<u64>(r.rsp + offsets.tls_read_frame_size + 8) else {
        count(KernelCounter::ReadArgumentsUnreadable, 1);
        return 0;
    };
    let Some(input) = read_user::<GoBytesReader>(conn + offsets.tls_conn_input) else {
        return record_lost(pid, conn);
    };
    if input.consumed < 0 || input.len > input.cap || input.consumed as u64 > input.len {
        return record_lost(pid, conn);
    }
    let unread = input.len - input.consumed as u64;
    if unread == 0 {
        // A handshake message or an alert: no application data.
        return 0;
    }
    if unread > MAX_RECORD_PLAINTEXT {
        return record_lost(pid, conn);
    }
    emit_payload(
        ChunkKind::Read,
        conn,
        r.r14,
        input.ptr + input.consumed as u64,
        unread,
    );
    0
}

#[uprobe]
pub fn tls_read_return(ctx: ProbeContext) -> u32 {
    hit(Probe::TlsReadReturn);
    let r = regs(&ctx);
    let (returned, goroutine, sp) = (r.rax as i64, r.r14, r.rsp);
    if returned <= 0 {
        return 0;
    }
    let Some(args) = read_user::<SpilledReadArgs>(sp + 8) else {
        count(KernelCounter::ReadArgumentsUnreadable, 1);
        return 0;
    };
    if returned as u64 <= args.buf_len {
        emit_payload(
            ChunkKind::Read,
            args.conn_ptr,
            goroutine,
            args.buf_ptr,
            returned as u64,
        );
    }
    0
}
