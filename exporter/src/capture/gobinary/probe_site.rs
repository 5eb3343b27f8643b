//! Where on an instruction a uprobe costs least.
//!
//! An x86-64 uprobe replaces the probed instruction with `int3`. After the handler, the kernel
//! either emulates the original instruction (nops, `push reg`, `call`/`jmp`/`jcc` rel: see
//! `branch_setup_xol_ops` and `push_setup_xol_ops` in arch/x86/kernel/uprobes.c) or copies it
//! out of line and single-steps it, a second trap. On this project's virtualised machines the
//! single step is almost the whole cost: an empty uprobe on `cmp`, `mov`, `test` or `ret` cost
//! 60-88 µs per hit, one on `push`, `call`, `jmp`, `jcc` or a nop 1.0-3.0 µs (one run, a C
//! loop, the machine busy; BENCHMARKS.md has the measurement). So probes go on emulated
//! instructions where that observes the same state.

use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind};

/// Whether the kernel emulates `instruction` when a uprobe on it fires, instead of
/// single-stepping it out of line (Linux 6.x on x86-64; the conservative subset).
pub fn is_emulated(instruction: &Instruction) -> bool {
    match instruction.flow_control() {
        FlowControl::Call | FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
            // Relative targets only: indirect calls and jumps are single-stepped.
            matches!(
                instruction.op0_kind(),
                OpKind::NearBranch64 | OpKind::NearBranch32 | OpKind::NearBranch16
            )
        }
        FlowControl::Next => {
            instruction.mnemonic() == Mnemonic::Nop || matches!(instruction.code(), Code::Push_r64)
        }
        _ => false,
    }
}

/// The offset (from `entry`) at which a probe meant for the instruction at `offset` observes
/// the same registers and memory at least cost: `offset` itself, or the conditional branch
/// right after a `test`/`cmp` there (they set only flags, which no probe reads). Go tests a
/// callee's error result that way (`call f; test rax, rax; jne`).
pub(super) fn cheapest_equivalent_site(code: &[u8], entry: u64, offset: u64) -> u64 {
    let Some(start) = usize::try_from(offset)
        .ok()
        .filter(|&start| start < code.len())
    else {
        return offset;
    };
    let mut decoder = Decoder::with_ip(64, &code[start..], entry + offset, DecoderOptions::NONE);
    let mut first = Instruction::default();
    decoder.decode_out(&mut first);
    if first.is_invalid() || is_emulated(&first) {
        return offset;
    }
    let flags_only = matches!(first.mnemonic(), Mnemonic::Test | Mnemonic::Cmp);
    if !flags_only || !decoder.can_decode() {
        return offset;
    }
    let mut next = Instruction::default();
    decoder.decode_out(&mut next);
    if !next.is_invalid()
        && next.flow_control() == FlowControl::ConditionalBranch
        && is_emulated(&next)
    {
        return next.ip() - entry;
    }
    offset
}

/// Whether a probe at `offset` (from `entry`) is on an emulated instruction.
pub(super) fn is_emulated_at(code: &[u8], entry: u64, offset: u64) -> bool {
    let Some(start) = usize::try_from(offset)
        .ok()
        .filter(|&start| start < code.len())
    else {
        return false;
    };
    let mut decoder = Decoder::with_ip(64, &code[start..], entry + offset, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    decoder.decode_out(&mut instruction);
    !instruction.is_invalid() && is_emulated(&instruction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_then_jcc_moves_to_the_branch() {
        // test rax, rax; jne +0x2a; mov rax, rbx
        let code = [0x48, 0x85, 0xc0, 0x75, 0x2a, 0x48, 0x89, 0xd8];
        assert_eq!(cheapest_equivalent_site(&code, 0x1000, 0), 3);
        assert!(is_emulated_at(&code, 0x1000, 3));
        assert!(!is_emulated_at(&code, 0x1000, 0));
    }

    #[test]
    fn a_cmp_with_memory_then_jcc32_moves_too() {
        // cmp rsp, [r14+0x10]; jbe rel32
        let code = [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x7a, 0x03, 0x00, 0x00];
        assert_eq!(cheapest_equivalent_site(&code, 0, 0), 4);
    }

    #[test]
    fn other_instructions_stay_where_they_are() {
        // mov rax, rbx; jne +2: the mov changes a register, the branch would see another state.
        let code = [0x48, 0x89, 0xd8, 0x75, 0x02];
        assert_eq!(cheapest_equivalent_site(&code, 0, 0), 0);
        // test rax, rax; ret: no branch follows.
        let code = [0x48, 0x85, 0xc0, 0xc3];
        assert_eq!(cheapest_equivalent_site(&code, 0, 0), 0);
        // push rbp is emulated already.
        let code = [0x55, 0x48, 0x89, 0xe5];
        assert_eq!(cheapest_equivalent_site(&code, 0, 0), 0);
        assert!(is_emulated_at(&code, 0, 0));
        // Out of range: unchanged, never a panic.
        assert_eq!(cheapest_equivalent_site(&code, 0, 99), 99);
        assert!(!is_emulated_at(&code, 0, 99));
    }

    #[test]
    fn emulated_kinds() {
        let decode = |bytes: &[u8]| {
            let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
            decoder.decode()
        };
        for emulated in [
            &[0x90][..],                         // nop
            &[0x0f, 0x1f, 0x44, 0x00, 0x00][..], // nop5
            &[0x55][..],                         // push rbp
            &[0x41, 0x54][..],                   // push r12
            &[0xe8, 0, 0, 0, 0][..],             // call rel32
            &[0xeb, 0x00][..],                   // jmp rel8
            &[0x74, 0x00][..],                   // je rel8
        ] {
            assert!(is_emulated(&decode(emulated)), "{emulated:x?}");
        }
        for stepped in [
            &[0xc3][..],             // ret
            &[0x48, 0x85, 0xc0][..], // test rax, rax
            &[0xff, 0xd0][..],       // call rax
            &[0x48, 0x89, 0xe5][..], // mov rbp, rsp
        ] {
            assert!(!is_emulated(&decode(stepped)), "{stepped:x?}");
        }
    }
}
