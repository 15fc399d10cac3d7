//! Health probes of process resources: a service that takes its time to start listening and
//! a healthy one are left alone; one that stops answering its HTTP probe is killed and
//! restarted in place; a malformed probe is refused.

mod common;

use std::time::Duration;

use common::*;

fn server_pid(c: &Cluster, role: &str) -> Option<i32> {
    c.role_pids(role).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("http.server"))
    })
}

#[test]
fn a_service_that_stops_answering_its_probe_is_restarted() {
    let mut c = Cluster::new(125, 2, 0);
    c.form();
    let out = c.halo(&[
        "role",
        "create",
        "web125",
        "--type",
        "process",
        "--param",
        // It listens only a second after it starts (several probe intervals): still starting,
        // not failing.
        "command=sleep 1; exec python3 -m http.server 18125 --bind 127.0.0.1",
        "--param",
        "probe=http://127.0.0.1:18125/",
        "--monitor-interval",
        "300",
        "--monitor-timeout",
        "500",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("web125", Duration::from_secs(15), |_| true).is_some());
    assert!(wait_until(Duration::from_secs(10), || server_pid(&c, "web125").is_some()));
    let first = server_pid(&c, "web125").expect("server");

    // Healthy: several probe intervals pass and nothing is restarted.
    assert!(
        holds_for(Duration::from_secs(3), || server_pid(&c, "web125") == Some(first)),
        "a healthy service was restarted"
    );

    // Hung: it still accepts connections but never answers. The probe times out, and the
    // process is killed and started again.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGSTOP).expect("stop");
    assert!(
        wait_until(Duration::from_secs(10), || server_pid(&c, "web125").is_some_and(|p| p != first)),
        "the hung service was not restarted: {:?}",
        c.role("web125")
    );
    assert_eq!(c.role("web125").map(|r| r["generation"].clone()), Some(1.into()), "restarted in place");

    let out = c.halo(&[
        "role",
        "create",
        "bad125",
        "--type",
        "process",
        "--param",
        "command=true",
        "--param",
        "probe=ping:x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid probe 'ping:x'"), "{}", text(&out));
}
