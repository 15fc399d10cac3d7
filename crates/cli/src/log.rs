//! `halo log`: every agent's log, gathered by the node asked and merged in time order, with
//! each line's time in UTC and in this machine's local time.

use anyhow::Context;
use chrono::{Local, TimeZone, Utc};
use halo_api::log::{ClusterLogView, LogLine};

use crate::client::Api;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Only these nodes (repeat the flag, or separate names with commas).
    #[arg(long = "node", value_name = "NODE", value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// From this long ago (30s, 10m, 2h, 1d) or from this UTC time (2026-11-22T14:00:00Z).
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// At most this many lines: the newest.
    #[arg(long, default_value_t = 5000)]
    pub limit: usize,
}

/// `--since` as wall-clock milliseconds: a duration back from `now_ms`, or an absolute time.
pub fn since_ms(since: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Ok(ago) = humantime::parse_duration(since) {
        return Ok(now_ms.saturating_sub(ago.as_millis() as u64));
    }
    let at = humantime::parse_rfc3339_weak(since).map_err(|_| {
        anyhow::anyhow!("--since '{since}' is neither a duration (10m, 2h) nor a time (2026-11-22T14:00:00Z)")
    })?;
    Ok(at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

pub async fn run(api: &Api, args: LogArgs, json: bool) -> anyhow::Result<()> {
    let since = since_ms(&args.since, crate::wall_ms())?;
    anyhow::ensure!(args.limit > 0, "--limit must be at least 1");
    let mut path = format!("/api/v1/log?since_ms={since}&limit={}", args.limit);
    if !args.nodes.is_empty() {
        path.push_str(&format!("&nodes={}", args.nodes.join(",")));
    }
    let view: ClusterLogView = api.get(&path).await.context("gathering the cluster log")?;
    for missing in &view.missing {
        eprintln!("warning: no lines from {}: {}", missing.node, missing.error);
    }
    if view.truncated {
        eprintln!("note: older lines were left out; use --since or --limit to see them");
    }
    if json {
        let lines: Vec<serde_json::Value> = view.lines.iter().map(json_line).collect();
        return output::print_json(&serde_json::json!({
            "lines": lines,
            "truncated": view.truncated,
            "missing": view.missing,
        }));
    }
    for line in &view.lines {
        println!("{}", text_line(line));
    }
    Ok(())
}

fn utc(at_ms: u64) -> String {
    Utc.timestamp_millis_opt(at_ms as i64)
        .single()
        .map_or_else(|| at_ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

fn local(at_ms: u64) -> String {
    Local
        .timestamp_millis_opt(at_ms as i64)
        .single()
        .map_or_else(|| at_ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string())
}

/// One line for people: UTC time, local time of day, node, level, message, fields.
pub fn text_line(line: &LogLine) -> String {
    let local_time = Local
        .timestamp_millis_opt(line.at_ms as i64)
        .single()
        .map_or_else(String::new, |t| t.format("%H:%M:%S%.3f%:z").to_string());
    let mut out = format!(
        "{}  {local_time}  {:<6} {:<5}  {}",
        utc(line.at_ms),
        line.node,
        line.level.as_str().to_uppercase(),
        line.message
    );
    for (key, value) in &line.fields {
        out.push_str(&format!("  {key}={value}"));
    }
    out
}

fn json_line(line: &LogLine) -> serde_json::Value {
    serde_json::json!({
        "at_ms": line.at_ms,
        "utc": utc(line.at_ms),
        "local": local(line.at_ms),
        "node": line.node,
        "level": line.level,
        "message": line.message,
        "fields": line.fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times_and_names_bad_input() {
        assert_eq!(since_ms("10m", 1_000_000).expect("duration"), 400_000);
        assert_eq!(since_ms("2h", 1_000).expect("clamped"), 0);
        assert_eq!(since_ms("1970-01-01T00:00:05Z", 0).expect("time"), 5_000);
        let e = since_ms("yesterday-ish", 0).expect_err("refused").to_string();
        assert!(e.contains("--since 'yesterday-ish'"), "{e}");
    }

    #[test]
    fn a_line_shows_utc_node_level_message_and_fields() {
        let line = LogLine {
            at_ms: 1_763_820_181_123,
            node: "n2".into(),
            level: halo_api::log::LogLevel::Warn,
            message: "resource did not stop".into(),
            fields: [("role".to_string(), "web".to_string())].into(),
        };
        let text = text_line(&line);
        assert!(text.starts_with("2025-11-22T14:03:01.123Z  "), "{text}");
        assert!(text.contains("n2     WARN   resource did not stop  role=web"), "{text}");
        let json = json_line(&line);
        assert_eq!(json["utc"], "2025-11-22T14:03:01.123Z");
        assert!(json["local"].as_str().is_some_and(|l| l.len() >= 23), "{json}");
    }
}
