//! apiscope's kernel side: uprobes on Go's `crypto/tls.(*Conn)` Write, Read and Close, and
//! header-level hooks in `golang.org/x/net/http2` (decoded request and response header blocks,
//! which the wire decoder cannot recover on connections older than the capture).
//!
//! Go's amd64 register ABI (Go 1.17+): receiver in RAX, a slice argument's pointer in RBX and
//! length in RCX, the first result in RAX; the running goroutine's `g` in R14. Never uretprobes:
//! Go moves goroutine stacks and a patched return address would crash the process; returns are
//! probed with plain uprobes on each RET instruction.
//!
//! Every hit is a trap inside one of the traced process's threads (~13 µs on the virtualised
//! kernel this was measured on), so each probe earns its place: entry probes sit after the
//! function's stack-bound check (a goroutine that grows its stack re-runs the prologue, and a
//! probe at the entry would fire twice), Read is probed once per TLS record after its call to
//! readRecordOrCCS, or else at its RETs (its arguments read back from their ABI spill slots
//! either way), and events wake the consumer in batches.
//!
//! One file per hook in `probes/`; maps in `maps.rs`; event building shared in `emit.rs`.
#![no_std]
#![no_main]

mod emit;
mod header_block;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: the verifier rejects any path that could get here.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
