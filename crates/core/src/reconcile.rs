//! The executor's reconciliation, without I/O: from the committed state, this node's lease and
//! what it holds of each role, which local instances to stop, which roles to start, and what
//! to tell the leader. The agent's executor carries the plan out on real resources (processes,
//! OCF agents, QEMU), the simulator on its model; both compute it here. (A VM migration's own
//! steps, the waiting QEMU of a target and the paused copy of a source, are the executor's
//! `vm` part and the simulator's `migration` model; what they hold is reported here too.)

use std::collections::BTreeMap;

use crate::NodeId;
use crate::command::RoleReportOutcome;
use crate::execution::{may_start, receives, resumes_from, runs};
use crate::role::{RoleRecord, RoleState};
use crate::state::ClusterState;

/// What this node holds of one role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// The generation it was started under.
    pub generation: u64,
    /// Every resource is up and nothing but a monitor is in flight.
    pub running: bool,
    /// Being stopped already.
    pub stopping: bool,
    /// A live migration's target (this migration): a QEMU waiting for the guest, no role.
    pub incoming: Option<u64>,
    /// A stop failed and what it stopped still runs: only a fence ends it.
    pub stop_failed: Option<String>,
}

pub struct Inputs<'a> {
    pub state: &'a ClusterState,
    pub me: NodeId,
    /// The fence guard lets workloads run now.
    pub lease_held: bool,
    /// The node may start roles: it holds a lease and has applied what the leader had
    /// committed when it granted it (`heartbeat::Endpoint::may_start`), and is not stopping.
    pub may_start: bool,
    pub held: &'a BTreeMap<String, Held>,
    /// Roles that failed here beyond their restart policy: the generation, and why.
    pub failed: &'a BTreeMap<String, (u64, String)>,
}

/// A report to send the leader until the committed state reflects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub role: String,
    pub generation: u64,
    pub outcome: RoleReportOutcome,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Local instances to stop (not already stopping).
    pub stop: Vec<String>,
    /// Roles to start here, in the state's order.
    pub start: Vec<String>,
    pub reports: Vec<Report>,
}

/// Should this node run `role` under its current generation, `ok` being the lease half?
fn wanted(i: &Inputs, role: &RoleRecord, ok: bool) -> bool {
    runs(role, i.me) && ok && i.failed.get(&role.spec.name).is_none_or(|(g, _)| *g != role.generation)
}

pub fn reconcile(i: &Inputs) -> Plan {
    let mut plan = Plan::default();
    for (name, held) in i.held {
        let keep = i.state.roles.get(name).is_some_and(|r| match held.incoming {
            // A migration's target keeps its waiting QEMU while the migration lasts, and
            // until the role it is handed over is resumed from it.
            Some(id) => i.lease_held && (receives(r, i.me, id) || resumes_from(r, i.me, id)),
            None => wanted(i, r, i.lease_held) && held.generation == r.generation,
        });
        if !keep && !held.stopping {
            plan.stop.push(name.clone());
        }
    }
    for role in i.state.roles.values() {
        if wanted(i, role, i.may_start) && !i.held.contains_key(&role.spec.name) && may_start(i.state, role, i.me) {
            debug_assert!(role.owner == Some(i.me), "a node starts only a role it owns");
            plan.start.push(role.spec.name.clone());
        }
    }
    plan.reports = reports(i);
    plan
}

/// What the committed state does not reflect yet (the plan's `reports` alone, for a driver
/// that asks again after carrying out the rest).
pub fn reports(i: &Inputs) -> Vec<Report> {
    let me = i.me;
    let fencing = i.state.nodes.get(&me).is_some_and(|n| n.fence_request.is_some());
    let mut out = Vec::new();
    for role in i.state.roles.values() {
        let name = &role.spec.name;
        let held = i.held.get(name);
        let report =
            |outcome, detail: String| Report { role: name.clone(), generation: role.generation, outcome, detail };
        if let Some(detail) = held.and_then(|h| h.stop_failed.clone()) {
            // Only a fence makes it safe to run the role anywhere else.
            if !fencing && (role.owner == Some(me) || role.releasing == Some(me)) {
                out.push(report(RoleReportOutcome::StopFailed, detail));
            }
            continue;
        }
        let current = role.owner == Some(me) && held.is_none_or(|h| h.incoming.is_none());
        if current
            && role.state != RoleState::Online
            && held.is_some_and(|h| h.running && h.generation == role.generation)
        {
            out.push(report(RoleReportOutcome::Online, String::new()));
        } else if role.releasing == Some(me) && held.is_none() {
            out.push(report(RoleReportOutcome::Stopped, String::new()));
        } else if current
            && held.is_none()
            && !role.failed_on.contains(&me)
            && let Some((generation, detail)) = i.failed.get(name)
            && *generation == role.generation
        {
            out.push(report(RoleReportOutcome::Failed, detail.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};

    fn inputs<'a>(
        state: &'a ClusterState,
        held: &'a BTreeMap<String, Held>,
        failed: &'a BTreeMap<String, (u64, String)>,
    ) -> Inputs<'a> {
        Inputs { state, me: 1, lease_held: true, may_start: true, held, failed }
    }

    #[test]
    fn the_owner_starts_reports_and_stops_what_is_no_longer_its() {
        let mut s = cluster();
        let mut web = role("web");
        web.owner = Some(1);
        web.generation = 3;
        s.roles.insert("web".into(), web);
        let (mut held, failed) = (BTreeMap::new(), BTreeMap::new());
        let plan = reconcile(&inputs(&s, &held, &failed));
        assert_eq!((plan.start.clone(), plan.stop.clone()), (vec!["web".to_string()], vec![]));
        // Without a lease (or its commit index applied), nothing starts.
        let mut i = inputs(&s, &held, &failed);
        i.may_start = false;
        assert!(reconcile(&i).start.is_empty());
        // Running: reported online until the state says so.
        held.insert("web".into(), Held { generation: 3, running: true, ..Held::default() });
        let plan = reconcile(&inputs(&s, &held, &failed));
        assert_eq!(plan.reports.iter().map(|r| r.outcome).collect::<Vec<_>>(), vec![RoleReportOutcome::Online]);
        // Moved elsewhere, or a new generation: stopped here, and reported once gone.
        s.roles.get_mut("web").expect("web").owner = Some(2);
        s.roles.get_mut("web").expect("web").releasing = Some(1);
        assert_eq!(reconcile(&inputs(&s, &held, &failed)).stop, vec!["web".to_string()]);
        held.clear();
        let plan = reconcile(&inputs(&s, &held, &failed));
        assert_eq!(plan.reports.iter().map(|r| r.outcome).collect::<Vec<_>>(), vec![RoleReportOutcome::Stopped]);
        // The lease gone: everything stops.
        s.roles.get_mut("web").expect("web").owner = Some(1);
        s.roles.get_mut("web").expect("web").releasing = None;
        held.insert("web".into(), Held { generation: 3, running: true, ..Held::default() });
        let mut i = inputs(&s, &held, &failed);
        i.lease_held = false;
        assert_eq!(reconcile(&i).stop, vec!["web".to_string()]);
    }

    #[test]
    fn a_failed_role_is_reported_and_a_stuck_one_asks_for_a_fence() {
        let mut s = cluster();
        let mut web = role("web");
        web.owner = Some(1);
        web.generation = 2;
        s.roles.insert("web".into(), web);
        let held = BTreeMap::new();
        let failed = BTreeMap::from([("web".to_string(), (2, "exited 3 times".to_string()))]);
        let plan = reconcile(&inputs(&s, &held, &failed));
        assert!(plan.start.is_empty(), "not again under the generation it failed in");
        assert_eq!(plan.reports[0].outcome, RoleReportOutcome::Failed);
        assert_eq!(plan.reports[0].detail, "exited 3 times");
        let held = BTreeMap::from([(
            "web".to_string(),
            Held { generation: 2, stopping: true, stop_failed: Some("survived SIGKILL".into()), ..Held::default() },
        )]);
        let plan = reconcile(&inputs(&s, &held, &BTreeMap::new()));
        assert_eq!(plan.reports[0].outcome, RoleReportOutcome::StopFailed);
        assert!(plan.stop.is_empty(), "already stopping");
        // Once its node is to be fenced, it says nothing more.
        s.nodes.get_mut(&1).expect("n1").fence_request = Some("x".into());
        assert!(reconcile(&inputs(&s, &held, &BTreeMap::new())).reports.is_empty());
    }
}
