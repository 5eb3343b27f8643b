//! The simplest sink: API requests as JSON lines or a human-readable table, on stdout or a file.

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;

use crate::capture::TlsChunk;
use crate::k8s::ApiRequest;

/// What `capture` and `replay` print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One ApiRequest JSON object per line.
    Json,
    /// One aligned line per request, for people.
    Table,
    /// The raw capture: one TLS chunk JSON object per line (payload base64), no decoding.
    Chunks,
}

pub fn write_request(
    out: &mut dyn Write,
    format: OutputFormat,
    request: &ApiRequest,
) -> Result<()> {
    match format {
        OutputFormat::Json => {
            serde_json::to_writer(&mut *out, request)?;
            out.write_all(b"\n")?;
        }
        OutputFormat::Table => writeln!(out, "{}", table_row(request))?,
        OutputFormat::Chunks => {}
    }
    Ok(())
}

pub fn write_chunk(out: &mut dyn Write, chunk: &TlsChunk) -> Result<()> {
    serde_json::to_writer(&mut *out, chunk)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Column titles matching [`table_row`].
pub fn table_header() -> String {
    format!(
        "{:<12} {:>4} {:<8} {:>9} {:<24} {:<40} {:<22} {}",
        "TIME", "CODE", "VERB", "MS", "CLIENT", "RESOURCE", "NAMESPACE/NAME", "AUDIT-ID"
    )
}

pub fn table_row(r: &ApiRequest) -> String {
    let secs = r.start_unix_nano / 1_000_000_000;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        r.start_unix_nano / 1_000_000 % 1000
    );
    let code = r.code.map_or("-".to_owned(), |c| c.to_string());
    let resource = if r.is_resource_request {
        let mut s = r.resource.clone();
        if !r.subresource.is_empty() {
            s = format!("{s}/{}", r.subresource);
        }
        if !r.group.is_empty() {
            s = format!("{s}.{}", r.group);
        }
        s
    } else {
        r.path.clone()
    };
    let object = match (r.namespace.as_str(), r.name.as_str()) {
        ("", "") => "-".to_owned(),
        ("", name) => name.to_owned(),
        (ns, "") => format!("{ns}/"),
        (ns, name) => format!("{ns}/{name}"),
    };
    format!(
        "{time:<12} {code:>4} {:<8} {:>9.1} {:<24} {resource:<40} {object:<22} {}",
        r.metric_verb,
        r.duration_seconds * 1000.0,
        r.component,
        r.audit_id.as_deref().unwrap_or("-")
    )
}
