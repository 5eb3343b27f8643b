//! `golang.org/x/net/http2/hpack.(*Encoder).WriteField(f HeaderField)`, after its stack-bound
//! check: appends to the goroutine's open response block, if any (the encoder also serves
//! other writers). RAX = `e`; the struct argument `f` is split over registers in field order:
//! RBX/RCX = `Name` (pointer, length), RDI/RSI = `Value`, R8 = `Sensitive`.

use apiscope_common::{HEADER_FIELD_SENSITIVE, MAX_HEADER_FIELDS, Probe};
use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::uprobe, programs::ProbeContext};

use crate::header_block::append_field;
use crate::maps::{OPEN_RESPONSES, hit, process_address, regs};

#[uprobe]
pub fn hpack_write_field(ctx: ProbeContext) -> u32 {
    hit(Probe::HpackWriteField);
    let r = regs(&ctx);
    let (goroutine, name_ptr, name_len, value_ptr, value_len, sensitive) =
        (r.r14, r.rbx, r.rcx, r.rdi, r.rsi, r.r8 & 0xff);
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(block) = OPEN_RESPONSES.get_ptr_mut(&process_address(pid, goroutine)) else {
        return 0;
    };
    // SAFETY: only this goroutine touches its entry, and a goroutine runs on one thread at a time.
    let block = unsafe { &mut *block };
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
        if sensitive != 0 {
            HEADER_FIELD_SENSITIVE
        } else {
            0
        },
    );
    0
}
