//! The few ELF facts the Go analysis needs: loadable segments (to turn virtual addresses into
//! file offsets, which is what uprobes attach to) and a handful of named sections.
//!
//! Only the program headers are required. Section headers are optional: a binary whose section
//! table is missing or damaged is still analysed, and callers fall back to searching the
//! segments for the structures they need.

use object::LittleEndian;
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};

use super::GoBinaryError;

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug)]
pub(super) struct LoadSegment {
    pub vaddr: u64,
    pub file_offset: u64,
    /// Bytes backed by the file; the rest of the segment (up to `p_memsz`, e.g. `.bss`) is zeroes.
    pub file_size: u64,
    pub executable: bool,
    pub writable: bool,
}

impl LoadSegment {
    fn contains(&self, vaddr: u64) -> bool {
        vaddr >= self.vaddr && vaddr - self.vaddr < self.file_size
    }
}

/// A section found by name: where it lives in memory and in the file.
#[derive(Clone, Copy, Debug)]
pub(super) struct SectionRange {
    pub vaddr: u64,
    pub file_offset: usize,
    pub size: usize,
}

#[derive(Debug)]
pub(super) struct ElfImage {
    pub machine: u16,
    pub segments: Vec<LoadSegment>,
    /// Named sections we care about; empty when the section table is missing or unreadable.
    sections: Vec<(Vec<u8>, SectionRange)>,
}

/// Sections worth remembering. Everything else in the section table is ignored.
const INTERESTING_SECTIONS: &[&[u8]] = &[
    b".text",
    b".gopclntab",
    // Go 1.2-1.15 PIE binaries linked externally keep the table here.
    b".data.rel.ro.gopclntab",
    b".go.buildinfo",
];

impl ElfImage {
    pub fn parse(data: &[u8]) -> Result<ElfImage, GoBinaryError> {
        let malformed = |what: &str, err: object::read::Error| {
            GoBinaryError::Malformed(format!("{what}: {err}"))
        };
        if data.len() < 6 || &data[..4] != elf::ELFMAG.as_slice() {
            return Err(GoBinaryError::NotElf);
        }
        // e_ident[EI_CLASS] and e_ident[EI_DATA].
        if data[4] != elf::ELFCLASS64 || data[5] != elf::ELFDATA2LSB {
            return Err(GoBinaryError::Unsupported(
                "only 64-bit little-endian ELF binaries are supported".into(),
            ));
        }
        let header =
            FileHeader64::<LittleEndian>::parse(data).map_err(|e| malformed("ELF header", e))?;
        let endian = LittleEndian;
        let machine = header.e_machine(endian);

        let program_headers = header
            .program_headers(endian, data)
            .map_err(|e| malformed("program headers", e))?;
        let segments: Vec<LoadSegment> = program_headers
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(|ph| {
                let flags = ph.p_flags(endian);
                LoadSegment {
                    vaddr: ph.p_vaddr(endian),
                    file_offset: ph.p_offset(endian),
                    file_size: ph.p_filesz(endian),
                    executable: flags & elf::PF_X != 0,
                    writable: flags & elf::PF_W != 0,
                }
            })
            .collect();
        if segments.is_empty() {
            return Err(GoBinaryError::Malformed("no PT_LOAD segments".into()));
        }
        for segment in &segments {
            let in_file = segment
                .file_offset
                .checked_add(segment.file_size)
                .is_some_and(|end| end <= data.len() as u64);
            if !in_file || segment.vaddr.checked_add(segment.file_size).is_none() {
                return Err(GoBinaryError::Malformed(format!(
                    "PT_LOAD at {:#x} extends past the end of the file",
                    segment.vaddr
                )));
            }
        }

        // A damaged section table is not fatal: the segments are enough to search by magic.
        let sections = header
            .sections(endian, data)
            .map(|table| {
                table
                    .iter()
                    .filter_map(|section| {
                        let name = table.section_name(endian, section).ok()?;
                        if !INTERESTING_SECTIONS.contains(&name)
                            || section.sh_type(endian) == elf::SHT_NOBITS
                        {
                            return None;
                        }
                        let file_offset = usize::try_from(section.sh_offset(endian)).ok()?;
                        let size = usize::try_from(section.sh_size(endian)).ok()?;
                        (file_offset.checked_add(size)? <= data.len()).then_some((
                            name.to_vec(),
                            SectionRange {
                                vaddr: section.sh_addr(endian),
                                file_offset,
                                size,
                            },
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();

        Ok(ElfImage {
            machine,
            segments,
            sections,
        })
    }

    pub fn section(&self, name: &str) -> Option<SectionRange> {
        self.sections
            .iter()
            .find(|(section_name, _)| section_name.as_slice() == name.as_bytes())
            .map(|(_, range)| *range)
    }

    pub fn segment_containing(&self, vaddr: u64) -> Option<&LoadSegment> {
        self.segments.iter().find(|segment| segment.contains(vaddr))
    }

    /// File offset of a virtual address, if a `PT_LOAD` segment maps it from the file.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segment_containing(vaddr)
            .map(|segment| segment.file_offset + (vaddr - segment.vaddr))
    }

    /// `len` file bytes at a virtual address, all within one segment.
    pub fn bytes_at<'a>(&self, data: &'a [u8], vaddr: u64, len: u64) -> Option<&'a [u8]> {
        let segment = self.segment_containing(vaddr)?;
        let offset_in_segment = vaddr - segment.vaddr;
        if len > segment.file_size - offset_in_segment {
            return None;
        }
        let start = usize::try_from(segment.file_offset + offset_in_segment).ok()?;
        data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
    }

    pub fn is_executable(&self, vaddr: u64) -> bool {
        self.segment_containing(vaddr)
            .is_some_and(|segment| segment.executable)
    }

    /// The file bytes of each segment, with the segment, for searches by magic.
    pub fn segment_bytes<'a>(
        &'a self,
        data: &'a [u8],
    ) -> impl Iterator<Item = (&'a LoadSegment, &'a [u8])> + 'a {
        self.segments.iter().filter_map(move |segment| {
            let start = usize::try_from(segment.file_offset).ok()?;
            let len = usize::try_from(segment.file_size).ok()?;
            Some((segment, data.get(start..start.checked_add(len)?)?))
        })
    }
}
