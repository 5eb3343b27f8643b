//! `crypto/tls.(*Conn).Read(b []byte) (int, error)`, probed at each RET instruction only: RAX
//! is `n`, and the receiver and `b` are read back from their ABI spill slots (entry SP + 8:
//! at a RET, SP is back at its entry value), where Read's prologue stored them before any call
//! or branch — userspace checks that in the function's code before attaching. One hit per call
//! instead of an entry and a return probe, and no per-goroutine state.

use apiscope_common::{ChunkKind, KernelCounter, Probe, SpilledReadArgs};
use aya_ebpf::{macros::uprobe, programs::ProbeContext};

use crate::emit::{emit_payload, read_user};
use crate::maps::{count, hit, regs};

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
