//! Live and quick migration of VM roles, as the cluster database records them.
//!
//! A migration never changes who owns the role until the source's QEMU says it is over:
//! 1. the manager records a [`Migration`] (the role stays on its owner, the source);
//! 2. live: the target starts a QEMU that waits for the incoming state, paused (`-S`), and
//!    reports where it listens ([`MigrationEvent::Ready`]); quick: nothing happens on the target;
//! 3. the source migrates (live: to the target; quick: to a state file on shared storage) and
//!    reports [`MigrationEvent::Completed`] or [`MigrationEvent::Failed`];
//! 4. completed: the role gets a new generation owned by the target, with a [`Resume`] that
//!    tells it to resume the migrated guest instead of booting it; the source only quits its
//!    paused QEMU. Failed: the migration is dropped and the guest runs on at the source.
//!
//! Neither QEMU runs guest code between the source pausing it and the target's `cont`, which
//! the target sends only once it owns the role. The safety argument is in ARCHITECTURE.md.

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::command::{CommandResult, Rejection};
use crate::role::{Decision, RoleRecord, RoleSpec, RoleState};
use crate::state::ClusterState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MoveMode {
    /// Memory copied over TCP while the guest runs; it pauses only for the last pages.
    Live,
    /// The guest is paused, its state saved to shared storage and restored on the target.
    Quick,
    /// Shut down, then started on the target.
    Cold,
}

impl MoveMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MoveMode::Live => "live",
            MoveMode::Quick => "quick",
            MoveMode::Cold => "cold",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "live" => Ok(MoveMode::Live),
            "quick" => Ok(MoveMode::Quick),
            "cold" => Ok(MoveMode::Cold),
            other => Err(format!("invalid move mode '{other}': use live, quick or cold")),
        }
    }
}

/// A migration under way. The role still belongs to its owner, the source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    /// Unique per role: reports about an earlier attempt change nothing.
    pub id: u64,
    pub to: NodeId,
    pub mode: MoveMode,
    pub started_ms: u64,
    /// Live: where the target's QEMU waits for the guest, once it is ready.
    #[serde(default)]
    pub uri: Option<String>,
    /// Why, in words (asked by the admin, drain, failback).
    pub reason: String,
}

/// How the new owner takes over a migrated guest instead of booting it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resume {
    /// The migration it completes: the target's waiting QEMU carries the same id.
    pub id: u64,
    pub mode: MoveMode,
    pub from: NodeId,
    /// Quick: the saved state to restore.
    #[serde(default)]
    pub state_file: Option<String>,
    pub started_ms: u64,
    /// When the guest stopped running at the source (wall clock).
    pub paused_at_ms: u64,
    pub qemu_total_ms: u64,
    pub qemu_downtime_ms: u64,
}

/// The last migration of a role and how it went, for `halo role move` and `halo role show`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct MigrationResult {
    pub id: u64,
    pub mode: MoveMode,
    pub from: String,
    pub to: String,
    pub ok: bool,
    pub detail: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    /// From the request to the guest running on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    /// How long the guest did not run: from its pause at the source to its resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// QEMU's own figures for the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_total_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_downtime_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MigrationReport {
    pub role: String,
    pub node: NodeId,
    /// The role's generation when the migration began.
    pub generation: u64,
    pub id: u64,
    pub event: MigrationEvent,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum MigrationEvent {
    /// From the target: its QEMU waits for the guest at `uri`.
    Ready { uri: String },
    /// From the source: the guest is at the target (live) or in the state file (quick); the
    /// source's QEMU is paused for good.
    Completed {
        qemu_total_ms: u64,
        qemu_downtime_ms: u64,
        paused_at_ms: u64,
        #[serde(default)]
        state_file: Option<String>,
    },
    /// From either side: it did not happen; the guest runs on at the source.
    Failed { detail: String },
}

/// Live and quick moves need a role made of one VM: its whole state is the guest's.
pub fn migratable(spec: &RoleSpec) -> Result<(), String> {
    match spec.resources.as_slice() {
        [only] if only.kind == crate::resource_kind::ResourceKind::Vm => Ok(()),
        _ => Err("only a role made of one vm resource can be migrated live or quick; use --mode cold".into()),
    }
}

/// Where a live migration's target may listen: only `tcp:IP:PORT` on one of the target node's
/// own addresses (QEMU would also run an `exec:` URI, or connect wherever it is told).
pub fn check_target_uri(uri: &str, target: &crate::state::NodeRecord) -> Result<(), String> {
    let address = uri.strip_prefix("tcp:").ok_or_else(|| format!("migration URI '{uri}' is not tcp:"))?;
    let address: std::net::SocketAddr =
        address.parse().map_err(|_| format!("migration URI '{uri}' is not tcp:IP:PORT"))?;
    let own = std::iter::once(&target.api).chain(target.networks.iter().map(|n| &n.address));
    if own.filter_map(|a| a.parse::<std::net::SocketAddr>().ok()).any(|a| a.ip() == address.ip()) {
        Ok(())
    } else {
        Err(format!("migration URI '{uri}' is not an address of node '{}'", target.name))
    }
}

/// Where a quick migration's state may be: a plain file in the state directory of one of the
/// cluster's shared storage paths (the target reads it as root).
pub fn check_state_file(path: &str, shared_storage: &[String]) -> Result<(), String> {
    let file = std::path::Path::new(path);
    let plain = file.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.') && n.ends_with(".state"));
    let dir_ok = file
        .parent()
        .is_some_and(|dir| shared_storage.iter().any(|shared| dir == std::path::Path::new(shared).join(STATE_DIR)));
    if plain && dir_ok {
        Ok(())
    } else {
        Err(format!("state file '{path}' is not in a shared storage path's {STATE_DIR}/"))
    }
}

/// The directory of quick migrations' state files, inside a shared storage path.
pub const STATE_DIR: &str = ".halo-state";

/// Applies a [`MigrationReport`]: the target is ready, or the source's QEMU says it is over.
pub(crate) fn apply_report(state: &mut ClusterState, r: &MigrationReport) -> Result<CommandResult, Rejection> {
    let name = |id: NodeId| state.nodes.get(&id).map_or_else(|| id.to_string(), |n| n.name.clone());
    let stale = || Rejection::StaleReport(r.role.clone());
    let record = state.roles.get(&r.role).ok_or_else(|| Rejection::UnknownRole(r.role.clone()))?;
    let m = record.migration.clone().filter(|m| m.id == r.id && record.generation == r.generation).ok_or_else(stale)?;
    let source = record.owner.ok_or_else(stale)?;
    let (from, to) = (name(source), name(m.to));
    let record = state.roles.get_mut(&r.role).ok_or_else(stale)?;
    let mode = m.mode.as_str();
    match &r.event {
        MigrationEvent::Ready { uri } if r.node == m.to && m.uri.is_none() => {
            let target = state.nodes.get(&m.to).ok_or_else(stale)?;
            check_target_uri(uri, target).map_err(|reason| Rejection::InvalidRole { role: r.role.clone(), reason })?;
            let record = state.roles.get_mut(&r.role).ok_or_else(stale)?;
            record.migration = Some(Migration { uri: Some(uri.clone()), ..m });
        }
        MigrationEvent::Completed { qemu_total_ms, qemu_downtime_ms, paused_at_ms, state_file } if r.node == source => {
            if let Some(file) = state_file {
                check_state_file(file, &state.settings.shared_storage)
                    .map_err(|reason| Rejection::InvalidRole { role: r.role.clone(), reason })?;
            }
            let record = state.roles.get_mut(&r.role).ok_or_else(stale)?;
            // The guest is paused at the source for good: the target owns it from now on and
            // resumes it; the source only has to quit its QEMU.
            record.generation += 1;
            record.owner = Some(m.to);
            record.releasing = Some(source);
            record.waits_for.clear();
            record.migration = None;
            record.resume = Some(Resume {
                id: m.id,
                mode: m.mode,
                from: source,
                state_file: state_file.clone(),
                started_ms: m.started_ms,
                paused_at_ms: *paused_at_ms,
                qemu_total_ms: *qemu_total_ms,
                qemu_downtime_ms: *qemu_downtime_ms,
            });
            record.set_state(
                RoleState::Pending,
                format!("resuming on {to} after {mode} migration from {from}"),
                r.now_ms,
            );
            record.record_decision(Decision {
                at_ms: r.now_ms,
                generation: record.generation,
                kind: crate::role::DecisionKind::Migrated,
                summary: format!("{mode} migration from {from} to {to}: the guest moved; resuming it there"),
                reasons: vec![format!(
                    "QEMU: {qemu_total_ms} ms in all, guest paused {qemu_downtime_ms} ms at the end"
                )],
            });
        }
        MigrationEvent::Failed { detail } if r.node == source || r.node == m.to => {
            record.migration = None;
            record.last_migration = Some(MigrationResult {
                id: m.id,
                mode: m.mode,
                from: from.clone(),
                to: to.clone(),
                ok: false,
                detail: detail.clone(),
                started_ms: m.started_ms,
                finished_ms: r.now_ms,
                total_ms: None,
                downtime_ms: None,
                qemu_total_ms: None,
                qemu_downtime_ms: None,
            });
            let detail_now = format!("running on {from}");
            record.set_state(record.state, detail_now, r.now_ms);
            record.record_decision(Decision {
                at_ms: r.now_ms,
                generation: record.generation,
                kind: crate::role::DecisionKind::MigrationFailed,
                summary: format!("{mode} migration to {to} failed; it keeps running on {from}"),
                reasons: vec![detail.clone()],
            });
        }
        _ => return Err(stale()),
    }
    Ok(CommandResult::Done)
}

/// The new owner runs the migrated guest: the migration is over, and this is how long it took.
pub(crate) fn resumed(record: &mut RoleRecord, from: String, to: String, now_ms: u64) {
    let Some(resume) = &record.resume else { return };
    if record.last_migration.as_ref().is_some_and(|m| m.id == resume.id) {
        return;
    }
    record.last_migration = Some(MigrationResult {
        id: resume.id,
        mode: resume.mode,
        from,
        to,
        ok: true,
        detail: String::new(),
        started_ms: resume.started_ms,
        finished_ms: now_ms,
        total_ms: Some(now_ms.saturating_sub(resume.started_ms)),
        downtime_ms: Some(now_ms.saturating_sub(resume.paused_at_ms)),
        qemu_total_ms: Some(resume.qemu_total_ms),
        qemu_downtime_ms: Some(resume.qemu_downtime_ms),
    });
    settle(record);
}

/// `resume` stays until the guest runs at the new owner (its times are recorded then) and
/// the source has confirmed it quit: until then it is what lets the new owner run the guest
/// beside the source's paused copy (`execution::runs`).
pub(crate) fn settle(record: &mut RoleRecord) {
    let recorded = |id| record.last_migration.as_ref().is_some_and(|m| m.id == id);
    if record.releasing.is_none() && record.resume.as_ref().is_some_and(|r| recorded(r.id)) {
        record.resume = None;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::command::{Command, RoleReport, RoleReportOutcome};
    use crate::placement::tests_support::{cluster, role};
    use crate::policy::{Inputs, Liveness, decide};

    #[test]
    fn a_target_may_listen_only_on_its_own_addresses_and_state_files_stay_in_shared_storage() {
        let s = cluster();
        let target = &s.nodes[&2];
        let own = target.networks[0].address.parse::<std::net::SocketAddr>().expect("address").ip();
        assert_eq!(check_target_uri(&format!("tcp:{own}:4444"), target), Ok(()));
        assert!(check_target_uri("exec:cat /etc/shadow", target).is_err());
        assert!(check_target_uri("tcp:203.0.113.9:4444", target).is_err());
        assert!(check_target_uri("unix:/tmp/x", target).is_err());
        let shared = ["/shared".to_string()];
        assert_eq!(check_state_file("/shared/.halo-state/web.3.state", &shared), Ok(()));
        assert!(check_state_file("/etc/shadow", &shared).is_err());
        assert!(check_state_file("/shared/.halo-state/../web.3.state", &shared).is_err());
        assert!(check_state_file("/other/.halo-state/web.3.state", &shared).is_err());
    }

    fn vm_role(name: &str) -> RoleRecord {
        let mut r = role(name);
        r.spec.resources[0].kind = crate::resource_kind::ResourceKind::Vm;
        r.spec.resources[0].params = [("kernel".to_string(), "/shared/vmlinuz".to_string())].into();
        r
    }

    /// A VM role running on node 1.
    fn running(names: &[&str]) -> ClusterState {
        let mut s = cluster();
        s.settings.shared_storage = vec!["/shared".into()];
        for name in names {
            let mut r = vm_role(name);
            r.spec.preferred = vec!["a".into()];
            s.roles.insert(name.to_string(), r);
        }
        run(&mut s, &BTreeMap::new(), 1);
        for name in names {
            report(&mut s, name, 1, RoleReportOutcome::Online, 2);
        }
        s
    }

    fn run(s: &mut ClusterState, live: &BTreeMap<NodeId, Liveness>, now_ms: u64) {
        for c in decide(&Inputs { state: s, liveness: live, now_ms }) {
            s.apply(&c);
        }
    }

    fn report(s: &mut ClusterState, role: &str, node: NodeId, outcome: RoleReportOutcome, now_ms: u64) {
        let generation = s.roles[role].generation;
        let r = RoleReport { role: role.into(), node, generation, outcome, detail: String::new(), now_ms };
        assert_eq!(s.apply(&Command::ReportRole(r)), CommandResult::Done);
    }

    fn migration_report(s: &mut ClusterState, role: &str, node: NodeId, event: MigrationEvent) -> CommandResult {
        let r = &s.roles[role];
        let id = r.migration.as_ref().map_or(0, |m| m.id);
        let report = MigrationReport { role: role.into(), node, generation: r.generation, id, event, now_ms: 1_000 };
        s.apply(&Command::ReportMigration(report))
    }

    fn completed() -> MigrationEvent {
        MigrationEvent::Completed { qemu_total_ms: 600, qemu_downtime_ms: 20, paused_at_ms: 980, state_file: None }
    }

    #[test]
    fn a_live_migration_keeps_the_owner_until_the_source_says_the_guest_moved() {
        let mut s = running(&["vm1"]);
        let live = BTreeMap::new();
        let mv = Command::MoveRole { role: "vm1".into(), to: Some(2), mode: Some(MoveMode::Live) };
        assert_eq!(s.apply(&mv), CommandResult::Done);
        run(&mut s, &live, 500);
        let r = &s.roles["vm1"];
        let m = r.migration.clone().expect("migration begun");
        assert_eq!((r.owner, r.generation, r.state, m.to, m.mode), (Some(1), 1, RoleState::Online, 2, MoveMode::Live));
        assert!(r.detail.contains("live migration to b under way"), "{}", r.detail);
        assert!(decide(&Inputs { state: &s, liveness: &live, now_ms: 600 }).is_empty(), "nothing more while it runs");

        // Only the target can say it is ready; only the source that it is over.
        let ready = MigrationEvent::Ready { uri: "tcp:127.0.0.2:4444".into() };
        assert!(matches!(migration_report(&mut s, "vm1", 3, ready.clone()), CommandResult::Rejected(_)));
        assert_eq!(migration_report(&mut s, "vm1", 2, ready), CommandResult::Done);
        assert!(matches!(migration_report(&mut s, "vm1", 2, completed()), CommandResult::Rejected(_)));
        assert_eq!(migration_report(&mut s, "vm1", 1, completed()), CommandResult::Done);
        let r = &s.roles["vm1"];
        assert_eq!((r.owner, r.releasing, r.generation, r.migration.clone()), (Some(2), Some(1), 2, None));
        assert_eq!(r.resume.as_ref().map(|x| (x.id, x.mode, x.from)), Some((m.id, MoveMode::Live, 1)));

        report(&mut s, "vm1", 2, RoleReportOutcome::Online, 1_030);
        let last = s.roles["vm1"].last_migration.clone().expect("recorded");
        assert!(last.ok);
        assert!(s.roles["vm1"].resume.is_some(), "kept until the source confirmed it quit");
        assert_eq!((last.total_ms, last.downtime_ms, last.qemu_total_ms), (Some(530), Some(50), Some(600)));
        assert_eq!((last.from.as_str(), last.to.as_str()), ("a", "b"));
        assert!(crate::execution::runs(&s.roles["vm1"], 2), "the target runs it beside the source's paused copy");
        report(&mut s, "vm1", 1, RoleReportOutcome::Stopped, 1_040);
        assert_eq!((s.roles["vm1"].releasing, s.roles["vm1"].resume.clone()), (None, None));
        assert!(crate::execution::runs(&s.roles["vm1"], 2));
    }

    #[test]
    fn a_failed_migration_leaves_the_guest_where_it_was_and_late_reports_change_nothing() {
        let mut s = running(&["vm1"]);
        s.apply(&Command::MoveRole { role: "vm1".into(), to: Some(2), mode: Some(MoveMode::Live) });
        run(&mut s, &BTreeMap::new(), 500);
        let old = s.roles["vm1"].migration.clone().unwrap();
        let failed = MigrationEvent::Failed { detail: "connection refused".into() };
        assert_eq!(migration_report(&mut s, "vm1", 1, failed), CommandResult::Done);
        let r = s.roles["vm1"].clone();
        assert_eq!((r.owner, r.generation, r.migration.clone(), r.state), (Some(1), 1, None, RoleState::Online));
        let last = r.last_migration.clone().unwrap();
        assert!(!last.ok && last.detail == "connection refused");
        assert!(r.decisions.last().unwrap().summary.contains("failed; it keeps running on a"));

        // A late "completed" about that attempt must not hand the role over.
        let late =
            MigrationReport { role: "vm1".into(), node: 1, generation: 1, id: old.id, event: completed(), now_ms: 2 };
        assert!(matches!(s.apply(&Command::ReportMigration(late.clone())), CommandResult::Rejected(_)));
        // Nor after a new attempt began: ids differ.
        s.apply(&Command::MoveRole { role: "vm1".into(), to: Some(3), mode: Some(MoveMode::Live) });
        run(&mut s, &BTreeMap::new(), 600);
        assert_eq!(s.roles["vm1"].migration.as_ref().map(|m| (m.id, m.to)), Some((old.id + 1, 3)));
        assert!(matches!(s.apply(&Command::ReportMigration(late)), CommandResult::Rejected(_)));
        assert_eq!(s.roles["vm1"].owner, Some(1));
    }

    #[test]
    fn a_lost_side_ends_the_migration_and_a_lost_source_fails_over_as_usual() {
        let mut s = running(&["vm1", "vm2"]);
        for (name, to) in [("vm1", 2), ("vm2", 3)] {
            s.apply(&Command::MoveRole { role: name.into(), to: Some(to), mode: Some(MoveMode::Live) });
        }
        run(&mut s, &BTreeMap::new(), 500);
        let mut live = BTreeMap::new();
        live.insert(3, Liveness::Suspect);
        run(&mut s, &live, 600);
        let vm2 = &s.roles["vm2"];
        assert_eq!((vm2.migration.clone(), vm2.owner, vm2.generation), (None, Some(1), 1));
        assert!(vm2.last_migration.as_ref().unwrap().detail.contains("target c is not responding"));
        assert!(s.roles["vm1"].migration.is_some(), "the other one goes on");

        live.insert(1, Liveness::Lost("lease ran out".into()));
        s.nodes.get_mut(&1).unwrap().state = crate::state::NodeState::Down;
        run(&mut s, &live, 700);
        let vm1 = &s.roles["vm1"];
        assert_eq!(vm1.migration, None);
        assert_eq!((vm1.owner, vm1.generation), (Some(2), 2), "failed over: booted afresh, not resumed");
        assert!(vm1.resume.is_none());
    }

    #[test]
    fn a_drain_migrates_at_most_the_allowed_number_at_once_and_steps_down_after_failures() {
        let mut s = running(&["vm1", "vm2", "vm3"]);
        let live = BTreeMap::new();
        s.apply(&Command::PauseNode { node: 1, drain: true, now_ms: 400 });
        run(&mut s, &live, 500);
        let migrating: Vec<&str> =
            s.roles.values().filter(|r| r.migration.is_some()).map(|r| r.spec.name.as_str()).collect();
        assert_eq!(migrating.len(), 2, "parallel_migrations is 2");
        let waiting = s.roles.values().find(|r| r.migration.is_none()).unwrap();
        assert!(waiting.detail.contains("waits for a slot"), "{}", waiting.detail);
        assert_eq!(waiting.owner, Some(1));

        // One fails: it tries again at once as a quick migration, and the third still waits.
        let failed = MigrationEvent::Failed { detail: "port blocked".into() };
        assert_eq!(migration_report(&mut s, "vm1", 1, failed.clone()), CommandResult::Done);
        run(&mut s, &live, 600);
        assert_eq!(s.roles["vm1"].migration.as_ref().map(|m| m.mode), Some(MoveMode::Quick));
        assert!(s.roles["vm3"].migration.is_none(), "no slot yet");
        assert_eq!(migration_report(&mut s, "vm2", 1, completed()), CommandResult::Done);
        run(&mut s, &live, 700);
        assert_eq!(s.roles["vm3"].migration.as_ref().map(|m| m.mode), Some(MoveMode::Live));
        // The quick one fails too: a cold move, stop then start.
        assert_eq!(migration_report(&mut s, "vm1", 1, failed), CommandResult::Done);
        run(&mut s, &live, 800);
        let vm1 = &s.roles["vm1"];
        assert_eq!((vm1.migration.clone(), vm1.releasing), (None, Some(1)));
        assert_ne!(vm1.owner, Some(1));
    }

    #[test]
    fn moves_that_cannot_be_migrations_are_refused_with_the_reason() {
        let mut s = running(&["vm1"]);
        s.roles.insert("web".into(), role("web"));
        run(&mut s, &BTreeMap::new(), 3);
        let before = s.clone();
        let refused = |s: &mut ClusterState, role: &str, mode| match s.apply(&Command::MoveRole {
            role: role.into(),
            to: Some(if s.roles[role].owner == Some(2) { 3 } else { 2 }),
            mode: Some(mode),
        }) {
            CommandResult::Rejected(r) => r.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(refused(&mut s, "web", MoveMode::Live).contains("only a role made of one vm resource"));
        s.settings.shared_storage.clear();
        assert!(refused(&mut s, "vm1", MoveMode::Quick).contains("none is configured"));
        s.settings.shared_storage = before.settings.shared_storage.clone();
        assert_eq!(s, before);
        s.apply(&Command::MoveRole { role: "vm1".into(), to: Some(2), mode: Some(MoveMode::Live) });
        run(&mut s, &BTreeMap::new(), 4);
        assert!(refused(&mut s, "vm1", MoveMode::Cold).contains("being migrated to b"));
    }

    #[test]
    fn vm_roles_are_checked_against_shared_storage_and_node_capacity() {
        let mut s = running(&[]);
        for n in s.nodes.values_mut() {
            n.capacity = Some(crate::capacity::Capacity { cpu_milli: 2000, memory_mb: 1024 });
        }
        let mut spec = vm_role("vm9").spec;
        spec.resources[0].params.insert("disks".into(), "/elsewhere/disk.img".into());
        let err = spec.validate(&s).unwrap_err().to_string();
        assert!(err.contains("/elsewhere/disk.img is not on the cluster's shared storage"), "{err}");
        spec.resources[0].params.insert("disks".into(), "/shared/disk.img".into());
        spec.resources[0].params.insert("memory".into(), "4G".into());
        let err = spec.validate(&s).unwrap_err().to_string();
        assert!(err.contains("more than any node offers"), "{err}");
        spec.resources[0].params.insert("memory".into(), "512M".into());
        assert!(spec.validate(&s).is_ok());
        assert_eq!(spec.needs().memory_mb, 512 + crate::vm::OVERHEAD_MB);
    }
}
