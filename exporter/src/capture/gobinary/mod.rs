//! Analysis of a (possibly stripped) Go ELF binary: what the uprobes need to attach.
//!
//! kube-apiserver release builds are linked with `-s -w`: no `.symtab`, no DWARF. What stays is
//! what the Go runtime itself needs at run time, and that is enough:
//! - `.gopclntab` ([`pclntab`]): every function's name and entry address;
//! - `.go.buildinfo` ([`buildinfo`]): the Go version, which keys the struct offsets table
//!   ([`struct_offsets`]);
//! - the code itself, by disassembly: RET instructions ([`GoBinary::ret_file_offsets`]) and
//!   what a prologue does ([`GoBinary::prologue`]: where the stack check ends, which
//!   arguments are spilled where).
//!
//! Uprobes attach to file offsets, so addresses are turned into offsets through the `PT_LOAD`
//! program headers. Everything read from the file is bounds-checked: a malformed binary is an
//! error, never a panic.

mod buildinfo;
mod elf;
mod error;
mod offsets;
mod pclntab;
mod probe_site;
mod prologue;
mod record_read;
mod rets;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use buildinfo::GoVersion;
pub use offsets::{
    Http2Offsets, Http2OffsetsSource, VERIFIED_GO_MINOR_VERSIONS,
    VERIFIED_STD_HTTP2_GO_MINOR_VERSIONS, VERIFIED_XNET_VERSIONS, compare_module_versions,
    http2_offsets, newer_release_offsets, std_http2_offsets, struct_offsets,
};
pub use pclntab::PclntabFormat;
pub use probe_site::is_emulated;
pub use prologue::Prologue;
pub use record_read::RecordReadSites;

pub use error::{GoBinaryError, Result};

use buildinfo::BuildInfo;
use elf::ElfImage;
use pclntab::PclntabHeader;

/// A function from the pclntab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFunction {
    pub name: String,
    /// Entry virtual address.
    pub address: u64,
    /// The next function's entry (so the range includes the alignment padding after the body).
    pub end: u64,
    /// File offset of the entry: where a uprobe on the function attaches.
    pub file_offset: u64,
}

/// One pclntab function; the name is a byte range of the file.
#[derive(Clone, Debug)]
struct FunctionRecord {
    entry: u64,
    end: u64,
    name_start: usize,
    name_len: usize,
}

/// A parsed Go binary. Holds the whole file in memory (the RET search reads its code), so keep
/// it only while setting probes up.
pub struct GoBinary {
    data: Vec<u8>,
    elf: ElfImage,
    pclntab_format: PclntabFormat,
    /// Sorted by entry address.
    functions: Vec<FunctionRecord>,
    build_info: Option<BuildInfo>,
    go_version: Option<GoVersion>,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("size", &self.data.len())
            .field("pclntab_format", &self.pclntab_format)
            .field("functions", &self.functions.len())
            .field("go_version", &self.go_version)
            .finish_non_exhaustive()
    }
}

/// Where `runtime.moduledata.text` sits, in pointer-sized words: after `pcHeader` (1 word), five
/// slices (`funcnametab`, `cutab`, `filetab`, `pctab`, `pclntable`: 15), `ftab` (3),
/// `findfunctab`, `minpc`, `maxpc` (3). Unchanged from Go 1.16 to 1.26 (checked against DWARF
/// in the tests).
const MODULEDATA_TEXT_WORD: usize = 22;

impl GoBinary {
    pub fn open(path: &Path) -> Result<GoBinary> {
        let data = std::fs::read(path).map_err(|source| GoBinaryError::Io {
            path: path.to_owned(),
            source,
        })?;
        GoBinary::from_bytes(data)
    }

    pub fn from_bytes(data: Vec<u8>) -> Result<GoBinary> {
        let elf = ElfImage::parse(&data)?;
        let (pclntab_format, functions) = load_function_table(&data, &elf)?;
        let build_info = buildinfo::read(&elf, &data);
        let go_version = build_info
            .as_ref()
            .and_then(|info| GoVersion::parse(&info.version));
        Ok(GoBinary {
            data,
            elf,
            pclntab_format,
            functions,
            build_info,
            go_version,
        })
    }

    /// The Go release that built the binary, from `.go.buildinfo`; `None` before Go 1.13 (no
    /// build info) or if it is unreadable.
    pub fn go_version(&self) -> Option<&GoVersion> {
        self.go_version.as_ref()
    }

    /// The version of a module the binary was built with, e.g. `golang.org/x/net`, from the
    /// build info's module list (empty for GOPATH/vendor builds such as Kubernetes 1.20).
    pub fn dependency_version(&self, module_path: &str) -> Option<&str> {
        self.build_info.as_ref()?.dependency_version(module_path)
    }

    /// Every module dependency and its version (after replacement) from the build info.
    pub fn dependencies(&self) -> Vec<(&str, &str)> {
        self.build_info
            .as_ref()
            .map(BuildInfo::dependencies)
            .unwrap_or_default()
    }

    /// A build setting from the build info (`GOEXPERIMENT`, `-buildmode`, `CGO_ENABLED`...).
    pub fn build_setting(&self, key: &str) -> Option<&str> {
        self.build_info.as_ref()?.setting(key)
    }

    pub fn pclntab_format(&self) -> PclntabFormat {
        self.pclntab_format
    }

    /// The function with exactly this name. Since Go 1.17 an assembly function, or a Go
    /// function called from assembly, appears twice under one name (the body and its ABI
    /// wrapper; `.symtab` would call one `<name>.abi0`): this returns the first in address
    /// order. Compiled Go code such as `crypto/tls.(*Conn).Read` has no such twin.
    /// Go 1.17 also keeps `·` in generated names (`(*Conn).Close·dwrap·19`), as the table has it.
    pub fn function(&self, name: &str) -> Option<GoFunction> {
        self.functions
            .iter()
            .find(|record| self.name_bytes(record) == name.as_bytes())
            .map(|record| self.to_function(record))
    }

    /// Functions named `suffix` or ending in `/` + `suffix`: library code under whatever path
    /// it was vendored. `golang.org/x/net/http2.(*serverConn).processHeaders` matches
    /// `k8s.io/kubernetes/vendor/golang.org/x/net/http2.(*serverConn).processHeaders`, not
    /// `example.com/notgolang.org/x/net/...`. In address order.
    pub fn functions_with_suffix(&self, suffix: &str) -> Vec<GoFunction> {
        let suffix = suffix.as_bytes();
        self.functions
            .iter()
            .filter(|record| {
                let name = self.name_bytes(record);
                name.len() >= suffix.len() && {
                    let (prefix, tail) = name.split_at(name.len() - suffix.len());
                    tail == suffix && (prefix.is_empty() || prefix.ends_with(b"/"))
                }
            })
            .map(|record| self.to_function(record))
            .collect()
    }

    /// Every function in the table, in address order.
    pub fn functions(&self) -> impl Iterator<Item = GoFunction> + '_ {
        self.functions.iter().map(|record| self.to_function(record))
    }

    /// File offsets of every RET instruction in `[function.address, function.end)`: where the
    /// "return" probes of a function go (never uretprobes on Go code).
    pub fn ret_file_offsets(&self, function: &GoFunction) -> Result<Vec<u64>> {
        let (code, entry_offset) = self.code(function)?;
        Ok(rets::ret_offsets(code, function.address)?
            .into_iter()
            .map(|offset| entry_offset + offset)
            .collect())
    }

    /// What the function's prologue does before its body (see [`Prologue`]).
    pub fn prologue(&self, function: &GoFunction) -> Result<Prologue> {
        let (code, _) = self.code(function)?;
        prologue::prologue(code, function.address)
    }

    /// Where `read` (`crypto/tls.(*Conn).Read`) takes in a new TLS record, as file offsets
    /// (see [`RecordReadSites`]).
    pub fn record_read_sites(&self, read: &GoFunction) -> Result<RecordReadSites> {
        let read_record: Vec<u64> = [
            "crypto/tls.(*Conn).readRecordOrCCS",
            "crypto/tls.(*Conn).readRecord",
        ]
        .iter()
        .filter_map(|name| self.function(name))
        .map(|function| function.address)
        .collect();
        let (code, entry_offset) = self.code(read)?;
        let mut sites = record_read::record_read_sites(code, read.address, &read_record)?;
        for after_call in &mut sites.after_calls {
            *after_call += entry_offset;
        }
        Ok(sites)
    }

    /// File offset where an entry probe fires once per call: after the stack-bound check
    /// (see [`Prologue::after_stack_check`]).
    pub fn entry_probe_file_offset(&self, function: &GoFunction) -> Result<u64> {
        Ok(function.file_offset + self.prologue(function)?.after_stack_check)
    }

    /// Whether a uprobe at `file_offset` sits on an instruction the kernel emulates rather
    /// than single-steps (see [`probe_site`]): a single-stepped hit costs the target far more.
    pub fn is_emulated_probe_site(&self, file_offset: u64) -> bool {
        let Ok(start) = usize::try_from(file_offset) else {
            return false;
        };
        let end = start.saturating_add(16).min(self.data.len());
        self.data
            .get(start..end)
            .is_some_and(|code| probe_site::is_emulated_at(code, 0, 0))
    }

    /// The function's x86-64 code and the file offset of its entry.
    fn code(&self, function: &GoFunction) -> Result<(&[u8], u64)> {
        if self.elf.machine != object::elf::EM_X86_64 {
            return Err(GoBinaryError::Unsupported(format!(
                "code analysis needs x86-64 code, ELF machine is {}",
                self.elf.machine
            )));
        }
        let not_mapped = || GoBinaryError::FunctionNotMapped {
            name: function.name.clone(),
            address: function.address,
            end: function.end,
        };
        let len = function
            .end
            .checked_sub(function.address)
            .ok_or_else(not_mapped)?;
        if !self.elf.is_executable(function.address) {
            return Err(not_mapped());
        }
        let code = self
            .elf
            .bytes_at(&self.data, function.address, len)
            .ok_or_else(not_mapped)?;
        let entry_offset = self
            .elf
            .file_offset(function.address)
            .ok_or_else(not_mapped)?;
        Ok((code, entry_offset))
    }

    fn name_bytes(&self, record: &FunctionRecord) -> &[u8] {
        // In bounds: checked when the table was read.
        &self.data[record.name_start..record.name_start + record.name_len]
    }

    fn to_function(&self, record: &FunctionRecord) -> GoFunction {
        GoFunction {
            name: String::from_utf8_lossy(self.name_bytes(record)).into_owned(),
            address: record.entry,
            end: record.end,
            // Mapped: every function was checked to lie in an executable segment.
            file_offset: self.elf.file_offset(record.entry).unwrap_or_default(),
        }
    }
}

/// Finds the pclntab (by section name, else by searching the segments for its header) and
/// reads its functions.
fn load_function_table(
    data: &[u8],
    elf: &ElfImage,
) -> Result<(PclntabFormat, Vec<FunctionRecord>)> {
    let section = elf
        .section(".gopclntab")
        .or_else(|| elf.section(".data.rel.ro.gopclntab"));
    if let Some(section) = section {
        let table = &data[section.file_offset..section.file_offset + section.size];
        return read_table(data, elf, table, section.file_offset, section.vaddr);
    }
    // No section table: the header is pointer-aligned somewhere in a loaded segment. Take the
    // first candidate that reads back as a consistent table.
    for (segment, bytes) in elf.segment_bytes(data) {
        let mut at = 0;
        while at + 8 <= bytes.len() {
            if pclntab::looks_like_header(&bytes[at..]) {
                let file_offset = segment.file_offset as usize + at;
                let vaddr = segment.vaddr + at as u64;
                if let Ok(found) = read_table(data, elf, &bytes[at..], file_offset, vaddr) {
                    return Ok(found);
                }
            }
            at += 4;
        }
    }
    Err(GoBinaryError::NoPclntab)
}

fn read_table(
    data: &[u8],
    elf: &ElfImage,
    table: &[u8],
    table_file_offset: usize,
    table_vaddr: u64,
) -> Result<(PclntabFormat, Vec<FunctionRecord>)> {
    let header = pclntab::parse_header(table)?;
    let text_start = if header.format.entries_relative_to_text() {
        text_start(data, elf, &header, table_vaddr)?
    } else {
        0
    };
    let functions = pclntab::read_functions(table, &header, text_start)?;
    let records = functions
        .into_iter()
        .map(|function| {
            // A wrong text start (or a false match) shows up as code outside the code.
            let segment = elf
                .segment_containing(function.entry)
                .filter(|segment| segment.executable)
                .filter(|segment| function.end - segment.vaddr <= segment.file_size);
            if segment.is_none() {
                return Err(GoBinaryError::Malformed(format!(
                    "function at {:#x}..{:#x} is outside the executable segments",
                    function.entry, function.end
                )));
            }
            Ok(FunctionRecord {
                entry: function.entry,
                end: function.end,
                name_start: table_file_offset + function.name.start,
                name_len: function.name.len(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((header.format, records))
}

/// The address 1.18+ function entries are relative to (`runtime.text`). The header holds it
/// up to Go 1.25; Go 1.26 writes 0 there. Then `runtime.firstmoduledata` has it. Last resort:
/// the `.text` section, which starts with `runtime.text` when the Go linker did the linking.
fn text_start(
    data: &[u8],
    elf: &ElfImage,
    header: &PclntabHeader,
    table_vaddr: u64,
) -> Result<u64> {
    if header.stored_text_start != 0 {
        return Ok(header.stored_text_start);
    }
    moduledata_text(data, elf, header, table_vaddr)
        .or_else(|| elf.section(".text").map(|text| text.vaddr))
        .ok_or_else(|| {
            GoBinaryError::Malformed("cannot find the text start of the function table".into())
        })
}

/// `runtime.firstmoduledata.text`. The module data is found in a writable segment as the
/// pointer-aligned pair of words (pcHeader, funcnametab.ptr) pointing at this table.
fn moduledata_text(
    data: &[u8],
    elf: &ElfImage,
    header: &PclntabHeader,
    table_vaddr: u64,
) -> Option<u64> {
    let ptr_size = header.ptr_size;
    let funcnametab_vaddr = table_vaddr.checked_add(header.funcname_offset as u64)?;
    let word = |bytes: &[u8], at: usize| -> Option<u64> {
        let bytes = bytes.get(at..at.checked_add(ptr_size)?)?;
        let mut word = [0u8; 8];
        word[..ptr_size].copy_from_slice(bytes);
        Some(u64::from_le_bytes(word))
    };
    elf.segment_bytes(data)
        .filter(|(segment, _)| segment.writable)
        .find_map(|(segment, bytes)| {
            let first_aligned = (ptr_size - (segment.vaddr % ptr_size as u64) as usize) % ptr_size;
            (first_aligned..bytes.len())
                .step_by(ptr_size)
                .find_map(|at| {
                    if word(bytes, at)? != table_vaddr
                        || word(bytes, at + ptr_size)? != funcnametab_vaddr
                    {
                        return None;
                    }
                    word(bytes, at + MODULEDATA_TEXT_WORD * ptr_size)
                        .filter(|&text| elf.is_executable(text))
                })
        })
}
