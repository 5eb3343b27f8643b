//! `crypto/tls.(*Conn).Write(b []byte)`, after its stack-bound check: the plaintext the process
//! sends. RAX = the `*tls.Conn`, RBX/RCX = `b`.

use apiscope_common::{ChunkKind, Probe};
use aya_ebpf::{macros::uprobe, programs::ProbeContext};

use crate::emit::emit_payload;
use crate::maps::{hit, regs};

#[uprobe]
pub fn tls_write_entry(ctx: ProbeContext) -> u32 {
    hit(Probe::TlsWriteEntry);
    let r = regs(&ctx);
    let (conn, goroutine, buf, len) = (r.rax, r.r14, r.rbx, r.rcx);
    emit_payload(ChunkKind::Write, conn, goroutine, buf, len);
    0
}
