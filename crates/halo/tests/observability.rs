//! What operators watch: `/metrics` on every agent, read by Prometheus's own parser, and the
//! live event stream (server-sent events), on real agents with real roles and a real failover.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// One parsed sample: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parse `/metrics` text with the Prometheus project's Python client: the strict OpenMetrics
/// parser (which also requires `# EOF` and consistent families), then the classic Prometheus
/// text parser, as a Prometheus server would. Returns the OpenMetrics parser's samples.
fn parse_metrics(metrics: &str) -> Vec<Sample> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as prometheus
text = sys.stdin.read()
classic = sum(len(f.samples) for f in prometheus(text))
out = []
for family in openmetrics(text):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
assert classic > 0
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("Debian's python3 (scripts/setup installs python3-prometheus-client)");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(metrics.as_bytes()).expect("write metrics");
    let out = child.wait_with_output().expect("parser ran");
    assert!(out.status.success(), "the Prometheus parser refused /metrics: {}\n{metrics}", text(&out));
    serde_json::from_slice::<Vec<(String, BTreeMap<String, String>, f64)>>(&out.stdout).expect("parser output")
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
}

fn scrape(rt: &tokio::runtime::Runtime, api: &str, token: Option<&str>) -> (u16, String, String) {
    rt.block_on(async {
        let mut request = https(None).get(format!("https://{api}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (status, kind, response.text().await.unwrap_or_default())
    })
}

/// Reads server-sent events from `response` until `wanted` matches one (or `limit` passes);
/// returns the events read, as (id, parsed data).
async fn read_events(
    response: &mut reqwest::Response,
    limit: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<(u64, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|v| v.trim().parse().expect("numeric id"));
            let data = block.lines().find_map(|l| l.strip_prefix("data:"));
            if let (Some(id), Some(data)) = (id, data) {
                let event: Value = serde_json::from_str(data.trim()).expect("event data is JSON");
                let done = wanted(&event);
                events.push((id, event));
                if done {
                    return events;
                }
            }
        }
    }
    events
}

#[test]
fn metrics_parse_and_describe_the_cluster_and_events_stream_live() {
    let mut c = Cluster::new(163, 3, 0);
    c.form();
    let token = c.admin_token();
    let work = c.dir.path().join("work");
    let command = format!("command={}", lock_workload(&work.join("web")));
    let out = c.halo(&["role", "create", "web", "--type", "process", "--param", &command, "--preferred", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    let state = c.dir.path().join("dummy.state");
    let out = c.halo(&[
        "role",
        "create",
        "dummy",
        "--type",
        "ocf:heartbeat:Dummy",
        "--param",
        &format!("state={}", state.display()),
        "--monitor-interval",
        "1000",
        "--preferred",
        "n2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("web", Duration::from_secs(15), |_| true).as_deref(), Some("n1"));
    assert_eq!(c.wait_online("dummy", Duration::from_secs(15), |_| true).as_deref(), Some("n2"));

    let rt = runtime();
    // Prometheus needs the token like any API client.
    let (status, _, _) = scrape(&rt, &c.nodes[0].api, None);
    assert_eq!(status, 401, "/metrics without the token");
    assert_eq!(scrape(&rt, &c.nodes[0].api, Some("wrong")).0, 401);

    // A live stream from n3, opened before the move; it sends only what happens from now on.
    let stream_api = c.nodes[2].api.clone();
    let mut stream = rt.block_on(async {
        let response = https(None)
            .get(format!("https://{stream_api}/api/v1/events/stream"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("stream opens");
        assert_eq!(response.status(), 200);
        let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        response
    });
    let out = c.halo(&["role", "move", "web", "--to", "n3"]);
    assert!(out.status.success(), "{}", text(&out));
    let moved =
        |e: &Value| e["subject"] == "web" && e["change"]["change"] == "role_state" && e["change"]["to"] == "online";
    let live = rt.block_on(read_events(&mut stream, Duration::from_secs(20), moved));
    assert!(live.last().is_some_and(|(_, e)| moved(e)), "the move never streamed: {live:#?}");
    assert!(live.iter().all(|(id, e)| e["seq"] == *id), "an event's id is its sequence number: {live:#?}");
    assert!(live.windows(2).all(|w| w[0].0 < w[1].0), "events arrive in order: {live:#?}");
    assert!(live.iter().all(|(_, e)| e["kind"].is_string() && e["at_ms"].is_u64()), "{live:#?}");
    assert_eq!(c.role("web").expect("web")["owner"], "n3");

    // A client that reconnects with Last-Event-ID gets exactly what came after it.
    let (first, _) = live.first().cloned().expect("an event");
    let replayed = rt.block_on(async {
        let mut response = https(None)
            .get(format!("https://{stream_api}/api/v1/events/stream"))
            .bearer_auth(&token)
            .header("Last-Event-ID", first.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("stream opens");
        let last = live.last().map(|(id, _)| *id).unwrap_or(0);
        read_events(&mut response, Duration::from_secs(10), |e| e["seq"].as_u64() >= Some(last)).await
    });
    let expected: Vec<u64> = live.iter().skip(1).map(|(id, _)| *id).collect();
    assert_eq!(replayed.iter().map(|(id, _)| *id).take(expected.len()).collect::<Vec<_>>(), expected);
    let unauthorized = rt.block_on(async {
        https(None).get(format!("https://{stream_api}/api/v1/events/stream")).send().await.expect("answer").status()
    });
    assert_eq!(unauthorized, 401);

    // n3, now running web, crashes: web fails over, and that is counted.
    c.crash(2);
    let back = c.wait_online("web", Duration::from_secs(30), |owner| owner != "n3");
    assert!(back.is_some(), "web did not fail over: {:?}", c.role("web"));
    assert!(wait_until(Duration::from_secs(20), || { c.status().is_some_and(|s| node(&s, "n3")["state"] == "down") }));

    let mut leaders = 0.0;
    for i in 0..2 {
        let api = c.nodes[i].api.clone();
        let me = c.nodes[i].name.clone();
        let peer = c.nodes[1 - i].name.clone();
        // Heartbeat round trips and the lease settle within a few heartbeats after the crash.
        let samples = wait_for_samples(&rt, &api, &token, &peer);
        let (_, kind, _) = scrape(&rt, &api, Some(&token));
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
        let _ = std::fs::create_dir_all(&artifacts);
        let _ = std::fs::write(artifacts.join(format!("metrics-{me}.txt")), scrape(&rt, &api, Some(&token)).2);

        let get = |name: &str, labels: &[(&str, &str)]| {
            value(&samples, name, labels).unwrap_or_else(|| panic!("{me}: no {name}{labels:?}"))
        };
        assert_eq!(get("halo_agent", &[("node", &me)]), 1.0);
        // Node states from the cluster database (a state set: one series per state).
        for (node, state) in [("n1", "up"), ("n2", "up"), ("n3", "down")] {
            assert_eq!(get("halo_node_state", &[("node", node), ("state", state)]), 1.0, "{me}: {node}");
            assert_eq!(get("halo_node_state", &[("node", node), ("state", "paused")]), 0.0, "{me}: {node}");
        }
        assert_eq!(get("halo_network_state", &[("node", "n1"), ("network", "1"), ("state", "up")]), 1.0);
        // Roles: state, owner, failovers (web's crash) and migrations.
        let owner = back.as_deref().expect("owner");
        assert_eq!(get("halo_role_state", &[("role", "web"), ("state", "online")]), 1.0);
        assert_eq!(get("halo_role_state", &[("role", "dummy"), ("state", "failed")]), 0.0);
        assert_eq!(get("halo_role_owner", &[("role", "web"), ("node", owner)]), 1.0);
        assert_eq!(get("halo_role_failovers_total", &[("role", "web")]), 1.0, "{me}");
        assert_eq!(get("halo_role_failovers_total", &[("role", "dummy")]), 0.0, "{me}");
        assert_eq!(get("halo_role_migrations_total", &[("role", "web")]), 0.0);
        // This node's own view: heartbeat round trips per network, its lease, its Raft log.
        for network in ["0", "1"] {
            let rtt = get("halo_heartbeat_round_trip_seconds", &[("peer", &peer), ("network", network)]);
            assert!(rtt > 0.0 && rtt < 0.5, "{me} -> {peer} on {network}: {rtt} s");
            assert_eq!(get("halo_heartbeat_path_up", &[("peer", &peer), ("network", network)]), 1.0);
            assert_eq!(get("halo_heartbeat_path_up", &[("peer", "n3"), ("network", network)]), 0.0);
        }
        let remaining = get("halo_lease_remaining_seconds", &[]);
        assert!(remaining > 0.0 && remaining < 30.0, "{me}: lease {remaining} s");
        assert!(get("halo_lease_age_seconds", &[]) < 5.0, "{me}");
        assert!(get("halo_raft_term", &[]) >= 1.0);
        let (commit, applied) = (get("halo_raft_commit_index", &[]), get("halo_raft_applied_index", &[]));
        assert!(commit > 10.0 && applied > 10.0, "{me}: commit {commit}, applied {applied}");
        assert!(get("halo_raft_apply_lag", &[]) >= 0.0);
        leaders += get("halo_raft_leader", &[]);
        assert!(get("halo_events_last_sequence", &[]) >= live.last().map_or(0.0, |(id, _)| *id as f64));
        // Agent actions this node ran, timed: a process spawned on n1, Dummy's start and
        // monitors on n2.
        let actions = |kind: &str, action: &str| {
            value(
                &samples,
                "halo_action_duration_seconds_count",
                &[("kind", kind), ("action", action), ("result", "ok")],
            )
            .unwrap_or(0.0)
        };
        if me == "n1" {
            assert!(actions("process", "spawn") >= 1.0, "{me}: {samples:?}");
        } else {
            assert!(actions("ocf:heartbeat:Dummy", "start") >= 1.0, "{me}");
            assert!(actions("ocf:heartbeat:Dummy", "monitor") >= 1.0, "{me}");
        }
    }
    assert_eq!(leaders, 1.0, "exactly one survivor says it leads");
}

/// Scrape until this node has a fresh round trip to `peer` on both networks (the metric is
/// left out for a silent path), then return the parsed samples.
fn wait_for_samples(rt: &tokio::runtime::Runtime, api: &str, token: &str, peer: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let ready = wait_until(Duration::from_secs(10), || {
        let (status, _, body) = scrape(rt, api, Some(token));
        assert_eq!(status, 200, "{body}");
        samples = parse_metrics(&body);
        ["0", "1"]
            .iter()
            .all(|n| value(&samples, "halo_heartbeat_round_trip_seconds", &[("peer", peer), ("network", n)]).is_some())
    });
    assert!(ready, "no round trip to {peer}: {samples:?}");
    samples
}

#[test]
fn halo_log_merges_every_nodes_lines_in_time_order() {
    let mut c = Cluster::new(164, 3, 0);
    c.form();
    let started = wall_ms();
    let out = c.halo(&["role", "create", "web", "--type", "process", "--param", "command=exec sleep 100000"]);
    assert!(out.status.success(), "{}", text(&out));
    let owner = c.wait_online("web", Duration::from_secs(15), |_| true).expect("web online");

    let log = c.json(&["log", "--since", "10m"]);
    let lines = log["lines"].as_array().expect("lines");
    let nodes: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l["node"].as_str()).collect();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["n1", "n2", "n3"], "{log:#}");
    let times: Vec<u64> = lines.iter().map(|l| l["at_ms"].as_u64().expect("at_ms")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order: {times:?}");
    assert!(lines.iter().all(|l| l["utc"].as_str().is_some_and(|t| t.ends_with('Z')) && l["local"].is_string()));
    assert_eq!(log["missing"], serde_json::json!([]));
    assert_eq!(log["truncated"], false);
    // The owner's line about starting web, with its structured fields.
    assert!(
        lines
            .iter()
            .any(|l| l["node"] == owner.as_str() && l["message"] == "resource started" && l["fields"]["role"] == "web"),
        "{log:#}"
    );

    // An absolute --since, and one node only.
    let since = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(started)).to_string();
    let recent = c.json(&["log", "--since", &since, "--node", &owner]);
    let recent = recent["lines"].as_array().expect("lines");
    assert!(!recent.is_empty());
    assert!(recent.iter().all(|l| l["node"] == owner.as_str() && l["at_ms"].as_u64() >= Some(started)), "{recent:#?}");
    let limited = c.json(&["log", "--since", "10m", "--limit", "3"]);
    assert_eq!(limited["lines"].as_array().map(Vec::len), Some(3));
    assert_eq!(limited["truncated"], true);

    // For people: UTC, local time, node, level, message.
    let out = c.halo(&["log", "--since", "10m"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.lines().any(|l| l.contains("Z  ") && l.contains(" n2 ") && l.contains("INFO")), "{shown}");

    // A node that is down is named, and the others' lines still come.
    c.crash(2);
    let out = c.halo(&["log", "--since", "10m", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lines from n3"), "{}", text(&out));
    let partial: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(partial["missing"][0]["node"], "n3");
    assert!(partial["lines"].as_array().is_some_and(|l| l.iter().any(|l| l["node"] == "n1")));

    for (args, says) in [
        (vec!["log", "--since", "last tuesday"], "--since 'last tuesday'"),
        (vec!["log", "--node", "ghost"], "no node named 'ghost'"),
    ] {
        let out = c.halo(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "{}", text(&out));
    }
}
