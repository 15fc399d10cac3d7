//! Storage: each shared storage path is there on every node, writable, really the same storage
//! (what one node writes, the others read back), locks taken on one node hold against the
//! others, and there is room and speed enough. Only files of the test's own are touched.

use super::survey::{StorageFault, StorageSurvey, Survey};
use super::{Category, Check, Outcome, check, findings, listing};

const LOW_SPACE_MB: u64 = 1024;
/// Writing and syncing a few KiB slower than this makes VM disks and the log crawl.
const SLOW_WRITE_US: u64 = 100_000;

pub fn checks(survey: &Survey) -> Vec<Check> {
    use Category::Storage;
    if survey.storage.is_empty() {
        return vec![check(
            "storage.visible",
            Storage,
            "Shared storage is visible from every node",
            Outcome::Skipped,
            "No shared storage is configured.".into(),
            "",
        )];
    }
    let paths = survey.storage.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
    let all = || listing(&paths);
    let faults = |fault: StorageFault| -> Vec<String> {
        each_node(survey, |s, n| {
            n.write_error
                .as_ref()
                .filter(|e| e.fault == fault || (fault == StorageFault::ReadOnly && e.fault == StorageFault::Io))
                .map(|e| format!("{} on {}: {}", s.path, n.node, e.message))
        })
    };

    let mut out = vec![findings(
        Storage,
        "storage.visible",
        "Shared storage is visible from every node",
        &faults(StorageFault::Missing),
        Outcome::Fail,
        format!("{} is there on every node.", all()),
        |found| format!("Missing: {}.", found.join("; ")),
        "Mount the shared storage on that node at the same path as on the others.",
    )];
    out.push(findings(
        Storage,
        "storage.writable",
        "Every node can write to the shared storage",
        &faults(StorageFault::ReadOnly),
        Outcome::Fail,
        format!("Every node wrote and synced a test file in {}.", all()),
        |found| format!("Cannot write: {}.", found.join("; ")),
        "Mount it read-write on that node and check its permissions for the agent's user.",
    ));

    let not_shared = each_node(survey, |s, n| match (&n.read_from, n.read_identical, &n.read_error) {
        (Some(from), _, Some(e)) => {
            Some(format!("{} cannot read in {} what {from} wrote: {}", n.node, s.path, e.message))
        }
        (Some(from), Some(false), None) => {
            Some(format!("{} reads something else in {} than what {from} wrote", n.node, s.path))
        }
        _ => None,
    });
    let read_back = each_node(survey, |_, n| n.read_identical.filter(|same| *same).map(|_| n.node.clone()));
    out.push(if read_back.is_empty() && not_shared.is_empty() {
        check(
            "storage.shared",
            Storage,
            "What one node writes, the others read",
            Outcome::Skipped,
            "Fewer than two nodes could write: nothing to read back.".into(),
            "",
        )
    } else {
        findings(
            Storage,
            "storage.shared",
            "What one node writes, the others read",
            &not_shared,
            Outcome::Fail,
            format!("A file written on one node was read back identically on every other ({}).", all()),
            |found| format!("{}: that is not the same storage.", found.join("; ")),
            "Mount the same shared file system there: a local directory at the same path is not shared storage.",
        )
    });

    let mut broken = Vec::new();
    let mut held = Vec::new();
    for s in &survey.storage {
        let Some(lock) = &s.lock else { continue };
        held.push(format!("{} held it on {}, {} refused", lock.holder, s.path, listing(&lock.refused)));
        if !lock.granted_while_held.is_empty() {
            broken.push(format!(
                "{} got the lock on {} that {} held",
                listing(&lock.granted_while_held),
                s.path,
                lock.holder
            ));
        }
        if let Some(retry) = lock.after_release.as_ref().filter(|r| !r.granted) {
            broken.push(format!("{} could not lock {} after {} released it", retry.node, s.path, lock.holder));
        }
        broken.extend(lock.errors.iter().map(|e| format!("{e} ({})", s.path)));
    }
    out.push(if held.is_empty() {
        check(
            "storage.locking",
            Storage,
            "Exclusive locks hold across nodes",
            Outcome::Skipped,
            "No node could write, so no lock was taken.".into(),
            "",
        )
    } else {
        findings(
            Storage,
            "storage.locking",
            "Exclusive locks hold across nodes",
            &broken,
            Outcome::Fail,
            format!("{}.", held.join("; ")),
            |found| format!("{}: two nodes could open the same VM disk at once.", found.join("; ")),
            "Use a file system with cluster-wide locks (NFSv4, CephFS, GFS2, OCFS2) and enable locking on the mount.",
        )
    });

    let cramped = each_node(survey, |s, n| {
        let low = n.free_mb.is_some_and(|mb| mb < LOW_SPACE_MB);
        let slow = n.write_us.is_some_and(|us| us > SLOW_WRITE_US);
        (low || slow).then(|| {
            format!(
                "{} on {}: {} MB free, a write took {} ms",
                s.path,
                n.node,
                n.free_mb.unwrap_or(0),
                n.write_us.unwrap_or(0) / 1000
            )
        })
    });
    let mut writes: Vec<u64> = survey.storage.iter().flat_map(|s| s.nodes.iter().filter_map(|n| n.write_us)).collect();
    writes.sort_unstable();
    let least_free = survey.storage.iter().flat_map(|s| s.nodes.iter().filter_map(|n| n.free_mb)).min();
    out.push(match (writes.get(writes.len() / 2), least_free) {
        (Some(median), Some(free)) => findings(
            Storage,
            "storage.capacity",
            "Room and speed on the shared storage",
            &cramped,
            Outcome::Warning,
            format!("At least {free} MB free; a small synced write takes {:.1} ms (median).", *median as f64 / 1000.0),
            |found| format!("{}.", found.join("; ")),
            "Free space on the shared storage, or find what makes its writes slow.",
        ),
        _ => check(
            "storage.capacity",
            Storage,
            "Room and speed on the shared storage",
            Outcome::Skipped,
            "No node could write.".into(),
            "",
        ),
    });
    out
}

/// What `found` says about each node's results on each path.
fn each_node(
    survey: &Survey,
    found: impl Fn(&StorageSurvey, &super::survey::StorageOnNode) -> Option<String>,
) -> Vec<String> {
    survey.storage.iter().flat_map(|s| s.nodes.iter().filter_map(|n| found(s, n)).collect::<Vec<_>>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::survey::{LockRetry, LockTest, StorageError, StorageOnNode};
    use crate::validation::test_support::{outcome, text};

    fn healthy() -> Survey {
        let nodes = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| StorageOnNode {
                node: n.to_string(),
                write_us: Some(2_000),
                free_mb: Some(40_000),
                read_from: Some(if i == 0 { "b" } else { "a" }.into()),
                read_identical: Some(true),
                ..StorageOnNode::default()
            })
            .collect();
        let lock = LockTest {
            holder: "a".into(),
            refused: vec!["b".into(), "c".into()],
            after_release: Some(LockRetry { node: "b".into(), granted: true }),
            ..LockTest::default()
        };
        Survey { nodes: Vec::new(), storage: vec![StorageSurvey { path: "/shared".into(), nodes, lock: Some(lock) }] }
    }

    #[test]
    fn shared_storage_that_works_passes() {
        let checks = checks(&healthy());
        assert!(checks.iter().all(|c| c.outcome == Outcome::Pass), "{checks:#?}");
        assert!(text(&checks, "storage.locking").contains("a held it on /shared, b and c refused"));
    }

    #[test]
    fn no_shared_storage_is_skipped() {
        assert_eq!(outcome(&checks(&Survey::default()), "storage.visible"), Outcome::Skipped);
    }

    #[test]
    fn a_missing_or_read_only_path_is_named_with_its_node() {
        let mut s = healthy();
        s.storage[0].nodes[1].write_error =
            Some(StorageError { fault: StorageFault::Missing, message: "does not exist".into() });
        s.storage[0].nodes[2].write_error =
            Some(StorageError { fault: StorageFault::ReadOnly, message: "read-only file system".into() });
        let checks = checks(&s);
        assert_eq!(outcome(&checks, "storage.visible"), Outcome::Fail);
        assert!(text(&checks, "storage.visible").contains("/shared on b: does not exist"));
        assert_eq!(outcome(&checks, "storage.writable"), Outcome::Fail);
        assert!(text(&checks, "storage.writable").contains("/shared on c: read-only file system"));
    }

    #[test]
    fn local_directories_and_broken_locks_fail() {
        let mut s = healthy();
        s.storage[0].nodes[2].read_identical = Some(false);
        let lock = s.storage[0].lock.as_mut().expect("lock");
        lock.refused = vec!["b".into()];
        lock.granted_while_held = vec!["c".into()];
        let checks = checks(&s);
        assert_eq!(outcome(&checks, "storage.shared"), Outcome::Fail);
        assert!(text(&checks, "storage.shared").contains("c reads something else in /shared than what a wrote"));
        assert_eq!(outcome(&checks, "storage.locking"), Outcome::Fail);
        assert!(text(&checks, "storage.locking").contains("c got the lock on /shared that a held"));
    }
}
