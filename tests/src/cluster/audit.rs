//! Reading the apiserver's JSON-lines audit log (`audit.k8s.io/v1` `Event`s), the oracle that
//! captured requests are compared against.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// One audit event: the fields tests compare, plus the whole event as `raw`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// RequestReceived, ResponseStarted (watches), ResponseComplete or Panic.
    pub stage: String,
    /// The Kubernetes verb (get, list, watch, create, ...), not the HTTP method.
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub object_ref: Option<AuditObjectRef>,
    #[serde(skip)]
    pub username: Option<String>,
    #[serde(skip)]
    pub response_code: Option<u16>,
    #[serde(skip)]
    pub raw: serde_json::Value,
    /// Position in the log (0-based), e.g. to look only at events after some point.
    #[serde(skip)]
    pub sequence: usize,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub subresource: Option<String>,
}

impl AuditEvent {
    fn from_json(raw: serde_json::Value, sequence: usize) -> Result<AuditEvent> {
        let mut event = AuditEvent::deserialize(&raw)?;
        event.sequence = sequence;
        event.username = raw
            .pointer("/user/username")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        event.response_code = raw
            .pointer("/responseStatus/code")
            .and_then(serde_json::Value::as_u64)
            .and_then(|code| u16::try_from(code).ok());
        event.raw = raw;
        Ok(event)
    }

    /// The object's resource, if the request was about one.
    pub fn resource(&self) -> Option<&str> {
        self.object_ref.as_ref()?.resource.as_deref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object_ref.as_ref()?.namespace.as_deref()
    }

    pub fn name(&self) -> Option<&str> {
        self.object_ref.as_ref()?.name.as_deref()
    }
}

/// All complete events in the log. The apiserver may be writing the last line right now, so an
/// unparsable *last* line is skipped; anywhere else it is an error.
pub fn read_events(path: &Path) -> Result<Vec<AuditEvent>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        // Nothing audited yet.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let last_complete = if text.ends_with('\n') {
        lines.len()
    } else {
        lines.len().saturating_sub(1)
    };
    lines[..last_complete]
        .iter()
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line)
                .map_err(anyhow::Error::from)
                .and_then(|raw| AuditEvent::from_json(raw, index))
                .with_context(|| format!("audit log {} line {}", path.display(), index + 1))
        })
        .collect()
}
