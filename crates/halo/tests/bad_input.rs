//! Bad input gets a clear error naming the problem, a non-zero exit, and changes nothing.

mod common;

use std::process::Command;

use common::*;

#[test]
fn malformed_config_and_unknown_flags_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("node.toml");
    std::fs::write(
        &bad,
        "name = 'a'\ndata_dir = '/tmp/x'\napi = '127.0.0.1:1'\nnetworks = ['127.0.0.1:2']\nheartbeat = 3\n",
    )
    .expect("write");
    let out = Command::new(exe()).args(["agent", "--config"]).arg(&bad).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid config file") && err.contains("heartbeat"), "{err}");

    std::fs::write(&bad, "name = [").expect("write");
    let out = Command::new(exe()).args(["agent", "--config"]).arg(&bad).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid config file"));

    let out = Command::new(exe()).args(["status", "--frobnicate"]).output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));

    let out = Command::new(exe())
        .args(["agent", "--name", "a", "--data-dir"])
        .arg(dir.path().join("d"))
        .args(["--api", "127.0.0.1:1", "--net", "not-an-address"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not-an-address"));
}

#[test]
fn duplicate_names_foreign_members_and_unreachable_peers_are_refused() {
    let mut c = Cluster::new(109, 2, 0);
    c.form();

    // A second agent with an existing node's name.
    let mut dup = Cluster::new(110, 2, 0);
    dup.nodes[0].name = "n2".into();
    dup.start(0);
    let token = c.token("10m");
    let endpoint = dup.nodes[0].api.clone();
    let out = c.halo(&["cluster", "join", "--endpoint", &endpoint, "--token", &token]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a member"), "{}", text(&out));

    // A node that already belongs to a cluster cannot join (or create) another.
    let member = c.nodes[1].api.clone();
    let out = c.halo(&["cluster", "join", "--endpoint", &member, "--token", &token]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already belongs to cluster"), "{}", text(&out));
    let out = c.halo(&["cluster", "create", "--name", "other", "--endpoint", &member]);
    assert!(!out.status.success());

    // Nothing changed.
    let s = c.status().expect("status");
    assert_eq!(s["nodes"].as_array().map(Vec::len), Some(2), "{s}");

    // Unreachable agent, and a token whose peers are all gone.
    let out = c.halo(&["cluster", "join", "--endpoint", "127.0.0.1:1", "--token", &token]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"), "{}", text(&out));
    c.kill9(0);
    c.kill9(1);
    dup.nodes[1].name = "fresh".into();
    dup.start(1);
    let fresh = dup.nodes[1].api.clone();
    let out = dup.halo(&["cluster", "join", "--endpoint", &fresh, "--token", &token]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not reach any cluster peer"), "{}", text(&out));
}

/// Every REST endpoint that takes a body, fed malformed ones (truncated, wrong types, not
/// JSON, random bytes): a 4xx answer every time, the agent keeps serving, nothing changes.
#[test]
fn malformed_request_bodies_get_a_client_error_and_change_nothing() {
    let mut c = Cluster::new(143, 1, 0);
    c.form();
    let out = c.halo(&["role", "create", "keep143", "--type", "process", "--param", "command=exec sleep 100000"]);
    assert!(out.status.success(), "{}", text(&out));
    let online = c.wait_online("keep143", std::time::Duration::from_secs(15), |_| true);
    assert!(online.is_some(), "{:?}\n{}", c.role("keep143"), c.log(0));
    let before = (c.json(&["role", "show", "keep143"])["generation"].clone(), c.json(&["cluster", "show"]));
    let token = c.admin_token();
    let api = c.nodes[0].api.clone();
    let paths = [
        "/api/v1/roles",
        "/api/v1/roles/ghost/move",
        "/api/v1/nodes/ghost/pause",
        "/api/v1/nodes/ghost/resume",
        "/api/v1/nodes/n1/fence",
        "/api/v1/apply",
        "/api/v1/cluster/properties",
        "/api/v1/tokens",
        "/api/v1/api-tokens",
        "/api/v1/admin-token",
        "/api/v1/cluster/ca-rotation",
        "/api/v1/cluster/heartbeat-key",
        "/api/v1/join",
        "/api/v1/bootstrap/create",
        "/api/v1/bootstrap/join",
    ];
    let bodies: [&[u8]; 8] = [
        b"",
        b"{",
        b"[1, 2",
        b"\"just a string\"",
        b"{\"name\": 5, \"resources\": \"none\"}",
        b"{\"properties\": [[1, 2, 3]]}",
        b"{\"to\": {\"deep\": [[[[[]]]]]}}",
        &[0xff, 0xfe, 0x00, 0x7b, 0x22, 0x80],
    ];
    let rt = runtime();
    let mut answers = 0;
    rt.block_on(async {
        let http = https(None);
        for path in paths {
            for body in bodies {
                let response = http
                    .post(format!("https://{api}{path}"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{path} with {body:?}: no answer: {e}"));
                let status = response.status();
                assert!(status.is_client_error(), "{path} with {:?}: {status}", String::from_utf8_lossy(body));
                answers += 1;
            }
        }
    });
    assert_eq!(answers, paths.len() * bodies.len());
    let after = (c.json(&["role", "show", "keep143"])["generation"].clone(), c.json(&["cluster", "show"]));
    assert_eq!(before, after, "a refused request changed something");
    assert_eq!(c.role_processes("keep143").len(), 1);
}
