//! `golang.org/x/net/http2.(*writeResHeaders).writeFrame(ctx writeContext)`, for Go releases
//! whose maps the one-hit `http2_response_headers` cannot read: after its stack-bound check the
//! probe opens the goroutine's response header block (RAX = `w`,
//! RBX/RCX = `ctx`: itab, data word = the `*serverConn`); `hpack_write_field` fills it; a
//! probe at each RET sends it.

use apiscope_common::{
    HEADER_MESSAGE_RESPONSE, HEADER_MESSAGE_TRAILERS, Probe, WIRE_HPACK_RESPONSES,
};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::uprobe, programs::ProbeContext};

use crate::header_block::{
    header_hook_offsets, open_block, read_response_start, scratch_block, submit_header_block,
};
use crate::maps::{OPEN_RESPONSES, hit, process_address, regs, wire_decodes_headers};

#[uprobe]
pub fn http2_write_res_headers_entry(ctx: ProbeContext) -> u32 {
    hit(Probe::Http2WriteResHeadersEntry);
    let r = regs(&ctx);
    let (writer, server_conn, goroutine) = (r.rax, r.rcx, r.r14);
    let Some((pid_tgid, o)) = header_hook_offsets() else {
        return 0;
    };
    let Some((stream_id, status, conn)) = read_response_start(writer, server_conn, &o) else {
        return 0;
    };
    let pid = (pid_tgid >> 32) as u32;
    // No block opened: the WriteField hits that follow find none and return.
    if wire_decodes_headers(pid, conn, WIRE_HPACK_RESPONSES) {
        return 0;
    }
    let Some(block) = scratch_block() else {
        return 0;
    };
    // writeResHeaders without a status code writes trailers.
    let message = if status != 0 {
        HEADER_MESSAGE_RESPONSE
    } else {
        HEADER_MESSAGE_TRAILERS
    };
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
