//! Planned operations with real processes: drain, resume with failback, and role move. The
//! workloads hold an exclusive flock, so any overlap between the old and new instance shows.

mod common;

use std::time::Duration;

use common::*;

fn owner(c: &Cluster, role: &str) -> Option<String> {
    c.role(role).and_then(|r| r["owner"].as_str().map(str::to_string))
}

#[test]
fn drain_resume_with_failback_and_move() {
    let mut c = Cluster::new(118, 3, 0);
    c.form();
    let roles = [("r1-118", "n1"), ("r2-118", "n1"), ("r3-118", "n2")];
    for (name, preferred) in roles {
        let command = lock_workload(&c.dir.path().join(name));
        let out = c.halo(&[
            "role",
            "create",
            name,
            "--type",
            "process",
            "--param",
            &format!("command={command}"),
            "--preferred",
            preferred,
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for (name, preferred) in roles {
        assert_eq!(c.wait_online(name, Duration::from_secs(15), |_| true).as_deref(), Some(preferred));
    }

    // The plan for losing n1 names where its two roles would go and the worst case; it changes nothing.
    let before = c.json(&["role", "list"]);
    let plan = c.json(&["plan", "--fail", "n1"]);
    let recoveries = plan["recoveries"].as_array().expect("recoveries");
    assert_eq!(recoveries.len(), 2, "{plan}");
    for r in recoveries {
        assert!(r["to"].as_str().is_some_and(|to| to != "n1"), "{plan}");
        assert!(r["worst_case_ms"].as_u64().is_some_and(|ms| ms >= 2000), "{plan}");
    }
    let text_plan = String::from_utf8_lossy(&c.halo(&["plan", "--fail", "n1"]).stdout).to_string();
    assert!(text_plan.contains("if n1 failed now") && text_plan.contains("r1-118"), "{text_plan}");
    assert_eq!(c.json(&["role", "list"]), before, "planning changed something");
    let out = c.halo(&["plan", "--fail", "ghost"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node named 'ghost'"), "{}", text(&out));

    // Follow the event stream while operating.
    let mut follower = std::process::Command::new(exe())
        .args(["events", "--follow", "--json", "--last", "1"])
        .env("HALO_CONFIG", &c.config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("events --follow");
    let stream = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // Drain: every role leaves n1, then n1 shows paused.
    let out = c.halo(&["node", "pause", "n1", "--drain"]);
    assert!(out.status.success(), "{}", text(&out));
    for (name, _) in roles {
        let o = owner(&c, name);
        assert!(o.is_some() && o.as_deref() != Some("n1"), "{name} still on n1: {:?}", c.role(name));
        assert_eq!(
            c.role(name).map(|r| r["state"].clone()),
            Some("online".into()),
            "{}: {:?}",
            text(&out),
            c.role(name)
        );
    }
    assert_eq!(node(&c.status().expect("status"), "n1")["state"], "paused");
    // Paused: nothing new lands there either.
    let out = c.halo(&["role", "move", "r3-118", "--to", "n1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is paused"), "{}", text(&out));

    // Resume with failback: the roles that prefer n1 come back.
    let out = c.halo(&["node", "resume", "n1", "--failback"]);
    assert!(out.status.success(), "{}", text(&out));
    for name in ["r1-118", "r2-118"] {
        assert_eq!(c.wait_online(name, Duration::from_secs(15), |o| o == "n1").as_deref(), Some("n1"), "{name}");
    }
    assert_eq!(node(&c.status().expect("status"), "n1")["state"], "up");

    // A planned move, timed by the CLI from request to online on the target.
    let out = c.halo(&["role", "move", "r3-118", "--to", "n3", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let moved: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(moved["to"], "n3");
    println!("planned move r3 n2 -> n3: {} ms (request to online, CLI polling included)", moved["elapsed_ms"]);
    assert_eq!(owner(&c, "r3-118").as_deref(), Some("n3"));

    let out = c.halo(&["role", "move", "nosuch", "--to", "n3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no role named 'nosuch'"), "{}", text(&out));
    let out = c.halo(&["role", "move", "r3-118", "--to", "n3"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already runs there"), "{}", text(&out));

    // Every change is an event, in words, in the history and on the followed stream.
    let history = c.json(&["events", "--last", "200"]);
    let messages: Vec<&str> =
        history.as_array().expect("events").iter().filter_map(|e| e["message"].as_str()).collect();
    for expected in
        ["n1: up -> paused", "role r1-118: moving from n1 to", "n1: paused -> up", "failback to preferred owner n1"]
    {
        assert!(messages.iter().any(|m| m.contains(expected)), "no event '{expected}' in {messages:#?}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut followed = Vec::new();
    while !followed.iter().any(|l: &String| l.contains("moving from n2 to n3")) && std::time::Instant::now() < deadline
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            followed.push(line);
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(followed.iter().any(|l| l.contains("n1: up -> paused")), "{followed:#?}");
    assert!(followed.iter().any(|l| l.contains("moving from n2 to n3")), "{followed:#?}");

    for (name, _) in roles {
        let dir = c.dir.path().join(name);
        assert!(lines(&dir, "failures").is_empty(), "{name} overlapped: {:?}", lines(&dir, "failures"));
        assert_eq!(c.role_processes(name).len(), 1, "{name} runs exactly once");
    }
}
