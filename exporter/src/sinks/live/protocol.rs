//! The messages of docs/live-view.md (protocol version 1).

use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;
/// History rows a `subscribe` without `history` gets.
pub const DEFAULT_HISTORY_LIMIT: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Subscribe {
        #[serde(default)]
        filter: String,
        #[serde(default)]
        history: Option<HistoryAsk>,
    },
}

#[derive(Debug, Deserialize)]
pub struct HistoryAsk {
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub since_unix_nano: Option<u64>,
}

fn default_limit() -> usize {
    DEFAULT_HISTORY_LIMIT
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Hello {
        protocol: u32,
        mode: &'a str,
        server: &'a str,
        max_history: usize,
    },
    HistoryEnd {
        count: usize,
    },
    Dropped {
        count: u64,
        reason: &'a str,
    },
    Error {
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        column: Option<usize>,
    },
}

impl ServerMessage<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("protocol messages serialize")
    }
}

/// `{"type":"requests","items":[Row, ...]}` from rows already serialized.
pub fn requests_message<'a>(rows: impl Iterator<Item = &'a str>) -> String {
    let mut text = String::from(r#"{"type":"requests","items":["#);
    for (i, row) in rows.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(row);
    }
    text.push_str("]}");
    text
}
