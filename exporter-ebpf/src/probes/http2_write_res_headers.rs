//! `golang.org/x/net/http2.(*writeResHeaders).writeFrame(ctx writeContext)`, for Go releases
//! whose maps the one-hit `http2_response_headers` cannot read: after its stack-bound check the
//! probe opens the goroutine's response header block (RAX = `w`,
//! RBX/RCX = `ctx`: itab, data word = the `*serverConn`); `hpack_write_field` fills it; a
//! probe at each RET sends it.

use apiscope_common::{HEADER_MESSAGE_RESPONSE, HEADER_MESSAGE_TRAILERS, KernelCounter, Probe};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::uprobe, programs::ProbeContext};

use crate::emit::read_user;
use crate::header_block::{open_block, submit_header_block};
use crate::maps::{GO_OFFSETS, HEADER_SCRATCH, OPEN_RESPONSES, count, hit, process_address, regs};

#[uprobe]
pub fn http2_write_res_headers_entry(ctx: ProbeContext) -> u32 {
    hit(Probe::Http2WriteResHeadersEntry);
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
    let status = status.clamp(0, u32::MAX as i64) as u32;
    open_block(
        block, conn, goroutine, pid_tgid, &o, stream_id, message, status,
    );
    let _ = OPEN_RESPONSES.insert(&process_address(pid, goroutine), block, 0);
    0
}

/// Attached at every RET instruction of `(*writeResHeaders).writeFrame`: sends the block.
#[uprobe]
pub fn http2_write_res_headers_return(ctx: ProbeContext) -> u32 {
    hit(Probe::Http2WriteResHeadersReturn);
    let r = regs(&ctx);
    let goroutine = r.r14;
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = process_address(pid, goroutine);
    let Some(block) = OPEN_RESPONSES.get_ptr_mut(&key) else {
        return 0;
    };
    // SAFETY: only this goroutine touches its entry, and a goroutine runs on one thread at a time.
    submit_header_block(unsafe { &mut *block });
    let _ = OPEN_RESPONSES.remove(&key);
    0
}
