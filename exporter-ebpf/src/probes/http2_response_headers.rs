//! `golang.org/x/net/http2.(*writeResHeaders).writeFrame(ctx writeContext)`, after its
//! stack-bound check: the whole response header block in one hit, read from the struct the
//! writer encodes from (RAX = `w`; RBX/RCX = `ctx`: itab, data word = the `*serverConn`):
//! `httpResCode`, the `http.Header` map `h`, and the `date`, `contentType` and `contentLength`
//! strings — instead of one `hpack.(*Encoder).WriteField` hit per field (18 on a typical
//! apiserver response). For Go releases with swiss-table maps (1.24+), whose layout is in the
//! offsets table; older ones keep the per-field hooks.
//!
//! `h` is the handler's header snapshot taken when the response was written: no goroutine
//! changes it any more. Map keys are in canonical form (`Audit-Id`); userspace lowercases
//! them as the HPACK encoder does. Trailers (no status) are left out: their writer encodes only
//! the trailer keys of a map that holds every header.

use apiscope_common::{
    GoOffsets, HEADER_FIELD_FROM_MAP, HEADER_MESSAGE_RESPONSE, MAP_GROUP_SLOTS, MAX_MAP_GROUPS,
    MAX_VALUES_PER_HEADER, OpenHeaderBlock, Probe, WIRE_HPACK_RESPONSES,
};
use aya_ebpf::{macros::uprobe, programs::ProbeContext};

use crate::emit::read_user;
use crate::header_block::{
    append_field, append_named_field, header_hook_offsets, open_block, read_response_start,
    scratch_block, submit_header_block,
};
use crate::maps::{hit, regs, wire_decodes_headers};

/// Swiss-table control byte of a slot: the high bit is clear only for a full slot.
const CTRL_EMPTY_OR_DELETED: u64 = 0x80;

#[uprobe]
pub fn http2_response_headers(ctx: ProbeContext) -> u32 {
    hit(Probe::Http2ResponseHeaders);
    let r = regs(&ctx);
    let (writer, server_conn, goroutine) = (r.rax, r.rcx, r.r14);
    let Some((pid_tgid, o)) = header_hook_offsets() else {
        return 0;
    };
    if o.go_map_header_group_size == 0 {
        return 0;
    }
    let Some((stream_id, status, conn)) = read_response_start(writer, server_conn, &o) else {
        return 0;
    };
    if status == 0 || wire_decodes_headers((pid_tgid >> 32) as u32, conn, WIRE_HPACK_RESPONSES) {
        return 0;
    }
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
        HEADER_MESSAGE_RESPONSE,
        status,
    );
    match read_user::<u64>(writer + o.http2_write_res_headers_header) {
        Some(0) => {}
        Some(header) => append_map_fields(block, header, &o),
        None => block.dropped_fields += 1,
    }
    // The writer encodes these after the map, in this order.
    append_string_field(
        block,
        b"content-type",
        writer + o.http2_write_res_headers_content_type,
    );
    append_string_field(
        block,
        b"content-length",
        writer + o.http2_write_res_headers_content_length,
    );
    append_string_field(block, b"date", writer + o.http2_write_res_headers_date);
    submit_header_block(block);
    0
}

/// Appends `name` with the Go string at `at` as its value, unless the string is empty.
#[inline(always)]
fn append_string_field<const N: usize>(block: &mut OpenHeaderBlock, name: &[u8; N], at: u64) {
    match read_user::<[u64; 2]>(at) {
        Some([ptr, len]) if len > 0 => append_named_field(block, name, ptr, len),
        Some(_) => {}
        None => block.dropped_fields += 1,
    }
}

/// Appends every value of a `map[string][]string` (Go swiss table): one group when the
/// directory is empty (a small map), else the groups of its single table. Bigger maps count
/// their fields as dropped.
#[inline(always)]
fn append_map_fields(block: &mut OpenHeaderBlock, map: u64, o: &GoOffsets) {
    let (Some(used), Some(dir_ptr), Some(dir_len)) = (
        read_user::<u64>(map),
        read_user::<u64>(map + o.go_map_dir_ptr),
        read_user::<i64>(map + o.go_map_dir_len),
    ) else {
        block.dropped_fields += 1;
        return;
    };
    if used == 0 || dir_ptr == 0 {
        return;
    }
    let (groups, group_count) = if dir_len == 0 {
        (dir_ptr, 1)
    } else if dir_len == 1 {
        let Some(table) = read_user::<u64>(dir_ptr) else {
            block.dropped_fields += used as u32;
            return;
        };
        let Some([data, length_mask]) = read_user::<[u64; 2]>(table + o.go_map_table_groups) else {
            block.dropped_fields += used as u32;
            return;
        };
        (data, length_mask + 1)
    } else {
        block.dropped_fields += used as u32;
        return;
    };
    let slot_size =
        (o.go_map_header_group_size - o.go_map_header_group_slots) / MAP_GROUP_SLOTS as u64;
    let mut seen: u64 = 0;
    for g in 0..MAX_MAP_GROUPS {
        if g as u64 >= group_count {
            break;
        }
        let group = groups + g as u64 * o.go_map_header_group_size;
        let Some(ctrl) = read_user::<u64>(group) else {
            continue;
        };
        for s in 0..MAP_GROUP_SLOTS {
            if (ctrl >> (8 * s)) & CTRL_EMPTY_OR_DELETED != 0 {
                continue;
            }
            seen += 1;
            let slot = group + o.go_map_header_group_slots + s as u64 * slot_size;
            // key string (pointer, length), then the []string element (pointer, length, cap)
            let Some([key_ptr, key_len, values_ptr, values_len]) = read_user::<[u64; 4]>(slot)
            else {
                block.dropped_fields += 1;
                continue;
            };
            for v in 0..MAX_VALUES_PER_HEADER {
                if v as u64 >= values_len {
                    break;
                }
                let Some([value_ptr, value_len]) =
                    read_user::<[u64; 2]>(values_ptr + v as u64 * 16)
                else {
                    block.dropped_fields += 1;
                    continue;
                };
                append_field(
                    block,
                    key_ptr,
                    key_len,
                    value_ptr,
                    value_len,
                    HEADER_FIELD_FROM_MAP,
                );
            }
            if values_len > MAX_VALUES_PER_HEADER as u64 {
                block.dropped_fields += (values_len - MAX_VALUES_PER_HEADER as u64) as u32;
            }
        }
    }
    if used > seen {
        block.dropped_fields += (used - seen) as u32;
    }
}
