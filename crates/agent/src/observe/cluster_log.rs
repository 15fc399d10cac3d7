//! The agent's own log, kept structured so `halo log` can gather every node's into one
//! time-ordered view (like WSFC's Get-ClusterLog, without fetching files by hand).
//!
//! Every tracing event the agent emits is also appended as one JSON line to
//! `DATA_DIR/logs/agent.jsonl`, stamped with the wall clock and the node's name. The file is
//! rotated by size (`agent.1.jsonl` is the previous one, up to [`KEEP`] of them), so the log
//! takes at most `(KEEP + 1) x MAX_BYTES` of disk. Reading back filters by time and keeps the
//! newest lines.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use halo_api::log::{LogLevel, LogLine};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

/// A file is rotated once it grows past this.
const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Rotated files kept besides the current one.
const KEEP: usize = 4;
/// Longest message or field kept: a log line is for reading, not for dumps.
const MAX_TEXT: usize = 4096;

fn level_of(level: tracing::Level) -> LogLevel {
    match level {
        tracing::Level::ERROR => LogLevel::Error,
        tracing::Level::WARN => LogLevel::Warn,
        tracing::Level::INFO => LogLevel::Info,
        tracing::Level::DEBUG => LogLevel::Debug,
        tracing::Level::TRACE => LogLevel::Trace,
    }
}

/// The current log file and its size; appends are serialized.
pub struct LogFile {
    dir: PathBuf,
    node: String,
    current: Mutex<Option<(File, u64)>>,
}

fn file_name(generation: usize) -> String {
    if generation == 0 { "agent.jsonl".to_string() } else { format!("agent.{generation}.jsonl") }
}

impl LogFile {
    pub fn open(dir: &Path, node: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let log = Self { dir: dir.to_path_buf(), node: node.to_string(), current: Mutex::new(None) };
        *log.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(log.open_current()?);
        Ok(log)
    }

    fn open_current(&self) -> std::io::Result<(File, u64)> {
        let file = OpenOptions::new().create(true).append(true).open(self.dir.join(file_name(0)))?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// Append one line; a full file is rotated first. Logging never fails the agent: a line that
    /// cannot be written is dropped.
    pub fn append(&self, line: &LogLine) {
        let Ok(mut text) = serde_json::to_vec(line) else { return };
        text.push(b'\n');
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(_, size)| size + text.len() as u64 > MAX_BYTES) {
            *current = None;
            self.rotate();
        }
        if current.is_none() {
            *current = self.open_current().ok();
        }
        if let Some((file, size)) = current.as_mut()
            && file.write_all(&text).is_ok()
        {
            *size += text.len() as u64;
        }
    }

    /// agent.jsonl becomes agent.1.jsonl, agent.1 becomes agent.2, ...; the oldest is dropped.
    fn rotate(&self) {
        let _ = std::fs::remove_file(self.dir.join(file_name(KEEP)));
        for generation in (0..KEEP).rev() {
            let _ = std::fs::rename(self.dir.join(file_name(generation)), self.dir.join(file_name(generation + 1)));
        }
    }

    /// The tracing layer that writes every event here.
    pub fn layer(self) -> Layer {
        Layer { file: self }
    }
}

pub struct Layer {
    file: LogFile,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.file.append(&LogLine {
            at_ms: crate::clock::wall_ms(),
            node: self.file.node.clone(),
            level: level_of(*event.metadata().level()),
            message: fields.message,
            fields: fields.others,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field.name(), format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, name: &str, mut value: String) {
        if value.len() > MAX_TEXT {
            let mut end = MAX_TEXT;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
            value.push('…');
        }
        if name == "message" {
            self.message = value;
        } else {
            self.others.insert(name.to_string(), value);
        }
    }
}

/// This node's lines logged at or after `since_ms`, oldest first: the newest `limit` of them,
/// and whether older matching lines were left out.
pub fn read(dir: &Path, since_ms: u64, limit: usize) -> (Vec<LogLine>, bool) {
    let mut kept = VecDeque::new();
    let mut dropped = false;
    for generation in (0..=KEEP).rev() {
        let Ok(file) = File::open(dir.join(file_name(generation))) else { continue };
        for text in BufReader::new(file).lines().map_while(Result::ok) {
            // A torn last line (the agent died mid-write) or a foreign one is skipped.
            let Ok(line) = serde_json::from_str::<LogLine>(&text) else { continue };
            if line.at_ms < since_ms {
                continue;
            }
            kept.push_back(line);
            if kept.len() > limit {
                kept.pop_front();
                dropped = true;
            }
        }
    }
    (kept.into(), dropped)
}

/// Lines from several nodes in one time order (ties: by node, then as each node logged them),
/// the newest `limit`.
pub fn merge(mut lines: Vec<LogLine>, limit: usize) -> (Vec<LogLine>, bool) {
    // A stable sort keeps each node's own order among lines of the same millisecond.
    lines.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.node.cmp(&b.node)));
    let excess = lines.len().saturating_sub(limit);
    lines.drain(..excess);
    (lines, excess > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at_ms: u64, node: &str, message: &str) -> LogLine {
        LogLine { at_ms, node: node.into(), level: LogLevel::Info, message: message.into(), fields: BTreeMap::new() }
    }

    #[test]
    fn lines_are_read_back_by_time_across_rotations() {
        let dir = tempfile::tempdir().expect("dir");
        let log = LogFile::open(dir.path(), "n1").expect("open");
        log.append(&line(100, "n1", "old"));
        log.rotate();
        *log.current.lock().expect("lock") = None;
        log.append(&line(200, "n1", "middle"));
        log.append(&line(300, "n1", "new"));
        // A torn line from a crash mid-write is skipped, not fatal.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("agent.jsonl"))
            .and_then(|mut f| f.write_all(b"{\"at_ms\": 40"))
            .expect("torn write");
        let (all, dropped) = read(dir.path(), 0, 10);
        assert_eq!(all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["old", "middle", "new"]);
        assert!(!dropped);
        let (recent, _) = read(dir.path(), 150, 10);
        assert_eq!(recent.len(), 2);
        let (newest, dropped) = read(dir.path(), 0, 1);
        assert_eq!((newest[0].message.as_str(), dropped), ("new", true));
    }

    #[test]
    fn rotation_bounds_the_disk_used() {
        let dir = tempfile::tempdir().expect("dir");
        let log = LogFile::open(dir.path(), "n1").expect("open");
        let big = "x".repeat(MAX_TEXT);
        let per_line = serde_json::to_vec(&line(1, "n1", &big)).expect("json").len() as u64 + 1;
        for i in 0..(MAX_BYTES / per_line) * (KEEP as u64 + 3) {
            log.append(&line(i, "n1", &big));
        }
        let files: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().collect();
        assert_eq!(files.len(), KEEP + 1, "{files:?}");
        for f in files {
            assert!(f.metadata().expect("meta").len() <= MAX_BYTES);
        }
    }

    #[test]
    fn merging_orders_by_time_then_node_and_keeps_the_newest() {
        let lines = vec![line(5, "n2", "b"), line(3, "n1", "a"), line(5, "n1", "c"), line(9, "n3", "d")];
        let (merged, dropped) = merge(lines.clone(), 10);
        let order: Vec<_> = merged.iter().map(|l| l.message.as_str()).collect();
        assert_eq!((order, dropped), (vec!["a", "c", "b", "d"], false));
        let (newest, dropped) = merge(lines, 2);
        assert_eq!(newest.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["b", "d"]);
        assert!(dropped);
    }

    #[test]
    fn long_fields_are_cut_on_a_character_boundary() {
        let mut fields = Fields::default();
        fields.put("message", "é".repeat(MAX_TEXT));
        fields.put("role", "web".into());
        assert!(fields.message.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(fields.message.ends_with('…'));
        assert_eq!(fields.others["role"], "web");
    }
}
