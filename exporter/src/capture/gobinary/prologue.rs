//! What a Go function's prologue does before its body, found by disassembly: where its
//! stack-bound check ends, and which register arguments it stores to their ABI spill slots.
//!
//! Go's amd64 prologue: `cmp rsp, [r14+0x10]` (or `lea r12, [rsp-N]; cmp r12, [r14+0x10]`
//! for larger frames), `jbe morestack`; the morestack trampoline grows the goroutine stack
//! and jumps back to the entry. A probe at the entry therefore fires twice for a call that
//! grows the stack; one placed after the check's jump fires once, with the argument
//! registers untouched.
//!
//! Register arguments have spill slots reserved by the caller at `entry SP + 8` onwards (ABI
//! order, 8 bytes each for pointer-sized words). A function that keeps an argument live across
//! a call stores it there; if it does so in the straight-line code before its first call or
//! branch, every later instruction of the function — each RET included, where SP is back at
//! its entry value — can read the argument at `SP + 8 + slot`.

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register,
};

use super::GoBinaryError;

/// How far the straight-line prologue is followed (Go's are a handful of instructions).
const MAX_PROLOGUE_INSTRUCTIONS: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prologue {
    /// Offset from the entry of the first instruction after the stack-bound check (0 when the
    /// function has none: a leaf with a small frame cannot grow its stack).
    pub after_stack_check: u64,
    /// (byte offset of the slot from `entry SP + 8`, register) for each 64-bit register
    /// argument stored to its spill slot before the first call or branch.
    pub spilled: Vec<(u64, Register)>,
    /// Bytes SP moved down in the prologue (frame pointer push and `sub rsp`): in the body,
    /// the spill slots are at `SP + frame_size + 8` onwards.
    pub frame_size: u64,
}

impl Prologue {
    /// Whether `register` was stored to the slot at `slot` (bytes from `entry SP + 8`).
    pub fn spills(&self, slot: u64, register: Register) -> bool {
        self.spilled.contains(&(slot, register))
    }
}

pub(super) fn prologue(code: &[u8], entry: u64) -> Result<Prologue, GoBinaryError> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut result = Prologue::default();
    // Bytes SP moved down since the entry.
    let mut sp_delta: u64 = 0;
    let mut stack_check_compare = false;
    for index in 0..MAX_PROLOGUE_INSTRUCTIONS {
        if !decoder.can_decode() {
            break;
        }
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return Err(GoBinaryError::Malformed(format!(
                "invalid x86-64 instruction at {:#x} (function at {entry:#x})",
                instruction.ip()
            )));
        }
        if index < 3 && is_stack_bound_compare(&instruction) {
            stack_check_compare = true;
            continue;
        }
        if stack_check_compare && result.after_stack_check == 0 {
            if instruction.flow_control() == FlowControl::ConditionalBranch {
                result.after_stack_check = instruction.next_ip() - entry;
                continue;
            }
            // A compare against the stack bound not followed by its branch: not Go's check.
            stack_check_compare = false;
        }
        match instruction.flow_control() {
            FlowControl::Next => {}
            // A call, branch or return ends the straight-line prologue.
            _ => break,
        }
        match instruction.code() {
            Code::Push_r64 if instruction.op0_register() == Register::RBP => sp_delta += 8,
            Code::Sub_rm64_imm8 | Code::Sub_rm64_imm32
                if instruction.op0_kind() == OpKind::Register
                    && instruction.op0_register() == Register::RSP =>
            {
                sp_delta += instruction.immediate(1);
            }
            Code::Mov_rm64_r64
                if instruction.op0_kind() == OpKind::Memory
                    && instruction.memory_base() == Register::RSP
                    && instruction.memory_index() == Register::None =>
            {
                let displacement = instruction.memory_displacement64();
                if let Some(slot) = displacement.checked_sub(sp_delta + 8) {
                    result.spilled.push((slot, instruction.op1_register()));
                }
            }
            _ => {}
        }
    }
    result.frame_size = sp_delta;
    Ok(result)
}

/// `cmp rsp|r12, [r14+0x10]` in either operand order: the goroutine's stack bound
/// (`g.stackguard0`) against SP.
fn is_stack_bound_compare(instruction: &Instruction) -> bool {
    if instruction.mnemonic() != Mnemonic::Cmp || instruction.op_count() != 2 {
        return false;
    }
    let register = match (instruction.op0_kind(), instruction.op1_kind()) {
        (OpKind::Register, OpKind::Memory) => instruction.op0_register(),
        (OpKind::Memory, OpKind::Register) => instruction.op1_register(),
        _ => return false,
    };
    matches!(register, Register::RSP | Register::R12)
        && instruction.memory_base() == Register::R14
        && instruction.memory_index() == Register::None
        && instruction.memory_displacement64() == 0x10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `crypto/tls.(*Conn).Read` as go1.26 compiles it (frame pointer pushed, then SUB).
    const READ_GO126: [u8; 40] = [
        0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
        0x0f, 0x86, 0x7a, 0x03, 0x00, 0x00, // jbe morestack
        0x55, // push rbp
        0x48, 0x89, 0xe5, // mov rbp, rsp
        0x48, 0x83, 0xec, 0x58, // sub rsp, 0x58
        0x66, 0x44, 0x0f, 0xd6, 0x7c, 0x24, 0x50, // movq [rsp+0x50], xmm15
        0x48, 0x89, 0x44, 0x24, 0x68, // mov [rsp+0x68], rax
        0x48, 0x89, 0x4c, 0x24, 0x78, // mov [rsp+0x78], rcx
        0x48, 0x89, 0x5c, 0x24, 0x70, // mov [rsp+0x70], rbx
    ];

    #[test]
    fn go126_read_spills_its_arguments_after_the_stack_check() {
        let mut with_call = READ_GO126.to_vec();
        with_call.extend_from_slice(&[0xe8, 0, 0, 0, 0, 0x48, 0x89, 0x54, 0x24, 0x80]);
        let p = prologue(&with_call, 0x5a_c020).unwrap();
        assert_eq!(p.after_stack_check, 10);
        assert!(p.spills(0, Register::RAX));
        assert!(p.spills(8, Register::RBX));
        assert!(p.spills(16, Register::RCX));
        // push rbp + sub rsp, 0x58: the receiver's slot 0x68 is at SP + 0x60 + 8.
        assert_eq!(p.frame_size, 0x60);
        // Nothing after the call counts.
        assert!(!p.spilled.iter().any(|(_, r)| *r == Register::RDX));
    }

    #[test]
    fn go119_prologue_saves_the_frame_pointer_inside_the_frame() {
        // go1.19: sub rsp, 0x68; mov [rsp+0x60], rbp; lea rbp, [rsp+0x60]; spills at 0x70..
        let code = [
            0x49, 0x3b, 0x66,
            0x10, // cmp rsp, [r14+0x10]  (go1.19 writes cmp [r14+0x10], rsp)
            0x0f, 0x86, 0xc2, 0x03, 0x00, 0x00, // jbe
            0x48, 0x83, 0xec, 0x68, // sub rsp, 0x68
            0x48, 0x89, 0x6c, 0x24, 0x60, // mov [rsp+0x60], rbp
            0x48, 0x8d, 0x6c, 0x24, 0x60, // lea rbp, [rsp+0x60]
            0x48, 0x89, 0x8c, 0x24, 0x80, 0x00, 0x00, 0x00, // mov [rsp+0x80], rcx
            0x48, 0x89, 0x5c, 0x24, 0x78, // mov [rsp+0x78], rbx
            0x48, 0x89, 0x44, 0x24, 0x70, // mov [rsp+0x70], rax
            0xc3, // ret
        ];
        let p = prologue(&code, 0x1000).unwrap();
        assert_eq!(p.after_stack_check, 10);
        assert!(p.spills(0, Register::RAX) && p.spills(8, Register::RBX));
        assert!(p.spills(16, Register::RCX));
        assert_eq!(p.frame_size, 0x68);
        // The saved frame pointer sits below the entry SP: not an argument slot.
        assert!(!p.spilled.iter().any(|(_, r)| *r == Register::RBP));
    }

    #[test]
    fn large_frames_check_the_bound_through_r12() {
        let code = [
            0x4c, 0x8d, 0x64, 0x24, 0xb8, // lea r12, [rsp-0x48]
            0x4d, 0x3b, 0x66, 0x10, // cmp r12, [r14+0x10]
            0x0f, 0x86, 0x93, 0x07, 0x00, 0x00, // jbe
            0x55, // push rbp
            0xc3,
        ];
        assert_eq!(prologue(&code, 0x1000).unwrap().after_stack_check, 15);
    }

    #[test]
    fn a_function_without_a_stack_check_is_probed_at_its_entry() {
        let code = [
            0x48, 0x89, 0x44, 0x24, 0x08, // mov [rsp+8], rax (a NOSPLIT leaf spilling)
            0xc3,
        ];
        let p = prologue(&code, 0x1000).unwrap();
        assert_eq!(p.after_stack_check, 0);
        assert!(p.spills(0, Register::RAX));
    }

    #[test]
    fn a_branch_before_the_spills_hides_them() {
        let code = [
            0x48, 0x85, 0xc0, // test rax, rax
            0x74, 0x05, // je +5
            0x48, 0x89, 0x44, 0x24, 0x08, // mov [rsp+8], rax: only on one path
            0xc3,
        ];
        assert!(prologue(&code, 0x1000).unwrap().spilled.is_empty());
    }
}
