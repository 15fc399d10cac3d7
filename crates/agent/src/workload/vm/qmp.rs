//! A small QMP (QEMU Machine Protocol) client: the greeting, capability negotiation, commands
//! with ids and a time limit each, and asynchronous events collected on the side (unknown ones
//! are kept, never an error). QMP is one JSON object per line over a Unix socket.
//!
//! Parsing is separate from I/O ([`parse`]) so malformed input from a confused or hostile QEMU
//! is tested (and fuzzed) on its own: it gives an error, never a panic.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting, with QEMU's version (`major.minor.micro`).
    Greeting {
        version: String,
    },
    Return {
        id: Option<Value>,
        value: Value,
    },
    Error {
        id: Option<Value>,
        class: String,
        desc: String,
    },
    Event(Event),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QmpError {
    #[error("QMP sent something that is not a JSON object: {0}")]
    Malformed(String),
    #[error("QMP sent an object of no known kind: {0}")]
    Unknown(String),
    #[error("QEMU refused {command}: {class}: {desc}")]
    Refused { command: String, class: String, desc: String },
    #[error("QMP {command} got no answer within {ms} ms")]
    Timeout { command: String, ms: u64 },
    #[error("QMP connection closed{0}")]
    Closed(String),
    #[error("QMP I/O: {0}")]
    Io(String),
}

/// Parse one line of QMP.
pub fn parse(line: &str) -> Result<Message, QmpError> {
    let short = || line.chars().take(200).collect::<String>();
    let value: Value = serde_json::from_str(line).map_err(|_| QmpError::Malformed(short()))?;
    let Value::Object(object) = value else { return Err(QmpError::Malformed(short())) };
    let id = object.get("id").cloned();
    if let Some(greeting) = object.get("QMP") {
        let v = &greeting["version"]["qemu"];
        let part = |k: &str| v.get(k).and_then(Value::as_u64).map_or_else(|| "?".to_string(), |n| n.to_string());
        return Ok(Message::Greeting { version: format!("{}.{}.{}", part("major"), part("minor"), part("micro")) });
    }
    if let Some(value) = object.get("return") {
        return Ok(Message::Return { id, value: value.clone() });
    }
    if let Some(error) = object.get("error") {
        let text = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Message::Error { id, class: text("class"), desc: text("desc") });
    }
    if let Some(name) = object.get("event").and_then(Value::as_str) {
        let data = object.get("data").cloned().unwrap_or(Value::Object(Map::new()));
        return Ok(Message::Event(Event { name: name.to_string(), data }));
    }
    Err(QmpError::Unknown(short()))
}

/// A QMP session on a connected stream.
pub struct Qmp<S> {
    lines: Lines<BufReader<tokio::io::ReadHalf<S>>>,
    writer: tokio::io::WriteHalf<S>,
    next_id: u64,
    /// Events received while waiting for answers, oldest first.
    pub events: Vec<Event>,
    pub version: String,
}

impl Qmp<tokio::net::UnixStream> {
    /// Connect to QEMU's QMP socket and negotiate capabilities.
    pub async fn connect(path: &std::path::Path, limit: Duration) -> Result<Self, QmpError> {
        let stream = tokio::time::timeout(limit, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout { command: "connect".into(), ms: limit.as_millis() as u64 })?
            .map_err(|e| QmpError::Io(format!("{}: {e}", path.display())))?;
        Self::handshake(stream, limit).await
    }
}

impl<S: AsyncRead + AsyncWrite> Qmp<S> {
    /// Read the greeting and leave negotiation mode.
    pub async fn handshake(stream: S, limit: Duration) -> Result<Self, QmpError> {
        let (reader, writer) = tokio::io::split(stream);
        let mut qmp = Self {
            lines: BufReader::new(reader).lines(),
            writer,
            next_id: 0,
            events: Vec::new(),
            version: String::new(),
        };
        match qmp.read(limit, "greeting").await? {
            Message::Greeting { version } => qmp.version = version,
            other => return Err(QmpError::Unknown(format!("expected the greeting, got {other:?}"))),
        }
        qmp.execute("qmp_capabilities", None, limit).await?;
        Ok(qmp)
    }

    async fn read(&mut self, limit: Duration, command: &str) -> Result<Message, QmpError> {
        let ms = limit.as_millis() as u64;
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout { command: command.to_string(), ms })?
            .map_err(|e| QmpError::Io(e.to_string()))?
            .ok_or_else(|| QmpError::Closed(format!(" while waiting for {command}")))?;
        parse(&line)
    }

    /// Run `command` and wait (at most `limit`) for its answer; events seen meanwhile are kept.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        limit: Duration,
    ) -> Result<Value, QmpError> {
        self.next_id += 1;
        let id = Value::from(format!("halo-{}", self.next_id));
        let mut request = serde_json::json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await.map_err(|e| QmpError::Io(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout { command: command.to_string(), ms: limit.as_millis() as u64 });
            }
            let message = self.read(left, command).await.map_err(|e| overall(e, command, limit))?;
            match message {
                Message::Event(event) => self.events.push(event),
                Message::Return { id: Some(got), value } if got == id => return Ok(value),
                Message::Error { id: Some(got), class, desc } if got == id => {
                    return Err(QmpError::Refused { command: command.to_string(), class, desc });
                }
                // An answer to an earlier command that timed out, or a stray greeting: skip.
                _ => {}
            }
        }
    }

    /// Wait (at most `limit`) for an event named `name`, returning it; earlier ones count.
    pub async fn wait_event(&mut self, name: &str, limit: Duration) -> Result<Event, QmpError> {
        if let Some(i) = self.events.iter().position(|e| e.name == name) {
            return Ok(self.events.remove(i));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(QmpError::Timeout { command: format!("event {name}"), ms: limit.as_millis() as u64 });
            }
            let message = self.read(left, name).await.map_err(|e| overall(e, &format!("event {name}"), limit))?;
            match message {
                Message::Event(event) if event.name == name => return Ok(event),
                Message::Event(event) => self.events.push(event),
                _ => {}
            }
        }
    }
}

/// A time-out of the last read is a time-out of the whole call, reported with its limit.
fn overall(e: QmpError, command: &str, limit: Duration) -> QmpError {
    match e {
        QmpError::Timeout { .. } => QmpError::Timeout { command: command.to_string(), ms: limit.as_millis() as u64 },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;

    #[test]
    fn parses_every_kind_and_refuses_the_rest() {
        assert_eq!(parse(GREETING), Ok(Message::Greeting { version: "10.0.2".into() }));
        assert_eq!(
            parse(r#"{"return": {"status": "running", "running": true}, "id": "halo-1"}"#),
            Ok(Message::Return {
                id: Some("halo-1".into()),
                value: serde_json::json!({"status": "running", "running": true})
            })
        );
        assert_eq!(
            parse(r#"{"id": "halo-2", "error": {"class": "GenericError", "desc": "no such device"}}"#),
            Ok(Message::Error {
                id: Some("halo-2".into()),
                class: "GenericError".into(),
                desc: "no such device".into()
            })
        );
        let event =
            r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SOME_FUTURE_EVENT", "data": {"x": 1}}"#;
        assert_eq!(
            parse(event),
            Ok(Message::Event(Event { name: "SOME_FUTURE_EVENT".into(), data: serde_json::json!({"x": 1}) }))
        );
        assert!(matches!(parse("not json"), Err(QmpError::Malformed(_))));
        assert!(matches!(parse("[1]"), Err(QmpError::Malformed(_))));
        assert!(matches!(parse(r#"{"what": 1}"#), Err(QmpError::Unknown(_))));
    }

    /// A scripted QEMU on the other end of a socket pair.
    async fn fake_qemu(stream: tokio::net::UnixStream, script: Vec<(&'static str, Vec<String>)>) {
        let (reader, mut writer) = tokio::io::split(stream);
        let mut lines = tokio::io::BufReader::new(reader).lines();
        writer.write_all(format!("{GREETING}\n").as_bytes()).await.expect("greet");
        for (expect, replies) in script {
            let Ok(Some(line)) = lines.next_line().await else { return };
            let request: Value = serde_json::from_str(&line).expect("json request");
            assert_eq!(request["execute"], expect);
            let id = request["id"].to_string();
            for reply in replies {
                writer.write_all(format!("{}\n", reply.replace("ID", &id)).as_bytes()).await.expect("reply");
            }
        }
        // Then hang: never answer again.
        std::future::pending::<()>().await;
    }

    #[tokio::test]
    async fn negotiates_matches_ids_keeps_events_and_times_out() {
        let (ours, theirs) = tokio::net::UnixStream::pair().expect("pair");
        let script = vec![
            ("qmp_capabilities", vec![r#"{"return": {}, "id": ID}"#.to_string()]),
            (
                "query-status",
                vec![
                    r#"{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}}"#.to_string(),
                    r#"{"return": {"status": "stale"}, "id": "halo-0"}"#.to_string(),
                    r#"{"return": {"status": "running"}, "id": ID}"#.to_string(),
                ],
            ),
            ("cont", vec![r#"{"error": {"class": "GenericError", "desc": "nope"}, "id": ID}"#.to_string()]),
            ("query-status", vec![]),
        ];
        tokio::spawn(fake_qemu(theirs, script));
        let limit = Duration::from_secs(2);
        let mut qmp = Qmp::handshake(ours, limit).await.expect("handshake");
        assert_eq!(qmp.version, "10.0.2");
        let status = qmp.execute("query-status", None, limit).await.expect("status");
        assert_eq!(status["status"], "running", "the stray answer to another id is skipped");
        assert_eq!(qmp.wait_event("RESUME", limit).await.expect("event").name, "RESUME");
        let refused = qmp.execute("cont", None, limit).await.unwrap_err();
        assert_eq!(refused.to_string(), "QEMU refused cont: GenericError: nope");
        let hung = qmp.execute("query-status", None, Duration::from_millis(100)).await.unwrap_err();
        assert_eq!(hung, QmpError::Timeout { command: "query-status".into(), ms: 100 });
    }
}
