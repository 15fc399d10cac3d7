//! Floating addresses on hosts in network namespaces, with halo's own `ip` resource and with
//! Debian's `ocf:heartbeat:IPaddr2`: the address is on its owner only, neighbours learn where
//! it went, a node whose agent hangs drops it before another node takes it, and it never sits
//! on two hosts at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_hung_node_drops_its_floating_address_before_another_takes_it() {
    let id = 170;
    let address = format!("10.{id}.3.100");
    let params = [format!("address={address}/24"), "interface=eth0".to_string(), "announce=3".to_string()];
    follow_the_address(id, "ip", &params, &address);
}

#[test]
fn a_hung_node_s_guard_drops_an_ipaddr2_address_before_another_takes_it() {
    let id = 171;
    let address = format!("10.{id}.3.100");
    let params = [format!("ip={address}"), "cidr_netmask=24".to_string(), "nic=eth0".to_string()];
    follow_the_address(id, "ocf:heartbeat:IPaddr2", &params, &address);
}

fn follow_the_address(id: u8, kind: &str, params: &[String], address: &str) {
    let lan = Lan::new(id, 3);
    let mut c = Cluster::new(id, 3, 0);
    lan.place(&mut c);
    c.form();
    // A node other than the leader owns it: the hang tested is a node's, not an election.
    let leader = c.leader().expect("a leader");
    let first = c.nodes.iter().map(|n| n.name.clone()).find(|n| *n != leader).expect("a follower");
    let mut args = vec!["role", "create", "vip", "--type", kind, "--preferred", &first];
    for p in params {
        args.extend(["--param", p.as_str()]);
    }
    let out = c.halo(&args);
    assert!(out.status.success(), "{}", text(&out));
    let owner = c.wait_online("vip", Duration::from_secs(20), |_| true).expect("vip online");
    let owner_n = c.index_of(&owner) + 1;
    assert!(wait_until(Duration::from_secs(5), || lan.holders(address) == vec![owner_n]), "{:?}", lan.holders(address));

    // This host has the address in its ARP cache, at the owner.
    let bridge = format!("hbr{id}");
    let primed = std::process::Command::new("ip")
        .args(["neigh", "replace", address, "lladdr", &lan.mac(owner_n), "dev", &bridge, "nud", "stale"])
        .output()
        .expect("ip neigh");
    assert!(primed.status.success(), "{}", text(&primed));

    // The owner's agent hangs; its fence guard lives on.
    c.freeze(owner_n - 1, true);
    let began = Instant::now();
    let mut overlaps = Vec::new();
    let mut taken = None;
    while began.elapsed() < Duration::from_secs(30) {
        let holders = lan.holders(address);
        if holders.len() > 1 {
            overlaps.push((began.elapsed(), holders.clone()));
        }
        if let Some(&next) = holders.iter().find(|&&n| n != owner_n) {
            taken = Some(next);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let next = taken.expect("another node took the address");
    assert!(overlaps.is_empty(), "the address was on two hosts at once: {overlaps:?}");
    assert!(!lan.holds(owner_n, address), "the hung node still held the address when node {next} took it");
    let next_name = c.nodes[next - 1].name.clone();
    assert_eq!(c.wait_online("vip", Duration::from_secs(20), |o| o != owner).as_deref(), Some(next_name.as_str()));
    // The new owner announced it: this host's cache moved without asking.
    let mac = lan.mac(next);
    assert!(
        wait_until(Duration::from_secs(5), || lan.neighbour(address).as_deref() == Some(mac.as_str())),
        "{:?}",
        lan.neighbour(address)
    );

    // Woken up, the old owner takes nothing back; a planned move hands it over cleanly.
    c.freeze(owner_n - 1, false);
    assert!(
        c.wait_status(Duration::from_secs(20), |s| node(s, &owner)["state"] == "up"),
        "{owner} did not come back: {:?}",
        c.status()
    );
    assert_eq!(lan.holders(address), vec![next]);
    let out = c.halo(&["role", "move", "vip", "--to", &owner]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(c.wait_online("vip", Duration::from_secs(20), |o| o == owner).is_some(), "{:?}", c.role("vip"));
    assert!(wait_until(Duration::from_secs(5), || lan.holders(address) == vec![owner_n]), "{:?}", lan.holders(address));
    assert!(
        wait_until(Duration::from_secs(5), || lan.neighbour(address).as_deref() == Some(lan.mac(owner_n).as_str())),
        "{:?}",
        lan.neighbour(address)
    );

    // The owner's fence guard dies: the new guard undoes what the old one held before the
    // role starts again, and the address ends up on its owner once.
    let data_dir = c.nodes[owner_n - 1].data_dir.display().to_string();
    let guards = processes_with_cmdline(&["fence-guard", &data_dir]);
    assert_eq!(guards.len(), 1, "{guards:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(guards[0]), nix::sys::signal::Signal::SIGKILL).expect("kill");
    assert!(
        wait_until(Duration::from_secs(10), || c.log(owner_n - 1).contains("undoing what an earlier guard left")),
        "the new guard did not take over what the old one held"
    );
    assert!(c.wait_online("vip", Duration::from_secs(20), |o| o == owner).is_some(), "{:?}", c.role("vip"));
    assert!(wait_until(Duration::from_secs(5), || lan.holders(address) == vec![owner_n]), "{:?}", lan.holders(address));
}
