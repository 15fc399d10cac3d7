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

/// A cluster grown to 600 roles with 4 KB of parameters each (about 3 MB of state): a node
/// that joins after the log was compacted installs a snapshot larger than any default body
/// limit (2 MiB), sent as its bytes.
#[test]
fn a_new_node_installs_a_snapshot_larger_than_any_default_body_limit() {
    const ROLES: usize = 600;
    let mut c = Cluster::new(176, 4, 0);
    for i in 0..3 {
        c.start(i);
    }
    c.create();
    for i in 1..3 {
        let out = c.join(i);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(c.wait_status(Duration::from_secs(30), |s| up_count(s) == 3));

    let (api, token) = (c.nodes[0].api.clone(), c.admin_token());
    let rt = runtime();
    rt.block_on(async {
        let http = https(None);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (http, api, token, next) = (http.clone(), api.clone(), token.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= ROLES {
                            return;
                        }
                        let spec = serde_json::json!({
                            "name": format!("big{k}"), "desired": "stopped",
                            "resources": [{ "name": "main", "type": "process",
                                "params": { "command": "exec sleep 1000", "note": "x".repeat(4096) } }],
                        });
                        let response = http
                            .post(format!("https://{api}/api/v1/roles"))
                            .bearer_auth(&token)
                            .json(&spec)
                            .send()
                            .await
                            .expect("an answer");
                        assert_eq!(response.status(), 201, "role big{k}: {:?}", response.text().await);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
    });
    let leader = c.leader().expect("leader");
    let mut leader_view = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(15), || {
            leader_view = local_view(&c, c.index_of(&leader), &["status", "--local", "--json"]).unwrap_or_default();
            leader_view["database"]["purged_index"].as_u64().is_some()
                && leader_view["database"]["snapshot_bytes"].as_u64().is_some_and(|b| b > 2 << 20)
        }),
        "the leader never compacted its log into a snapshot of the roles: {leader_view}"
    );

    c.start(3);
    let out = c.join(3);
    assert!(out.status.success(), "{}", text(&out));
    let caught_up = wait_until(Duration::from_secs(60), || {
        local_view(&c, 3, &["status", "--local", "--json"])
            .is_some_and(|v| v["roles"].as_array().is_some_and(|roles| roles.len() == ROLES))
    });
    assert!(caught_up, "the new node did not catch up: {}", c.log(3));
    let view = local_view(&c, 3, &["status", "--local", "--json"]).expect("status");
    let purged = leader_view["database"]["purged_index"].as_u64().unwrap_or_default();
    assert!(
        view["database"]["snapshot_index"].as_u64().is_some_and(|s| s >= purged)
            && view["database"]["snapshot_bytes"].as_u64().is_some_and(|b| b > 2 << 20),
        "the new node caught up without installing the snapshot: {view}"
    );
    assert!(c.wait_status(Duration::from_secs(30), |s| up_count(s) == 4), "{:?}", c.status());
}

/// Log entries of over a megabyte each (nine `apply` requests near the API's body limit, more
/// than a node takes in one append): a follower that missed them catches up through appends
/// the leader cuts to a bounded size, not through a snapshot.
#[test]
fn a_follower_catches_up_over_entries_of_megabytes_in_bounded_appends() {
    const BATCHES: usize = 9;
    const ROLES_PER_BATCH: usize = 250;
    let mut c = Cluster::new(177, 3, 0);
    c.form();
    let leader = c.leader().expect("leader");
    let follower = c.nodes.iter().rposition(|n| n.name != leader).expect("a follower");
    c.kill9(follower);

    let (api, token) = (c.nodes[c.index_of(&leader)].api.clone(), c.admin_token());
    let rt = runtime();
    rt.block_on(async {
        let http = https(None);
        for batch in 0..BATCHES {
            let roles: Vec<_> = (0..ROLES_PER_BATCH)
                .map(|k| {
                    serde_json::json!({
                        "name": format!("wide{batch}-{k}"), "desired": "stopped",
                        "resources": [{ "name": "main", "type": "process",
                            "params": { "command": "exec sleep 1000", "note": "y".repeat(6000) } }],
                    })
                })
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({ "roles": roles })).expect("json");
            assert!(body.len() > 1_400_000, "{} bytes", body.len());
            let response = http
                .post(format!("https://{api}/api/v1/apply"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("an answer");
            assert!(response.status().is_success(), "batch {batch}: {:?}", response.text().await);
        }
    });

    c.start(follower);
    let caught_up = wait_until(Duration::from_secs(60), || {
        local_view(&c, follower, &["status", "--local", "--json"])
            .is_some_and(|v| v["roles"].as_array().is_some_and(|r| r.len() == BATCHES * ROLES_PER_BATCH))
    });
    assert!(caught_up, "the follower did not catch up: {}", c.log(follower));
    let view = local_view(&c, follower, &["status", "--local", "--json"]).expect("status");
    assert!(view["database"]["snapshot_index"].is_null(), "caught up from a snapshot, not appends: {view}");
}
