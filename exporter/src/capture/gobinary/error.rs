//! What can be wrong with a binary apiscope is asked to probe.

use std::ops::RangeInclusive;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ELF file")]
    NotElf,
    #[error("unsupported binary: {0}")]
    Unsupported(String),
    #[error("no Go function table (.gopclntab) found: not a Go binary?")]
    NoPclntab,
    #[error("malformed Go binary: {0}")]
    Malformed(String),
    #[error("Go {version}: struct offsets are only known for go1.{}-go1.{}", known.start(), known.end())]
    UnsupportedGoVersion {
        version: String,
        /// The Go 1 minor releases the offsets table covers.
        known: RangeInclusive<u32>,
    },
    #[error("function {name} ({address:#x}..{end:#x}) is not mapped from the file")]
    FunctionNotMapped {
        name: String,
        address: u64,
        end: u64,
    },
}

pub type Result<T, E = GoBinaryError> = std::result::Result<T, E>;
