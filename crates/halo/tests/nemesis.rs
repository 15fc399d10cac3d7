//! Fault injection on real agents, Jepsen style. A seeded nemesis crashes nodes (SIGKILL of the
//! agent, its guard and workloads, then a restart), hangs agents (SIGSTOP, then SIGCONT), and
//! partitions a node on every network or on one (iptables), one fault at a time, while a
//! client creates, moves, stops and deletes roles and writes to the cluster database. The checker reads the roles' own
//! evidence and the database afterwards:
//! - S1: no workload ever failed to take its role's exclusive `flock` (two instances at once);
//! - S2: every acknowledged write is in the database;
//! - L1: once the faults stop, every role runs exactly once.
//!
//! `HALO_NEMESIS_SEED` replays a schedule; `HALO_NEMESIS_ROUNDS` makes it longer.

mod common;

use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROLES: [&str; 3] = ["nem-a", "nem-b", "nem-c"];

/// A client that gives up after 5 s, as an impatient admin or a script would: a write it gave
/// up on counts as not acknowledged.
fn client(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .arg("5")
        .arg(exe())
        .args(args)
        .env("HALO_CONFIG", &c.config)
        .env_remove("HALO_ENDPOINT")
        .env_remove("HALO_TOKEN")
        .output()
        .expect("run halo")
}

#[test]
fn a_seeded_nemesis_breaks_neither_s1_nor_s2_nor_l1() {
    let seed = std::env::var("HALO_NEMESIS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    let rounds: usize = std::env::var("HALO_NEMESIS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    println!("NEMESIS seed {seed} ({rounds} rounds); replay with HALO_NEMESIS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Cluster::new(142, 3, 0);
    c.form();
    let mut dirs = Vec::new();
    for role in ROLES {
        let dir = c.dir.path().join(role);
        let command = lock_workload(&dir);
        let out = c.halo(&["role", "create", role, "--type", "process", "--param", &format!("command={command}")]);
        assert!(out.status.success(), "{}", text(&out));
        dirs.push(dir);
    }
    for role in ROLES {
        assert!(c.wait_online(role, Duration::from_secs(15), |_| true).is_some(), "{role} never came online");
    }

    let (mut faults, mut operations) = (0, 0);
    let mut acknowledged = Vec::new();
    let mut temporary: Vec<String> = Vec::new();
    for round in 0..rounds {
        let victim = rng.random_range(0..3);
        let name = c.nodes[victim].name.clone();
        let fault = rng.random_range(0..4);
        let what = ["crash", "hang", "partition on every network", "cut one network"][fault];
        println!("NEMESIS round {round}: {what} {name}");
        match fault {
            0 => c.crash(victim),
            1 => c.freeze(victim, true),
            2 => {
                for net in c.nodes[victim].nets.clone() {
                    c.block(&net);
                }
            }
            _ => {
                let net = c.nodes[victim].nets[rng.random_range(0..2)].clone();
                c.block(&net);
            }
        }
        faults += 1;
        // The client goes on meanwhile: planned moves and database writes.
        let until = std::time::Instant::now() + Duration::from_millis(rng.random_range(1_500..4_000));
        while std::time::Instant::now() < until {
            let pick = rng.random_range(0..10);
            if pick < 4 {
                let role = ROLES[rng.random_range(0..ROLES.len())];
                let _ = client(&c, &["role", "move", role]);
            } else if pick == 4 {
                let name = format!("tmp{operations}");
                let out =
                    client(&c, &["role", "create", &name, "--type", "process", "--param", "command=exec sleep 100000"]);
                if out.status.success() {
                    temporary.push(name);
                }
            } else if pick == 5 && !temporary.is_empty() {
                let name = temporary[rng.random_range(0..temporary.len())].clone();
                let _ = client(&c, &["role", "stop", &name]);
                let _ = client(&c, &["role", "delete", &name]);
            } else {
                let write = format!("label.nemesis{round}x{operations}=v{operations}");
                if client(&c, &["cluster", "set", &write]).status.success() {
                    acknowledged.push(write);
                }
            }
            operations += 1;
        }
        match fault {
            0 => c.start(victim),
            1 => c.freeze(victim, false),
            _ => c.unblock_all(),
        }
        assert!(
            c.wait_status(Duration::from_secs(30), |s| s["quorum"] == true && up_count(s) == 3),
            "round {round}: the cluster did not heal: {:?}",
            c.status()
        );
    }

    // L1: every role back, exactly once.
    for role in ROLES {
        assert!(c.wait_online(role, Duration::from_secs(30), |_| true).is_some(), "L1: {role}: {:?}", c.role(role));
        assert!(
            wait_until(Duration::from_secs(10), || c.role_processes(role).len() == 1),
            "L1: {role} runs {} times",
            c.role_processes(role).len()
        );
    }
    // Roles created meanwhile are deleted once stopped, and then run nowhere.
    for name in &temporary {
        if c.role(name).is_some() {
            let _ = c.halo(&["role", "stop", name]);
            assert!(
                wait_until(Duration::from_secs(30), || c.halo(&["role", "delete", name]).status.success()),
                "{name} could not be deleted: {:?}",
                c.role(name)
            );
        }
        assert!(wait_until(Duration::from_secs(10), || c.role_processes(name).is_empty()), "deleted {name} still runs");
    }
    // S1: no second instance ever got as far as the lock.
    for (role, dir) in ROLES.iter().zip(&dirs) {
        assert!(lines(dir, "failures").is_empty(), "S1: {role} ran twice: {:?}", lines(dir, "failures"));
    }
    // S2: every acknowledged write survived.
    let properties = c.json(&["cluster", "show"])["properties"].clone();
    for write in &acknowledged {
        let (key, value) = write.split_once('=').expect("key=value");
        assert_eq!(properties[key], value, "S2: acknowledged write {write} is missing");
    }
    println!(
        "NEMESIS seed {seed}: {faults} faults, {operations} client operations ({} roles created), {} acknowledged writes, 0 violations",
        temporary.len(),
        acknowledged.len()
    );
}
