//! `.go.buildinfo`: the Go version (and module list) the linker stamps into every binary since
//! Go 1.13; `-s -w` does not remove it. Same decoding as `debug/buildinfo`.
//!
//! A 32-byte header: magic `"\xff Go buildinf:"` (14 bytes), pointer size, flags. With flag bit 1
//! set (Go 1.18+) two varint-length-prefixed strings follow inline: version, then module info.
//! Without it (Go 1.13-1.17) the header holds two pointers to Go string headers
//! (`runtime.buildVersion`, `runtime.modinfo`) that point at the bytes elsewhere in the image.

use std::fmt;

use super::elf::ElfImage;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_SIZE: usize = 32;
/// The linker aligns the blob to 16 bytes; the search relies on it.
const ALIGNMENT: u64 = 16;
const FLAG_BIG_ENDIAN: u8 = 0x1;
const FLAG_INLINE_STRINGS: u8 = 0x2;
/// Longer strings mean a corrupted header, not a real version or module list.
const MAX_VERSION_LEN: u64 = 256;
const MAX_MODINFO_LEN: u64 = 16 << 20;

/// A Go release as stamped into a binary, e.g. `go1.19.8`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    /// 0 for the first release of a minor version (`go1.20`, `go1.21.0`) and pre-releases.
    pub patch: u32,
    /// The string as found, e.g. `go1.22.1 X:boringcrypto` or `devel go1.23-abc123 ...`.
    pub raw: String,
}

impl GoVersion {
    /// Parses `go1.N[.P]`, ignoring what follows (rc/beta tags, ` X:experiment` suffixes) and an
    /// optional `devel ` prefix.
    pub fn parse(raw: &str) -> Option<GoVersion> {
        let rest = raw
            .strip_prefix("devel ")
            .unwrap_or(raw)
            .strip_prefix("go")?;
        let (major, rest) = leading_number(rest)?;
        let (minor, rest) = leading_number(rest.strip_prefix('.')?)?;
        let patch = rest
            .strip_prefix('.')
            .and_then(leading_number)
            .map_or(0, |(patch, _)| patch);
        Some(GoVersion {
            major,
            minor,
            patch,
            raw: raw.to_owned(),
        })
    }
}

fn leading_number(text: &str) -> Option<(u32, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = text[..digits].parse().ok()?;
    Some((number, &text[digits..]))
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[derive(Clone, Debug)]
pub(super) struct BuildInfo {
    pub version: String,
    /// `runtime/debug.BuildInfo` text without its sentinels; empty for GOPATH builds.
    pub modinfo: String,
}

impl BuildInfo {
    /// Version of a module dependency from the module info, following a `=>` replacement.
    pub fn dependency_version(&self, module_path: &str) -> Option<&str> {
        self.dependencies()
            .into_iter()
            .find(|(path, _)| *path == module_path)
            .map(|(_, version)| version)
    }

    /// Every module dependency with its version, following `=>` replacements (a replacement
    /// line belongs to the `dep` line right before it), in build-info order.
    pub fn dependencies(&self) -> Vec<(&str, &str)> {
        let mut dependencies: Vec<(&str, &str)> = Vec::new();
        for line in self.modinfo.lines() {
            let mut fields = line.split('\t');
            match (fields.next(), fields.next(), fields.next()) {
                (Some("dep"), Some(path), version) => {
                    dependencies.push((path, version.unwrap_or("")));
                }
                (Some("=>"), Some(_), Some(version)) if !version.is_empty() => {
                    if let Some(last) = dependencies.last_mut() {
                        last.1 = version;
                    }
                }
                _ => {}
            }
        }
        dependencies
    }

    /// A build setting (`build\tKEY=VALUE` line, e.g. `GOEXPERIMENT`, `-buildmode`).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.modinfo.lines().find_map(|line| {
            let (name, value) = line.strip_prefix("build\t")?.split_once('=')?;
            (name == key).then_some(value)
        })
    }
}

/// Finds and decodes the build info; `None` if the binary has none (Go < 1.13) or it is damaged.
pub(super) fn read(elf: &ElfImage, data: &[u8]) -> Option<BuildInfo> {
    let vaddr = match elf.section(".go.buildinfo") {
        Some(section) => section.vaddr,
        None => search_magic(elf, data)?,
    };
    let header = elf.bytes_at(data, vaddr, HEADER_SIZE as u64)?;
    if &header[..MAGIC.len()] != MAGIC {
        return None;
    }
    let (ptr_size, flags) = (header[14], header[15]);
    let (version, modinfo) = if flags & FLAG_INLINE_STRINGS != 0 {
        let version_at = vaddr + HEADER_SIZE as u64;
        let (version, modinfo_at) = inline_bytes(elf, data, version_at, MAX_VERSION_LEN)?;
        let (modinfo, _) = inline_bytes(elf, data, modinfo_at, MAX_MODINFO_LEN)?;
        (version, modinfo)
    } else {
        if flags & FLAG_BIG_ENDIAN != 0 || !matches!(ptr_size, 4 | 8) {
            return None;
        }
        let ptr_size = usize::from(ptr_size);
        let version_ptr = read_ptr(&header[16..], ptr_size)?;
        let modinfo_ptr = read_ptr(&header[16 + ptr_size..], ptr_size)?;
        let version = go_string_bytes(elf, data, version_ptr, ptr_size, MAX_VERSION_LEN)?;
        // An empty module list (GOPATH build) is normal; an unreadable one is not fatal.
        let modinfo =
            go_string_bytes(elf, data, modinfo_ptr, ptr_size, MAX_MODINFO_LEN).unwrap_or_default();
        (version, modinfo)
    };
    let version = std::str::from_utf8(version).ok()?;
    if version.is_empty() {
        return None;
    }
    Some(BuildInfo {
        version: version.to_owned(),
        modinfo: strip_modinfo_sentinels(modinfo),
    })
}

/// The blob sits near the start of the first writable segment, 16-byte aligned.
fn search_magic(elf: &ElfImage, data: &[u8]) -> Option<u64> {
    elf.segment_bytes(data)
        .filter(|(segment, _)| segment.writable)
        .find_map(|(segment, bytes)| {
            let first_aligned = (ALIGNMENT - segment.vaddr % ALIGNMENT) % ALIGNMENT;
            (first_aligned as usize..bytes.len())
                .step_by(ALIGNMENT as usize)
                .find(|&at| bytes[at..].starts_with(MAGIC) && bytes.len() - at >= HEADER_SIZE)
                .map(|at| segment.vaddr + at as u64)
        })
}

fn read_ptr(bytes: &[u8], ptr_size: usize) -> Option<u64> {
    let bytes = bytes.get(..ptr_size)?;
    let mut word = [0u8; 8];
    word[..ptr_size].copy_from_slice(bytes);
    Some(u64::from_le_bytes(word))
}

/// The bytes of the Go string whose header (data pointer, length) is at `vaddr`.
fn go_string_bytes<'a>(
    elf: &ElfImage,
    data: &'a [u8],
    vaddr: u64,
    ptr_size: usize,
    max_len: u64,
) -> Option<&'a [u8]> {
    let header = elf.bytes_at(data, vaddr, 2 * ptr_size as u64)?;
    let bytes_at = read_ptr(header, ptr_size)?;
    let len = read_ptr(&header[ptr_size..], ptr_size)?;
    if len == 0 {
        return Some(&[]);
    }
    if len > max_len {
        return None;
    }
    elf.bytes_at(data, bytes_at, len)
}

/// The uvarint-length-prefixed bytes at `vaddr`, and the address after them.
fn inline_bytes<'a>(
    elf: &ElfImage,
    data: &'a [u8],
    vaddr: u64,
    max_len: u64,
) -> Option<(&'a [u8], u64)> {
    let segment = elf.segment_containing(vaddr)?;
    let available = segment.file_size - (vaddr - segment.vaddr);
    let (len, varint_len) = read_uvarint(elf.bytes_at(data, vaddr, available.min(10))?)?;
    if len > max_len {
        return None;
    }
    let start = vaddr + varint_len as u64;
    Some((elf.bytes_at(data, start, len)?, start + len))
}

fn read_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// `cmd/go` frames the module info with 16-byte sentinels (`modload.infoStart`/`infoEnd`),
/// which are not UTF-8: strip them from the bytes first.
fn strip_modinfo_sentinels(modinfo: &[u8]) -> String {
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        String::from_utf8_lossy(&modinfo[16..modinfo.len() - 16]).into_owned()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        let parse = |raw| GoVersion::parse(raw).map(|v| (v.major, v.minor, v.patch));
        assert_eq!(parse("go1.19.8"), Some((1, 19, 8)));
        assert_eq!(parse("go1.20"), Some((1, 20, 0)));
        assert_eq!(parse("go1.21rc2"), Some((1, 21, 0)));
        assert_eq!(parse("go1.22.1 X:boringcrypto"), Some((1, 22, 1)));
        assert_eq!(parse("devel go1.23-abcdef Tue Jan 2"), Some((1, 23, 0)));
        assert_eq!(parse("go1.26.8"), Some((1, 26, 8)));
        assert_eq!(parse("1.19.8"), None);
        assert_eq!(parse("go"), None);
        assert_eq!(parse("go1"), None);
        assert_eq!(parse("go1."), None);
        assert_eq!(parse("go99999999999.1"), None);
    }

    #[test]
    fn dependency_versions_follow_replacements() {
        let info = BuildInfo {
            version: "go1.22.0".into(),
            modinfo: "path\tk8s.io/kubernetes/cmd/kube-apiserver\n\
                      mod\tk8s.io/kubernetes\t(devel)\t\n\
                      dep\tgolang.org/x/net\tv0.17.0\th1:abc=\n\
                      dep\tgoogle.golang.org/grpc\tv1.58.0\n\
                      =>\tgoogle.golang.org/grpc\tv1.58.3\th1:def=\n\
                      dep\tk8s.io/api\tv0.0.0\n\
                      =>\t./staging/src/k8s.io/api\t\t\n"
                .into(),
        };
        assert_eq!(info.dependency_version("golang.org/x/net"), Some("v0.17.0"));
        assert_eq!(
            info.dependency_version("google.golang.org/grpc"),
            Some("v1.58.3")
        );
        assert_eq!(info.dependency_version("k8s.io/api"), Some("v0.0.0"));
        assert_eq!(info.dependency_version("golang.org/x/sys"), None);
        assert_eq!(
            info.dependencies(),
            [
                ("golang.org/x/net", "v0.17.0"),
                ("google.golang.org/grpc", "v1.58.3"),
                ("k8s.io/api", "v0.0.0"),
            ]
        );
    }

    #[test]
    fn build_settings() {
        let info = BuildInfo {
            version: "go1.24.13".into(),
            modinfo: "path\tapiscope.test/x\n\
                      build\t-buildmode=pie\n\
                      build\tGOEXPERIMENT=noswissmap\n\
                      build\tCGO_ENABLED=0\n"
                .into(),
        };
        assert_eq!(info.setting("GOEXPERIMENT"), Some("noswissmap"));
        assert_eq!(info.setting("-buildmode"), Some("pie"));
        assert_eq!(info.setting("GOARCH"), None);
    }

    #[test]
    fn uvarints_decode_and_reject_overlong() {
        assert_eq!(read_uvarint(&[0x08]), Some((8, 1)));
        assert_eq!(read_uvarint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(read_uvarint(&[0x80; 11]), None);
        assert_eq!(read_uvarint(&[0x80]), None);
    }
}
