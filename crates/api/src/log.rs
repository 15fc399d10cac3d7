//! The agents' structured logs, gathered by `halo log`: one [`LogLine`] per tracing event, as
//! each agent writes it to `DATA_DIR/logs/agent.jsonl` and as the API returns it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// One line of an agent's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct LogLine {
    /// Wall-clock milliseconds since the UNIX epoch, on the node that logged it.
    pub at_ms: u64,
    pub node: String,
    pub level: LogLevel,
    pub message: String,
    /// The event's structured fields (role, resource, generation, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
pub struct LogQuery {
    /// Lines logged at or after this wall-clock time (ms since the UNIX epoch); default: the
    /// last hour.
    pub since_ms: Option<u64>,
    /// Only these nodes (comma-separated names); default: all.
    pub nodes: Option<String>,
    /// At most this many lines, the newest (default 5000, at most 100000).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterLogView {
    /// Oldest first, merged by time across nodes.
    pub lines: Vec<LogLine>,
    /// Older lines matched but were left out (raise `limit` or narrow `since_ms`).
    pub truncated: bool,
    /// Nodes whose lines are missing, and why.
    pub missing: Vec<MissingNode>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MissingNode {
    pub node: String,
    pub error: String,
}

/// One node asking another for its lines (`/peer/v1/log`).
#[derive(Debug, Serialize, Deserialize)]
pub struct LogRequest {
    pub since_ms: u64,
    pub limit: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LogReply {
    pub lines: Vec<LogLine>,
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_the_lowercase_words_the_log_files_hold() {
        let line: LogLine =
            serde_json::from_str(r#"{"at_ms":1,"node":"a","level":"warn","message":"m"}"#).expect("a stored line");
        assert_eq!(line.level, LogLevel::Warn);
        assert!(serde_json::to_string(&line).expect("serialises").contains(r#""level":"warn""#));
    }
}
