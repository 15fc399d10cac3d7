//! Log compaction and snapshot install: after more writes than the snapshot policy allows in the
//! log, a node that was down and a node that joins afterwards both catch up from a snapshot.

mod common;

use std::time::Duration;

use common::*;

/// More than the 500 entries after which a snapshot is taken and the log purged.
const WRITES: usize = 640;
const WRITERS: usize = 8;

fn local_view(c: &Cluster, i: usize, args: &[&str]) -> Option<serde_json::Value> {
    let endpoint = c.nodes[i].api.clone();
    let out = c.halo_env(args, &[("HALO_ENDPOINT", &endpoint)]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

#[test]
fn lagging_and_new_nodes_catch_up_from_a_snapshot() {
    let mut c = Cluster::new(112, 4, 0);
    for i in 0..3 {
        c.start(i);
    }
    c.create();
    for i in 1..3 {
        let out = c.join(i);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(c.wait_status(Duration::from_secs(30), |s| up_count(s) == 3));

    // Node 2 misses every write below.
    c.kill9(2);
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let c = &c;
            scope.spawn(move || {
                for k in (w..WRITES).step_by(WRITERS) {
                    let out = c.halo(&["cluster", "set", &format!("label.k{k}={k}")]);
                    assert!(out.status.success(), "write {k}: {}", text(&out));
                }
            });
        }
    });
    let leader = c.leader().expect("leader");
    // Snapshotting and purging run in the background after the writes.
    let mut leader_view = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(15), || {
            leader_view = local_view(&c, c.index_of(&leader), &["status", "--local", "--json"]).unwrap_or_default();
            leader_view["database"]["purged_index"].as_u64().is_some()
        }),
        "the leader never purged its log: {leader_view}"
    );
    let purged = leader_view["database"]["purged_index"].as_u64().unwrap_or_default();
    assert!(leader_view["database"]["snapshot_index"].as_u64().is_some_and(|s| s >= purged), "{leader_view}");

    // A node that joins now can only get the purged prefix from a snapshot.
    c.start(3);
    let out = c.join(3);
    assert!(out.status.success(), "{}", text(&out));
    // The node that was down is behind the purge point too.
    c.start(2);

    for i in [2, 3] {
        let caught_up = wait_until(Duration::from_secs(30), || {
            local_view(&c, i, &["cluster", "show", "--local", "--json"])
                .is_some_and(|v| (0..WRITES).all(|k| v["properties"][format!("label.k{k}")] == k.to_string().as_str()))
        });
        assert!(caught_up, "{} did not catch up: {}", c.nodes[i].name, c.log(i));
        let view = local_view(&c, i, &["status", "--local", "--json"]).expect("status");
        assert!(
            view["database"]["snapshot_index"].as_u64().is_some_and(|s| s >= purged),
            "{} caught up without installing a snapshot: {view}",
            c.nodes[i].name
        );
    }
    assert!(c.wait_status(Duration::from_secs(30), |s| up_count(s) == 4));
}
