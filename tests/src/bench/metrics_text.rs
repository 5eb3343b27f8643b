//! The few Prometheus text-format samples the bench reads from apiscope's `/metrics`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result};

/// Ring-buffer records the kernel side could not reserve (apiscope's capture metrics).
pub const RINGBUF_FULL_DROPS: &str = "apiscope_capture_ringbuf_full_drops_total";
/// Header blocks lost in the kernel, a ring buffer full among the reasons.
pub const HEADER_BLOCKS_FAILED: &str = "apiscope_capture_header_blocks_failed_total";
/// Uprobe hits by program, where the build exports them.
pub const PROBE_HITS: &str = "apiscope_capture_probe_hits_total";

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of a text exposition (comments and unparsable lines skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"`: values are quoted, with `\\`, `\"` and `\n` escapes.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((name.trim().to_string(), value));
        rest = after[end + 2..].trim_start_matches(',').trim();
    }
    Some(labels)
}

/// The sum of a metric over its label sets; `None` when the metric is absent.
pub fn total(samples: &[Sample], name: &str) -> Option<f64> {
    let mut matching = samples.iter().filter(|s| s.name == name).peekable();
    matching.peek()?;
    Some(matching.map(|s| s.value).sum())
}

/// GET http://address/metrics (plain HTTP/1.1, bounded).
pub fn scrape(address: &str) -> Result<String> {
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: apiscope\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apiscope_metrics_page() {
        let samples = parse(include_str!("testdata/apiscope-metrics.txt"));
        assert!(total(&samples, RINGBUF_FULL_DROPS).is_some());
        assert!(total(&samples, "apiscope_capture_events_total").is_some());
        assert_eq!(total(&samples, "apiscope_no_such_metric_total"), None);
    }

    #[test]
    fn labels_with_escapes_and_timestamps() {
        let samples = parse(
            "# HELP x y\nhits_total{probe=\"tls_read\",note=\"a\\\"b,c\"} 12 1700000000\nup 1\n",
        );
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].label("probe"), Some("tls_read"));
        assert_eq!(samples[0].label("note"), Some("a\"b,c"));
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(total(&samples, "up"), Some(1.0));
    }
}
