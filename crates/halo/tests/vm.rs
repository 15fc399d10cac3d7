//! VM roles with real QEMU (TCG) and the project's test guest, whose serial console prints
//! "HALO-HEARTBEAT <uptime>" every second: a migrated guest keeps counting, a restarted one
//! starts again from zero.

mod common;

use std::time::Duration;

use common::vm::*;
use common::*;
use serde_json::Value;

fn wait_online_on(lab: &Lab, role: &str, node: &str) {
    let there = || lab.c.role(role).is_some_and(|r| r["owner"] == node && r["state"] == "online");
    assert!(wait_until(Duration::from_secs(90), there), "{role} not online on {node}: {:?}", lab.c.role(role));
}

fn move_json(lab: &Lab, role: &str, to: &str, mode: &str) -> Value {
    let out = lab.c.halo(&["role", "move", role, "--to", to, "--mode", mode, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).expect("move --json")
}

#[test]
fn a_vm_moves_live_quick_and_cold_and_its_guest_keeps_running() {
    let lab = Lab::new(144, 3);
    let out = lab.create("vm1", &["--preferred", "n1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.c.wait_online("vm1", Duration::from_secs(60), |_| true).as_deref(), Some("n1"));
    let on_n1 = lab.wait_beating("n1", "vm1", 3);
    assert_eq!(lab.qemus("vm1"), 1);

    // Live: the guest goes on counting on n2, and the command says how long it took.
    let moved = move_json(&lab, "vm1", "n2", "live");
    assert_eq!(
        (moved["mode"].as_str(), moved["to"].as_str()),
        (Some("live"), Some("n2")),
        "{moved} {:?}\n{}",
        lab.c.role("vm1"),
        lab.c.log(1)
    );
    for field in ["total_ms", "downtime_ms", "qemu_total_ms", "qemu_downtime_ms"] {
        assert!(moved[field].as_u64().is_some(), "{field} missing: {moved}");
    }
    println!("live migration: {moved}");
    let last_n1 = *lab.beats("n1", "vm1").last().expect("beats on n1");
    assert!(last_n1 >= *on_n1.last().unwrap());
    let on_n2 = lab.wait_beating("n2", "vm1", 2);
    assert!(
        on_n2[0] > last_n1,
        "uptime must continue after a live migration: n1 {last_n1}, n2 {on_n2:?}\n{}",
        lab.c.log(1)
    );
    assert!(wait_until(Duration::from_secs(10), || lab.qemus("vm1") == 1), "the source's QEMU must quit");
    let n1_after = lab.beats("n1", "vm1").len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.beats("n1", "vm1").len(), n1_after, "the guest must not run on n1 any more");

    // Quick: paused, saved to shared storage, restored on n3; uptime continues.
    let moved = move_json(&lab, "vm1", "n3", "quick");
    assert_eq!(moved["mode"].as_str(), Some("quick"), "{moved}");
    println!("quick migration: {moved}");
    let last_n2 = *lab.beats("n2", "vm1").last().expect("beats on n2");
    let on_n3 = lab.wait_beating("n3", "vm1", 2);
    assert!(
        on_n3[0] > last_n2,
        "uptime must continue after a quick migration: n2 {last_n2}, n3 {on_n3:?}\n{}",
        lab.c.log(2)
    );
    let leftovers: Vec<_> =
        std::fs::read_dir(lab.shared.join(".halo-state")).map(|d| d.flatten().count()).into_iter().collect();
    assert_eq!(leftovers, vec![0], "the saved state is removed once restored");

    // Cold: shut down, booted afresh on n1: uptime starts again.
    let moved = move_json(&lab, "vm1", "n1", "cold");
    assert_eq!(moved["mode"].as_str(), Some("cold"), "{moved}");
    let before = lab.beats("n1", "vm1").len();
    let after = lab.wait_beating("n1", "vm1", 2);
    assert!(after[before] < 10.0, "a cold move boots the guest again: {:?}", &after[before..]);
    let n3 = std::fs::read_to_string(lab.serial("n3", "vm1")).unwrap_or_default();
    assert!(n3.contains("HALO-GUEST powering off"), "a cold move shuts the guest down through ACPI: {n3}");
    assert!(wait_until(Duration::from_secs(10), || lab.qemus("vm1") == 1));
    let shown = lab.c.halo(&["role", "show", "vm1"]);
    assert!(text(&shown).contains("last move   quick migration n2 -> n3"), "{}", text(&shown));
}

#[test]
fn a_crashed_node_s_vm_boots_elsewhere_and_a_hung_guest_is_restarted() {
    let mut lab = Lab::new(145, 3);
    let out = lab.create("vm2", &["--preferred", "n1", "--max-restarts", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.c.wait_online("vm2", Duration::from_secs(60), |_| true).as_deref(), Some("n1"));
    lab.wait_beating("n1", "vm2", 2);

    // The whole node dies (agent, guard, QEMU): the VM boots from its shared disk elsewhere.
    lab.c.crash(0);
    let owner = lab.c.wait_online("vm2", Duration::from_secs(60), |o| o != "n1").expect("failed over");
    let beats = lab.wait_beating(&owner, "vm2", 1);
    assert!(beats[0] < 10.0, "a failed-over VM boots afresh: {beats:?}");
    assert_eq!(lab.qemus("vm2"), 1);

    // The guest hangs (QEMU stopped): no heartbeat, no QMP answer; restarted in place.
    let pid = lab.c.role_pids("vm2")[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).expect("stop qemu");
    let restarted = wait_until(Duration::from_secs(60), || lab.c.role_pids("vm2").iter().any(|&p| p != pid));
    assert!(restarted, "a hung guest must be restarted: {:?}", lab.c.role("vm2"));
    let role = lab.c.role("vm2").expect("role");
    let why = role["decisions"].to_string() + role["detail"].as_str().unwrap_or("");
    let before = lab.beats(&owner, "vm2").len();
    let beats = lab.wait_beating(&owner, "vm2", 1);
    assert!(beats[before] < 10.0, "restarted, so booted afresh: {:?}", &beats[before..]);
    assert!(wait_until(Duration::from_secs(10), || lab.qemus("vm2") == 1), "the hung QEMU is gone: {why}");
}

#[test]
fn a_disk_locked_by_another_qemu_is_refused_and_reported() {
    let lab = Lab::new(146, 2);
    // Someone runs the disk outside halo.
    let disk = lab.disk("vm3");
    let mut rogue = std::process::Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-M", "pc", "-m", "32", "-nodefaults", "-display", "none", "-S", "-drive"])
        .arg(format!("file={disk},format=raw,if=virtio"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rogue qemu");
    std::thread::sleep(Duration::from_millis(500));
    let out = lab.create("vm3", &["--max-restarts", "0", "--max-failovers", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let failed = wait_until(Duration::from_secs(60), || lab.c.role("vm3").is_some_and(|r| r["state"] == "failed"));
    let role = lab.c.role("vm3").expect("role");
    let _ = rogue.kill();
    let _ = rogue.wait();
    assert!(failed, "{role}");
    assert!(role.to_string().contains("Failed to get \\\"write\\\" lock"), "the lock is the reason given: {role}");
    assert_eq!(lab.qemus("vm3"), 0, "nothing of it runs");
}

#[test]
fn drain_live_migrates_every_vm_and_failback_brings_them_back() {
    let lab = Lab::new(147, 2);
    for name in ["d1", "d2", "d3"] {
        let out = lab.create(name, &["--preferred", "n1"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for name in ["d1", "d2", "d3"] {
        assert_eq!(lab.c.wait_online(name, Duration::from_secs(90), |_| true).as_deref(), Some("n1"));
        lab.wait_beating("n1", name, 1);
    }
    let out = lab.c.halo(&["node", "pause", "n1", "--drain"]);
    assert!(out.status.success(), "{}", text(&out));
    for name in ["d1", "d2", "d3"] {
        wait_online_on(&lab, name, "n2");
        let last = lab.c.role(name).unwrap()["last_migration"].clone();
        assert_eq!((last["mode"].as_str(), last["ok"].as_bool()), (Some("live"), Some(true)), "{name}: {last}");
        let last_n1 = *lab.beats("n1", name).last().unwrap();
        let on_n2 = lab.wait_beating("n2", name, 1);
        assert!(on_n2[0] > last_n1, "{name}: uptime continues");
    }
    let out = lab.c.halo(&["node", "resume", "n1", "--failback"]);
    assert!(out.status.success(), "{}", text(&out));
    for name in ["d1", "d2", "d3"] {
        wait_online_on(&lab, name, "n1");
        assert_eq!(lab.c.role(name).unwrap()["last_migration"]["mode"].as_str(), Some("live"));
    }
    assert!(wait_until(Duration::from_secs(10), || ["d1", "d2", "d3"].iter().all(|n| lab.qemus(n) == 1)));
}

#[test]
fn a_migration_that_cannot_happen_leaves_the_guest_running_where_it_was() {
    let mut lab = Lab::new(148, 3);
    let out = lab
        .create("vm5", &["--preferred", "n1", "--param", "migration_timeout=5", "--param", "migration_bandwidth=16M"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.c.wait_online("vm5", Duration::from_secs(60), |_| true).as_deref(), Some("n1"));
    lab.wait_beating("n1", "vm5", 2);

    // The target's migration ports are firewalled (its API and heartbeats are not).
    let target_ip = lab.c.nodes[1].nets[0].split(':').next().unwrap().to_string();
    let rule: Vec<String> = ["INPUT", "-d", &target_ip, "-p", "tcp", "--dport", "10000:65000", "-j", "DROP"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let iptables = |op: &str| std::process::Command::new("iptables").arg(op).args(&rule).status().expect("iptables");
    assert!(iptables("-I").success());
    let out = lab.c.halo(&["role", "move", "vm5", "--to", "n2", "--mode", "live"]);
    let _ = iptables("-D");
    assert!(!out.status.success(), "the move must fail: {}", text(&out));
    assert!(text(&out).contains("live migration of role 'vm5' to n2 failed"), "{}", text(&out));
    assert!(text(&out).contains("it keeps running on n1"), "{}", text(&out));
    still_running_on(&lab, "vm5", "n1");
    assert!(wait_until(Duration::from_secs(10), || lab.qemus("vm5") == 1), "the target's waiting QEMU is gone");

    // The target dies in the middle of a (throttled) migration.
    std::thread::scope(|s| {
        let mover = s.spawn(|| lab.c.halo(&["role", "move", "vm5", "--to", "n3", "--mode", "live"]));
        let ready = wait_until(Duration::from_secs(60), || {
            lab.c.role("vm5").is_some_and(|r| r["migration"]["target_ready"] == true)
        });
        assert!(ready, "{:?}", lab.c.role("vm5"));
        // 16 MiB/s: the guest's memory takes seconds to copy.
        std::thread::sleep(Duration::from_millis(1000));
        power_off(&lab.c, 2);
        let out = mover.join().expect("mover");
        assert!(!out.status.success(), "the move must fail: {}", text(&out));
        assert!(text(&out).contains("it keeps running on n1"), "{}", text(&out));
    });
    still_running_on(&lab, "vm5", "n1");
    assert!(wait_until(Duration::from_secs(10), || lab.qemus("vm5") == 1));
    lab.c.kill9(2);
}

/// After a failed migration: `role` is still online on `node`, and its guest never restarted.
fn still_running_on(lab: &Lab, role: &str, node: &str) {
    let r = lab.c.role(role).expect("role");
    assert_eq!((r["owner"].as_str(), r["state"].as_str()), (Some(node), Some("online")), "{r}");
    let before = lab.beats(node, role).len();
    let after = lab.wait_beating(node, role, 2);
    assert!(
        after[before - 1..].windows(2).all(|w| w[1] > w[0]),
        "the guest went on on {node}: {:?}",
        &after[before - 1..]
    );
}

/// Node `i` loses power: its agent, fence guard and every workload die at once.
fn power_off(c: &Cluster, i: usize) {
    let marker = c.nodes[i].data_dir.display().to_string();
    let mut victims = processes_with_env("HALO_GUARD", &marker);
    victims.extend(processes_with_cmdline(&["fence-guard", &marker]));
    victims.extend(c.nodes[i].child.as_ref().map(|child| child.id() as i32));
    for pid in victims {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

#[test]
fn bad_vm_definitions_are_refused_and_change_nothing() {
    let lab = Lab::new(149, 2);
    for (extra, expected) in [
        (vec!["--param", "kernel=/nonexistent/vmlinuz"], "kernel /nonexistent/vmlinuz does not exist"),
        (vec!["--param", "memory=64G"], "more than any node offers"),
        (vec!["--param", "vcpus=zero"], "invalid vcpus"),
    ] {
        let out = lab.create("bad", &extra);
        assert!(!out.status.success(), "{extra:?} must be refused");
        assert!(text(&out).contains(expected), "{extra:?}: {}", text(&out));
    }
    let outside = lab.c.dir.path().join("local.img");
    std::fs::File::create(&outside).and_then(|f| f.set_len(1 << 20)).expect("disk");
    let out = lab.create("bad", &["--param", &format!("disks={}", outside.display())]);
    assert!(!out.status.success());
    assert!(text(&out).contains("is not on the cluster's shared storage"), "{}", text(&out));
    let roles = lab.c.json(&["role", "list"]);
    assert_eq!(roles.as_array().map(Vec::len), Some(0), "nothing was created: {roles}");
    assert_eq!(lab.qemus("bad"), 0);
}

/// Booting guests is the heaviest thing a node does (TCG: a core per boot here), and the KVM
/// probe runs beside it; none of it may stall the heartbeats. Under the `fast` profile (a 1 s
/// lease, the leader's own 0.5 s) two VMs start on one node while nobody's lease lapses:
/// every agent's `halo_lease_lapses_total` stays 0 and nothing moves.
#[test]
fn vms_start_under_the_fast_profile_and_no_lease_lapses() {
    let lab = Lab::new(168, 3);
    assert!(lab.c.halo(&["cluster", "set", "profile=fast"]).status.success());
    let node = lab.c.leader().expect("leader");
    for name in ["fast1", "fast2"] {
        let out = lab.create(name, &["--preferred", &node]);
        assert!(out.status.success(), "{}", text(&out));
    }
    for name in ["fast1", "fast2"] {
        wait_online_on(&lab, name, &node);
        lab.wait_beating(&node, name, 3);
    }
    for (i, n) in lab.c.nodes.iter().enumerate() {
        let lapses = lab.c.metric(i, "halo_lease_lapses_total");
        assert_eq!(lapses, Some(0.0), "{}: lease lapses\n{}", n.name, lab.c.log(i));
        assert!(!lab.c.log(i).contains("lease ran out"), "{}", lab.c.log(i));
    }
    for name in ["fast1", "fast2"] {
        let role = lab.c.role(name).expect("role");
        assert_eq!(role["owner"], node.as_str(), "{role}");
        assert_eq!(role["failovers"], 0, "{role}");
    }
}

/// Where a live migration goes is checked, and its stream is TLS between the two nodes'
/// QEMUs, with their cluster certificates:
/// - a member that claims the target listens at an `exec:` URI (QEMU would run it) or at
///   another node's address is refused by the cluster (n2's QEMU starts 5 s late here, so the
///   forged reports come before its real one);
/// - a stranger who reaches the target's port first, with a plain-text migration stream, is
///   hung up on; the target keeps waiting, and the real source's migration goes through. (The
///   source's own connection is held back by a firewall rule until the stranger, who comes
///   from an address of its own, is done: the stranger is always first.)
#[test]
fn a_live_migration_refuses_a_forged_target_and_hangs_up_on_a_plain_text_stream() {
    use std::io::{Read, Write};
    let lab = Lab::new_with(186, 3, |c| {
        let dir = c.dir.path().join("slow-qemu");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = std::env::var("PATH").unwrap_or_default();
        let real = std::env::split_paths(&path)
            .map(|d| d.join(halo_agent::workload::vm::QEMU))
            .find(|q| q.is_file())
            .expect("QEMU on the PATH (scripts/setup installs it)");
        let wrapper = dir.join(halo_agent::workload::vm::QEMU);
        let script = format!(
            "#!/bin/sh\ncase \"$*\" in *\"-incoming defer -S\"*) sleep 5;; esac\nexec {} \"$@\"\n",
            real.display()
        );
        std::fs::write(&wrapper, script).expect("wrapper");
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let path = format!("{}:{path}", dir.display());
        c.nodes[1].env.push(("PATH".into(), path));
    });
    let out = lab.create("vm7", &["--preferred", "n1", "--param", "migration_bandwidth=64M"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lab.c.wait_online("vm7", Duration::from_secs(60), |_| true).as_deref(), Some("n1"));
    let before = lab.wait_beating("n1", "vm7", 2);

    let target_ip = lab.c.nodes[1].nets[0].split(':').next().unwrap().to_string();
    let rule: Vec<String> =
        ["INPUT", "!", "-s", STRANGER, "-d", &target_ip, "-p", "tcp", "--dport", "10000:65000", "-j", "DROP"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let iptables = |op: &str| std::process::Command::new("iptables").arg(op).args(&rule).status().expect("iptables");
    assert!(iptables("-I").success());
    std::thread::scope(|s| {
        let mover = s.spawn(|| lab.c.halo(&["role", "move", "vm7", "--to", "n2", "--mode", "live", "--json"]));
        let recorded = wait_until(Duration::from_secs(10), || {
            lab.c.role("vm7").is_some_and(|r| r["migration"]["id"].is_u64() && r["migration"]["target_ready"] == false)
        });
        if !recorded {
            let _ = iptables("-D");
            panic!("no migration recorded: {:?}", lab.c.role("vm7"));
        }
        let n1_address = format!("tcp:{}:5555", lab.c.nodes[0].nets[0].split(':').next().unwrap());
        for (uri, why) in
            [("exec:cat /etc/shadow", "is not tcp:"), (n1_address.as_str(), "is not an address of node 'n2'")]
        {
            let (status, said) = forge_ready(&lab, "vm7", uri);
            if status < 400 || !said.contains(why) {
                let _ = iptables("-D");
                panic!("a forged target {uri} was not refused ({status}): {said}");
            }
        }
        let ready = wait_until(Duration::from_secs(60), || {
            lab.c.role("vm7").is_some_and(|r| r["migration"]["target_ready"] == true)
        });
        let port = ready.then(|| incoming_port(&lab.c, "vm7")).flatten();
        let Some(port) = port else {
            let _ = iptables("-D");
            panic!("no target listening: {:?}", lab.c.role("vm7"));
        };
        let mut stranger = connect_from(STRANGER, &format!("{target_ip}:{port}"));
        stranger.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let _ = stranger.write_all(b"QEVM\0\0\0\x03");
        let _ = stranger.write_all(&[0u8; 4096]);
        let mut answer = Vec::new();
        let read = stranger.read_to_end(&mut answer);
        let _ = iptables("-D");
        assert!(
            read.is_ok() || read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the target did not hang up on the plain-text stream: {read:?}"
        );
        assert!(!answer.starts_with(b"QEVM"), "the target answered in plain text");
        let out = mover.join().expect("mover");
        assert!(out.status.success(), "the migration must go through after the stranger: {}", text(&out));
    });
    let after = lab.wait_beating("n2", "vm7", 2);
    assert!(after[0] > *before.last().unwrap(), "the guest must have moved, not restarted: {before:?} {after:?}");
    let qemu_log = std::fs::read_to_string(lab.c.nodes[1].data_dir.join("logs").join("vm7.vm.log")).unwrap_or_default();
    assert!(qemu_log.contains("TLS handshake failed"), "the target's QEMU saw no TLS failure: {qemu_log}");
}

/// Node n2 (by its certificate, over the peer route to the leader) reports the target of
/// `role`'s migration ready at `uri`: the HTTP status and what the leader said.
fn forge_ready(lab: &Lab, role: &str, uri: &str) -> (u16, String) {
    let r = lab.c.role(role).expect("role");
    let status = lab.c.status().expect("status");
    let n2 = node(&status, "n2")["id"].as_u64().expect("n2's id");
    let leader = lab.c.index_of(status["leader"].as_str().expect("a leader"));
    let body = serde_json::json!({ "Write": {
        "command": "report_migration",
        "role": role,
        "node": n2,
        "generation": r["generation"],
        "id": r["migration"]["id"],
        "event": { "event": "ready", "uri": uri },
        "now_ms": wall_ms(),
    }});
    let read = |f: &str| std::fs::read_to_string(lab.c.nodes[1].data_dir.join(f)).expect("n2's TLS files");
    let (cert, key) = (read("node.crt"), read("node.key"));
    let url = format!("https://{}/peer/v1/leader", lab.c.nodes[leader].nets[0]);
    runtime().block_on(async {
        let answer = https(Some((&cert, &key))).post(url).json(&body).send().await.expect("the leader answers");
        (answer.status().as_u16(), answer.text().await.unwrap_or_default())
    })
}

/// A loopback address no node has (test 186's nodes are on 127.186.1.x and 127.186.2.x).
const STRANGER: &str = "127.186.9.9";

fn connect_from(from: &str, to: &str) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("{from}:0").parse().expect("address"))?;
            socket.connect(to.parse().expect("address")).await
        })
        .unwrap_or_else(|e| panic!("cannot reach {to} from {from}: {e}"));
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

/// The port the QEMU waiting for `role`'s guest (`-incoming defer`) listens on.
fn incoming_port(c: &Cluster, role: &str) -> Option<u16> {
    let pids = c.role_pids(role);
    let target = pids.into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains("-incoming defer -S"))
    })?;
    let mut port = None;
    wait_until(Duration::from_secs(10), || {
        let out = std::process::Command::new("ss").args(["-Hltnp"]).output().expect("ss (iproute2)");
        port = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains(&format!("pid={target},")))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|local| local.rsplit(':').next()?.parse().ok());
        port.is_some()
    });
    port
}
