//! `halo demo` starts a working cluster with its sample roles (a VM among them, given the test
//! guest) and stops cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_demo_forms_a_cluster_with_sample_roles() {
    let id = 192;
    ids::claim(id);
    let dir = tempfile::Builder::new().prefix("halo-demo-test-").tempdir().expect("tempdir");
    let mut demo = Command::new(exe())
        .args(["demo", "--prefix", &format!("127.{id}.1"), "--dir"])
        .arg(dir.path())
        .arg("--guest")
        .arg(test_guest())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let stdout = demo.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut output = Vec::new();
    while !output.iter().any(|l: &String| l == "demo ready") {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("demo prints 'demo ready' within a minute");
        output.push(line);
        assert!(started.elapsed() < Duration::from_secs(90), "{output:?}");
    }
    let config = dir.path().join("config.toml");
    let out =
        Command::new(exe()).args(["role", "list", "--json"]).env("HALO_CONFIG", &config).output().expect("role list");
    assert!(out.status.success(), "{}", text(&out));
    let roles: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let roles = roles.as_array().expect("array");
    assert_eq!(roles.len(), 4, "three services and a VM: {roles:?}");
    assert!(roles.iter().all(|r| r["state"] == "online"), "{roles:?}");
    let owner = |name: &str| roles.iter().find(|r| r["name"] == name).and_then(|r| r["owner"].as_str());
    assert_eq!(owner("web"), Some("node1"));
    assert_ne!(owner("db-primary"), owner("db-replica"), "anti-affinity keeps the databases apart");
    assert_eq!(owner("vm"), Some("node2"), "the VM role runs the test guest on its preferred node");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(demo.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = demo.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "demo exit: {status:?}");
    // Nothing the demo started outlives it for long: the fence guards end their workloads
    // when the stopped agents' leases run out.
    let leftovers = || {
        (1..=3)
            .flat_map(|i| processes_with_env("HALO_GUARD", &dir.path().join(format!("node{i}")).display().to_string()))
            .count()
    };
    assert!(wait_until(Duration::from_secs(10), || leftovers() == 0), "workloads outlived the demo");
}
