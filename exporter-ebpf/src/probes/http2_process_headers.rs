//! `golang.org/x/net/http2.(*serverConn).processHeaders(f *MetaHeadersFrame)`, after its
//! stack-bound check: the request's header block, already HPACK-decoded by Go. RAX = `sc`,
//! RBX = `f`.

use apiscope_common::{
    HEADER_FIELD_SENSITIVE, HEADER_MESSAGE_REQUEST, KernelCounter, MAX_HEADER_FIELDS, Probe,
    WIRE_HPACK_REQUESTS,
};
use aya_ebpf::{macros::uprobe, programs::ProbeContext};

use crate::emit::read_user;
use crate::header_block::{
    append_field, header_hook_offsets, open_block, scratch_block, submit_header_block,
};
use crate::maps::{count, hit, regs, wire_decodes_headers};

#[uprobe]
pub fn http2_process_headers(ctx: ProbeContext) -> u32 {
    hit(Probe::Http2ProcessHeaders);
    let r = regs(&ctx);
    let (server_conn, frame, goroutine) = (r.rax, r.rbx, r.r14);
    let Some((pid_tgid, o)) = header_hook_offsets() else {
        return 0;
    };
    // The net.Conn interface's data word: the *tls.Conn the TLS probes key connections by.
    let Some(conn) = read_user::<u64>(server_conn + o.http2_server_conn_conn + 8) else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    if wire_decodes_headers((pid_tgid >> 32) as u32, conn, WIRE_HPACK_REQUESTS) {
        return 0;
    }
    let Some(headers_frame) = read_user::<u64>(frame + o.http2_meta_headers_frame_headers_frame)
    else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    let (Some(stream_id), Some(fields_ptr), Some(fields_len)) = (
        read_user::<u32>(headers_frame + o.http2_headers_frame_stream_id),
        read_user::<u64>(frame + o.http2_meta_headers_frame_fields),
        read_user::<u64>(frame + o.http2_meta_headers_frame_fields + 8),
    ) else {
        count(KernelCounter::HeaderBlocksFailed, 1);
        return 0;
    };
    let Some(block) = scratch_block() else {
        return 0;
    };
    open_block(
        block,
        conn,
        goroutine,
        pid_tgid,
        &o,
        stream_id,
        HEADER_MESSAGE_REQUEST,
        0,
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
            if sensitive != 0 {
                HEADER_FIELD_SENSITIVE
            } else {
                0
            },
        );
    }
    if fields_len > MAX_HEADER_FIELDS as u64 {
        block.dropped_fields += (fields_len - MAX_HEADER_FIELDS as u64) as u32;
    }
    submit_header_block(block);
    0
}
