//! Where `crypto/tls.(*Conn).Read` takes in a new TLS record, found by disassembly.
//!
//! Read loops `for c.input.Len() == 0 { c.readRecord() ... }` and then copies from `c.input`
//! (a `bytes.Reader` over the record's plaintext). A probe on the instruction after that call
//! sees each record once, whole, however many Reads then consume it: Go's HTTP/2 framer reads
//! a frame header and its payload in two Reads, so this fires about half as often as a probe
//! on Read's RETs, and less still when a record holds several frames.
//!
//! At that instruction the registers are the callee's results (RAX: the error's type word),
//! SP is Read's frame (its entry SP minus the frame size the prologue set up), and the
//! receiver is in its ABI spill slot, where Read's prologue stored it (checked separately).
//! The offset of `Conn.input` differs between Go releases; it is read from the same loop's
//! condition: the inlined `bytes.Reader.Len` loads `len(r.s)` (`input + 8`) and `r.i`
//! (`input + 24`) from the receiver, the only pair of loads 16 bytes apart from one base
//! register in the instructions before the first call.

use iced_x86::{Code, FlowControl, OpKind, Register};

use super::GoBinaryError;
use super::probe_site::cheapest_equivalent_site;
use super::rets::for_each_instruction;

/// How many instructions before the first call the loop condition's loads are looked for
/// (go1.19 to go1.27 have them within the last 12).
const CONDITION_WINDOW: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordReadSites {
    /// Offsets from Read's entry where each call to `readRecordOrCCS` (or `readRecord` where
    /// it is not inlined) has returned: the return address, or the branch on the call's error
    /// right after it, which the kernel emulates (see [`super::probe_site`]) and which sees the
    /// same registers.
    pub after_calls: Vec<u64>,
    /// Offset of `tls.Conn.input` in the `Conn` struct.
    pub conn_input: u64,
}

/// `read_record` holds the entry addresses of `readRecordOrCCS` and `readRecord`.
pub(super) fn record_read_sites(
    code: &[u8],
    entry: u64,
    read_record: &[u64],
) -> Result<RecordReadSites, GoBinaryError> {
    // Plain 64-bit loads `mov reg, [base + displacement]` since the last call, in order.
    let mut loads: Vec<(Register, u64)> = Vec::new();
    let mut condition_loads: Option<Vec<(Register, u64)>> = None;
    let mut after_calls = Vec::new();
    for_each_instruction(code, entry, |instruction| {
        if instruction.flow_control() == FlowControl::Call {
            let target = (instruction.op0_kind() == OpKind::NearBranch64)
                .then(|| instruction.near_branch64());
            if target.is_some_and(|target| read_record.contains(&target)) {
                if condition_loads.is_none() {
                    let start = loads.len().saturating_sub(CONDITION_WINDOW);
                    condition_loads = Some(loads[start..].to_vec());
                }
                let returned = instruction.next_ip() - entry;
                after_calls.push(cheapest_equivalent_site(code, entry, returned));
            }
            loads.clear();
            return;
        }
        if instruction.code() == Code::Mov_r64_rm64
            && instruction.op1_kind() == OpKind::Memory
            && instruction.memory_index() == Register::None
            && !matches!(
                instruction.memory_base(),
                Register::RSP | Register::RBP | Register::RIP | Register::None
            )
        {
            loads.push((
                instruction.memory_base(),
                instruction.memory_displacement64(),
            ));
        }
        // Keep the window bounded on long straight-line stretches.
        if loads.len() > 4 * CONDITION_WINDOW {
            loads.drain(..loads.len() - CONDITION_WINDOW);
        }
    })?;
    let Some(condition_loads) = condition_loads else {
        return Err(GoBinaryError::Unsupported(
            "Read calls neither readRecordOrCCS nor readRecord".into(),
        ));
    };
    let mut inputs: Vec<u64> = condition_loads
        .iter()
        .filter(|&&(base, length)| length >= 8 && condition_loads.contains(&(base, length + 16)))
        .map(|&(_, length)| length - 8)
        .collect();
    inputs.sort_unstable();
    inputs.dedup();
    match inputs.as_slice() {
        [conn_input] => Ok(RecordReadSites {
            after_calls,
            conn_input: *conn_input,
        }),
        [] => Err(GoBinaryError::Unsupported(
            "Read's loop condition c.input.Len() == 0 not recognised before its readRecord call"
                .into(),
        )),
        many => Err(GoBinaryError::Unsupported(format!(
            "Read's loop condition is ambiguous: c.input could be at any of {many:#x?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop head of go1.26's Read, then its call (`e8` rel32 to 0x1100) and the code after.
    fn go126_loop(call_target_rel: i32) -> Vec<u8> {
        let mut code = vec![
            0x48, 0x8b, 0xbe, 0xe0, 0x02, 0x00, 0x00, // mov rdi, [rsi+0x2e0]   (input.i)
            0x4c, 0x8b, 0x86, 0xd0, 0x02, 0x00, 0x00, // mov r8, [rsi+0x2d0]    (len(input.s))
            0x4d, 0x89, 0xc1, // mov r9, r8
            0x49, 0x29, 0xf8, // sub r8, rdi
            0x49, 0x39, 0xf9, // cmp r9, rdi
            0x4d, 0x85, 0xc0, // test r8, r8
            0x75, 0x09, // jne +9
            0x48, 0x89, 0xf0, // mov rax, rsi
            0x31, 0xdb, // xor ebx, ebx
            0xe8, // call rel32
        ];
        code.extend_from_slice(&call_target_rel.to_le_bytes());
        code.extend_from_slice(&[0x48, 0x85, 0xc0, 0xc3]); // test rax, rax; ret
        code
    }

    #[test]
    fn go126_loop_gives_the_input_offset_and_the_return_address() {
        let code = go126_loop(0x100);
        // The call ends where the trailing `test rax, rax; ret` starts.
        let call_end = code.len() - 4;
        let target = 0x1000 + call_end as u64 + 0x100;
        let sites = record_read_sites(&code, 0x1000, &[target]).unwrap();
        assert_eq!(sites.conn_input, 0x2c8);
        assert_eq!(sites.after_calls, [call_end as u64]);
    }

    #[test]
    fn the_probe_moves_to_the_error_check_branch() {
        let mut code = go126_loop(0x100);
        let call_end = code.len() - 4;
        // test rax, rax; jne +0x10 (instead of ret), as go1.26 compiles the error check.
        code.truncate(call_end + 3);
        code.extend_from_slice(&[0x75, 0x10]);
        let target = 0x1000 + call_end as u64 + 0x100;
        let sites = record_read_sites(&code, 0x1000, &[target]).unwrap();
        assert_eq!(sites.after_calls, [call_end as u64 + 3]);
    }

    #[test]
    fn a_call_elsewhere_is_not_a_record_read() {
        let code = go126_loop(0x100);
        let err = record_read_sites(&code, 0x1000, &[0x9999]).unwrap_err();
        assert!(err.to_string().contains("calls neither"), "{err}");
    }

    #[test]
    fn a_loop_condition_without_the_pair_is_refused() {
        let mut code = go126_loop(0x100);
        // Move the second load to 0x2d8: no longer 16 bytes from the first.
        code[10] = 0xd8;
        let call_end = code.len() - 4;
        let target = 0x1000 + call_end as u64 + 0x100;
        let err = record_read_sites(&code, 0x1000, &[target]).unwrap_err();
        assert!(err.to_string().contains("not recognised"), "{err}");
    }
}
