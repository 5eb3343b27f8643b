//! The simplest sink: API requests as JSON lines or a human-readable table, on stdout or a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;

use crate::capture::TlsChunk;
use crate::k8s::ApiRequest;
use crate::sinks::Sink;

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

/// The JSON-lines or table writer, as a sink. Buffered: a batch becomes visible at `flush`.
pub struct RequestWriter {
    out: Box<dyn Write + Send>,
    format: OutputFormat,
    /// Requests written but not flushed yet.
    unflushed: bool,
}

impl RequestWriter {
    /// Opens `output` ("-" for stdout) and, for the table, writes its header.
    pub fn open(output: &str, format: OutputFormat) -> Result<Self> {
        let mut out = open_output(output)?;
        if format == OutputFormat::Table {
            writeln!(out, "{}", table_header())?;
        }
        Ok(RequestWriter {
            out,
            format,
            unflushed: false,
        })
    }
}

impl Sink for RequestWriter {
    fn send(&mut self, request: &ApiRequest) -> Result<()> {
        write_request(&mut self.out, self.format, request)?;
        self.unflushed = true;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if std::mem::take(&mut self.unflushed) {
            self.out.flush()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, _deadline: Duration) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// A buffered writer on `output`: a file (created or truncated) or "-" for stdout.
pub fn open_output(output: &str) -> Result<Box<dyn Write + Send>> {
    Ok(if output == "-" {
        Box::new(BufWriter::new(std::io::stdout()))
    } else {
        Box::new(BufWriter::new(
            File::create(output).with_context(|| format!("creating {output}"))?,
        ))
    })
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
