//! RET instructions of a function, found by disassembly.
//!
//! Go functions must not be hooked with uretprobes (the runtime moves goroutine stacks and the
//! patched return address crashes the process), so returns are hooked by placing plain uprobes
//! on every RET. A probe placed anywhere but on an instruction boundary corrupts the target's
//! code, so the decoding is strict: the whole body must decode as valid instructions.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic};

use super::GoBinaryError;

/// Offsets (from the start of `code`) of every near RET in a function body whose first
/// instruction is at virtual address `entry`. `code` must end on an instruction boundary (the
/// next function's entry; the `INT3` padding in between decodes as instructions too).
pub(super) fn ret_offsets(code: &[u8], entry: u64) -> Result<Vec<u64>, GoBinaryError> {
    let mut rets = Vec::new();
    for_each_instruction(code, entry, |instruction| {
        // Near returns only (`ret`, `ret imm16`); Go never emits far returns.
        if instruction.mnemonic() == Mnemonic::Ret {
            rets.push(instruction.ip() - entry);
        }
    })?;
    Ok(rets)
}

/// Decodes the whole body strictly, in order: an invalid instruction is an error, since a
/// probe placed off an instruction boundary would corrupt the target's code.
pub(super) fn for_each_instruction(
    code: &[u8],
    entry: u64,
    mut visit: impl FnMut(&Instruction),
) -> Result<(), GoBinaryError> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return Err(GoBinaryError::Malformed(format!(
                "invalid x86-64 instruction at {:#x} (function at {entry:#x})",
                instruction.ip()
            )));
        }
        visit(&instruction);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_ret_and_skips_padding() {
        // A Go-like body: early return, stack-growth trampoline at the end, INT3 padding.
        let code = [
            0x49, 0x3b, 0x66, 0x10, // cmp rsp, [r14+0x10]
            0x76, 0x0a, // jbe morestack
            0x48, 0x85, 0xc0, // test rax, rax
            0x74, 0x01, // je +1
            0xc3, // ret
            0xc2, 0x08, 0x00, // ret 8
            0x90, // nop
            0xcb, // retf: not a near return
            0xe8, 0x00, 0x00, 0x00, 0x00, // morestack: call
            0xeb, 0xe8, // jmp back to the entry
            0xcc, 0xcc, 0xcc, // padding
        ];
        assert_eq!(ret_offsets(&code, 0x40_1000).unwrap(), [11, 12]);
    }

    #[test]
    fn a_body_cut_mid_instruction_is_an_error() {
        // `mov rax, imm64` cut short: the decoder runs out of bytes.
        let code = [0xc3, 0x48, 0xb8, 0x01, 0x02];
        assert!(ret_offsets(&code, 0x1000).is_err());
    }

    #[test]
    fn empty_body_has_no_rets() {
        assert_eq!(ret_offsets(&[], 0x1000).unwrap(), Vec::<u64>::new());
    }
}
