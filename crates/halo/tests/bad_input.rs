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
