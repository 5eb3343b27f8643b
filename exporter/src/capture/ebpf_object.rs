//! Where the eBPF object comes from: `--ebpf-object PATH`, or the copy embedded at build time.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The object bytes, 8-byte aligned as the ELF parser wants them.
pub fn load(path: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(path) = path {
        return std::fs::read(path)
            .with_context(|| format!("reading eBPF object {}", path.display()));
    }
    match embedded() {
        Some(bytes) => Ok(bytes.to_vec()),
        None => bail!(
            "this apiscope binary was built without its eBPF programs: pass --ebpf-object PATH \
             or build with `make build` (sets APISCOPE_EBPF_OBJECT)"
        ),
    }
}

#[cfg(apiscope_embedded_ebpf)]
fn embedded() -> Option<&'static [u8]> {
    Some(aya::include_bytes_aligned!(env!(
        "APISCOPE_EMBEDDED_EBPF_OBJECT"
    )))
}

#[cfg(not(apiscope_embedded_ebpf))]
fn embedded() -> Option<&'static [u8]> {
    None
}
