//! Go's `.gopclntab`: the runtime's own function table. The linker keeps it in every binary,
//! stripped or not, because stack unwinding and tracebacks need it.
//!
//! Layouts (see `runtime/symtab.go` and `debug/gosym/pclntab.go` of each release):
//!
//! | magic        | Go        | header after the 8 magic/quantum/ptrsize bytes                        |
//! |--------------|-----------|-----------------------------------------------------------------------|
//! | `0xfffffffb` | 1.2–1.15  | nfunc, then the functab itself                                        |
//! | `0xfffffffa` | 1.16–1.17 | nfunc, nfiles, funcnametab, cutab, filetab, pctab, functab offsets    |
//! | `0xfffffff0` | 1.18–1.19 | nfunc, nfiles, textStart, funcnametab, cutab, filetab, pctab, functab |
//! | `0xfffffff1` | 1.20+     | as 1.18                                                               |
//!
//! Header words are pointer-sized. The functab is `nfunc` pairs (entry, funcoff) plus one final
//! entry (the end of the last function): pointer-sized absolute addresses before 1.18, `u32`
//! offsets from `textStart` since. `funcoff` locates the function's `_func`, whose name offset
//! (an `int32`) follows its entry field.

use std::ops::Range;

use super::GoBinaryError;

/// Which pclntab layout a binary uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PclntabFormat {
    /// Go 1.2 to 1.15 (magic `0xfffffffb`).
    Go12,
    /// Go 1.16 and 1.17 (magic `0xfffffffa`).
    Go116,
    /// Go 1.18 and 1.19 (magic `0xfffffff0`).
    Go118,
    /// Go 1.20 and later (magic `0xfffffff1`).
    Go120,
}

impl PclntabFormat {
    fn from_magic(magic: u32) -> Option<PclntabFormat> {
        match magic {
            0xffff_fffb => Some(PclntabFormat::Go12),
            0xffff_fffa => Some(PclntabFormat::Go116),
            0xffff_fff0 => Some(PclntabFormat::Go118),
            0xffff_fff1 => Some(PclntabFormat::Go120),
            _ => None,
        }
    }

    /// Since 1.18 function entries are `u32` offsets from the start of the text.
    pub fn entries_relative_to_text(self) -> bool {
        matches!(self, PclntabFormat::Go118 | PclntabFormat::Go120)
    }
}

/// The parsed fixed header of a pclntab.
#[derive(Clone, Copy, Debug)]
pub(super) struct PclntabHeader {
    pub format: PclntabFormat,
    pub ptr_size: usize,
    pub function_count: usize,
    /// `textStart` as stored (1.18+ only). Go 1.26 stopped writing it (always 0) and a PIE
    /// binary may hold it unrelocated, so callers treat 0 as "find it elsewhere".
    pub stored_text_start: u64,
    /// Where function names start (offsets in `_func.nameoff` are relative to it).
    pub funcname_offset: usize,
    /// Where the functab starts; `_func` offsets are relative to it, too.
    pub functab_offset: usize,
}

/// A function as the table describes it; `name` is a byte range of the table.
#[derive(Clone, Debug)]
pub(super) struct TableFunction {
    pub entry: u64,
    pub end: u64,
    pub name: Range<usize>,
}

/// Quick check used when searching memory for a table: magic, two zero pad bytes, a plausible
/// instruction quantum and pointer size.
pub(super) fn looks_like_header(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    PclntabFormat::from_magic(magic).is_some()
        && head[4] == 0
        && head[5] == 0
        && matches!(head[6], 1 | 2 | 4)
        && matches!(head[7], 4 | 8)
}

fn malformed(what: impl Into<String>) -> GoBinaryError {
    GoBinaryError::Malformed(format!("pclntab: {}", what.into()))
}

fn read_u32(table: &[u8], offset: usize) -> Result<u32, GoBinaryError> {
    offset
        .checked_add(4)
        .and_then(|end| table.get(offset..end))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| malformed(format!("read of 4 bytes at {offset:#x} is out of bounds")))
}

fn read_word(table: &[u8], offset: usize, ptr_size: usize) -> Result<u64, GoBinaryError> {
    let bytes = offset
        .checked_add(ptr_size)
        .and_then(|end| table.get(offset..end))
        .ok_or_else(|| {
            malformed(format!(
                "read of {ptr_size} bytes at {offset:#x} is out of bounds"
            ))
        })?;
    let mut word = [0u8; 8];
    word[..ptr_size].copy_from_slice(bytes);
    Ok(u64::from_le_bytes(word))
}

/// A header word used as an offset into the table: must lie within it.
fn table_offset(table: &[u8], value: u64, what: &str) -> Result<usize, GoBinaryError> {
    usize::try_from(value)
        .ok()
        .filter(|&offset| offset < table.len())
        .ok_or_else(|| malformed(format!("{what} offset {value:#x} is outside the table")))
}

pub(super) fn parse_header(table: &[u8]) -> Result<PclntabHeader, GoBinaryError> {
    if table.len() < 8 {
        return Err(malformed("shorter than its header"));
    }
    let magic = read_u32(table, 0)?;
    let format = PclntabFormat::from_magic(magic)
        .ok_or_else(|| malformed(format!("unknown magic {magic:#010x}")))?;
    if !looks_like_header(table) {
        return Err(malformed(
            "bad pad bytes, instruction quantum or pointer size",
        ));
    }
    let ptr_size = usize::from(table[7]);
    let word = |index: usize| read_word(table, 8 + index * ptr_size, ptr_size);

    let function_count = usize::try_from(word(0)?).map_err(|_| malformed("function count"))?;
    if function_count == 0 {
        return Err(malformed("no functions"));
    }
    let header = match format {
        PclntabFormat::Go12 => PclntabHeader {
            format,
            ptr_size,
            function_count,
            stored_text_start: 0,
            // Names are relative to the table start; the functab follows the count.
            funcname_offset: 0,
            functab_offset: 8 + ptr_size,
        },
        PclntabFormat::Go116 => PclntabHeader {
            format,
            ptr_size,
            function_count,
            stored_text_start: 0,
            funcname_offset: table_offset(table, word(2)?, "funcnametab")?,
            functab_offset: table_offset(table, word(6)?, "functab")?,
        },
        PclntabFormat::Go118 | PclntabFormat::Go120 => PclntabHeader {
            format,
            ptr_size,
            function_count,
            stored_text_start: word(2)?,
            funcname_offset: table_offset(table, word(3)?, "funcnametab")?,
            functab_offset: table_offset(table, word(7)?, "functab")?,
        },
    };
    // Reject counts the table cannot hold before anything is allocated for them.
    let functab_bytes = function_count
        .checked_add(1)
        .and_then(|slots| slots.checked_mul(functab_slot_size(&header)))
        .and_then(|bytes| bytes.checked_add(header.functab_offset));
    if functab_bytes.is_none_or(|end| end > table.len()) {
        return Err(malformed(format!(
            "{function_count} functions do not fit in a {}-byte table",
            table.len()
        )));
    }
    Ok(header)
}

/// Bytes per functab slot: (entry, funcoff).
fn functab_slot_size(header: &PclntabHeader) -> usize {
    if header.format.entries_relative_to_text() {
        8
    } else {
        2 * header.ptr_size
    }
}

/// Reads every function. `text_start` is only used by the 1.18+ layouts.
pub(super) fn read_functions(
    table: &[u8],
    header: &PclntabHeader,
    text_start: u64,
) -> Result<Vec<TableFunction>, GoBinaryError> {
    let relative = header.format.entries_relative_to_text();
    let ptr_size = header.ptr_size;
    let slot_size = functab_slot_size(header);
    // Entry of slot `index`, and the table offset of its `_func` (only for index < nfunc).
    let read_entry = |index: usize| -> Result<u64, GoBinaryError> {
        let at = header.functab_offset + index * slot_size;
        if relative {
            text_start
                .checked_add(u64::from(read_u32(table, at)?))
                .ok_or_else(|| malformed("entry address overflows"))
        } else {
            read_word(table, at, ptr_size)
        }
    };
    let read_func_offset = |index: usize| -> Result<usize, GoBinaryError> {
        let at = header.functab_offset + index * slot_size;
        let raw = if relative {
            u64::from(read_u32(table, at + 4)?)
        } else {
            read_word(table, at + ptr_size, ptr_size)?
        };
        // Before 1.16 `funcoff` is relative to the table; since, to the functab.
        let base = if header.format == PclntabFormat::Go12 {
            0
        } else {
            header.functab_offset
        };
        usize::try_from(raw)
            .ok()
            .and_then(|offset| offset.checked_add(base))
            .ok_or_else(|| malformed("function offset overflows"))
    };

    let mut functions = Vec::with_capacity(header.function_count);
    let mut entry = read_entry(0)?;
    for index in 0..header.function_count {
        let next_entry = read_entry(index + 1)?;
        if next_entry < entry {
            return Err(malformed(format!(
                "functab is not sorted at slot {index} ({entry:#x} > {next_entry:#x})"
            )));
        }
        let func = read_func_offset(index)?;
        // `_func` starts with the entry again: a cheap consistency check that catches a wrong
        // table (or a false magic match) early.
        let (func_entry, name_field) = if relative {
            (
                text_start.checked_add(u64::from(read_u32(table, func)?)),
                func.checked_add(4),
            )
        } else {
            (
                Some(read_word(table, func, ptr_size)?),
                func.checked_add(ptr_size),
            )
        };
        if func_entry != Some(entry) {
            return Err(malformed(format!(
                "_func of slot {index} disagrees with its functab entry"
            )));
        }
        let name_field = name_field.ok_or_else(|| malformed("name field offset overflows"))?;
        let name_offset = read_u32(table, name_field)? as i32;
        let name_start = usize::try_from(name_offset)
            .ok()
            .and_then(|offset| offset.checked_add(header.funcname_offset))
            .filter(|&start| start < table.len())
            .ok_or_else(|| malformed(format!("name of slot {index} is outside the table")))?;
        let name_len = table[name_start..]
            .iter()
            .position(|&byte| byte == 0)
            .ok_or_else(|| malformed(format!("name of slot {index} is not terminated")))?;
        functions.push(TableFunction {
            entry,
            end: next_entry,
            name: name_start..name_start + name_len,
        });
        entry = next_entry;
    }
    Ok(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made Go 1.20 table: header, three functions, names.
    fn synthetic_go120_table() -> Vec<u8> {
        let ptr = 8usize;
        let header_len = 8 + 8 * ptr;
        let names = b"main.a\0main.b\0runtime.c\0";
        let funcname_offset = header_len;
        let functab_offset = funcname_offset + names.len();
        let funcs_offset_in_functab = 3 * 8 + 4; // 3 slots + end entry
        let mut table = vec![0u8; header_len];
        table[..4].copy_from_slice(&0xffff_fff1u32.to_le_bytes());
        table[6] = 1;
        table[7] = ptr as u8;
        let mut set_word = |index: usize, value: u64| {
            table[8 + index * ptr..8 + (index + 1) * ptr].copy_from_slice(&value.to_le_bytes())
        };
        set_word(0, 3); // nfunc
        set_word(2, 0x40_1000); // textStart
        set_word(3, funcname_offset as u64);
        set_word(7, functab_offset as u64);
        table.extend_from_slice(names);
        let entries = [0x0u32, 0x40, 0x100];
        let name_offsets = [0i32, 7, 14];
        for (i, entry) in entries.iter().enumerate() {
            table.extend_from_slice(&entry.to_le_bytes());
            table.extend_from_slice(&((funcs_offset_in_functab + i * 8) as u32).to_le_bytes());
        }
        table.extend_from_slice(&0x180u32.to_le_bytes());
        for (entry, name) in entries.iter().zip(name_offsets) {
            table.extend_from_slice(&entry.to_le_bytes());
            table.extend_from_slice(&name.to_le_bytes());
        }
        table
    }

    #[test]
    fn synthetic_table_parses() {
        let table = synthetic_go120_table();
        let header = parse_header(&table).unwrap();
        assert_eq!(header.format, PclntabFormat::Go120);
        assert_eq!(header.stored_text_start, 0x40_1000);
        let functions = read_functions(&table, &header, 0x40_1000).unwrap();
        let described: Vec<_> = functions
            .iter()
            .map(|f| {
                (
                    f.entry,
                    f.end,
                    std::str::from_utf8(&table[f.name.clone()]).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            described,
            [
                (0x40_1000, 0x40_1040, "main.a"),
                (0x40_1040, 0x40_1100, "main.b"),
                (0x40_1100, 0x40_1180, "runtime.c"),
            ]
        );
    }

    #[test]
    fn every_truncation_of_a_table_is_an_error() {
        let table = synthetic_go120_table();
        for len in 0..table.len() - 1 {
            let truncated = &table[..len];
            let result = parse_header(truncated)
                .and_then(|header| read_functions(truncated, &header, 0x40_1000));
            assert!(result.is_err(), "a table cut to {len} bytes parsed");
        }
    }

    #[test]
    fn corrupted_fields_are_errors() {
        let good = synthetic_go120_table();
        let corrupt = |at: usize, bytes: &[u8]| {
            let mut table = good.clone();
            table[at..at + bytes.len()].copy_from_slice(bytes);
            parse_header(&table).and_then(|header| read_functions(&table, &header, 0x40_1000))
        };
        assert!(
            corrupt(0, &0xffff_fff2u32.to_le_bytes()).is_err(),
            "unknown magic"
        );
        assert!(corrupt(7, &[3]).is_err(), "pointer size");
        assert!(
            corrupt(8, &u64::MAX.to_le_bytes()).is_err(),
            "huge function count"
        );
        assert!(corrupt(8, &0u64.to_le_bytes()).is_err(), "no functions");
        assert!(
            corrupt(8 + 3 * 8, &u64::MAX.to_le_bytes()).is_err(),
            "funcnametab offset"
        );
        assert!(
            corrupt(8 + 7 * 8, &0x0fff_ffff_u64.to_le_bytes()).is_err(),
            "functab offset"
        );
        let functab = good.len() - 3 * 8 - (3 * 8 + 4);
        assert!(
            corrupt(functab + 8, &0x200u32.to_le_bytes()).is_err(),
            "unsorted entries"
        );
        assert!(
            corrupt(functab + 4, &0xffffu32.to_le_bytes()).is_err(),
            "funcoff out of range"
        );
        let first_func = good.len() - 3 * 8;
        assert!(
            corrupt(first_func + 4, &(-1i32).to_le_bytes()).is_err(),
            "negative nameoff"
        );
        assert!(
            corrupt(first_func, &0x20u32.to_le_bytes()).is_err(),
            "_func entry mismatch"
        );
    }
}
