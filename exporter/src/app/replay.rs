//! `apiscope replay`: a recording decoded exactly as `capture` decodes live.

use std::path::Path;

use anyhow::Result;

use super::output::Output;
use crate::record::ChunkReader;

/// Streams the recording through `output`: a recording can be far larger than memory.
pub fn replay(file: &Path, mut output: Output) -> Result<()> {
    let mut reader = ChunkReader::open(file)?;
    let mut offset_known = false;
    while let Some(chunk) = reader.next() {
        let chunk = chunk?;
        if !offset_known {
            if let Some(offset) = reader.realtime_offset_ns() {
                output.set_realtime_offset(offset);
                offset_known = true;
            }
        }
        output.chunk(&chunk)?;
    }
    output.finish()
}
