//! The failover policy: what the leader's manager decides about each role, given the cluster
//! state and what it knows of each node's liveness. Pure; the manager commits what this returns
//! and nodes act only on committed decisions.

use std::collections::BTreeMap;

use crate::NodeId;
use crate::command::{Command, RoleDecision};
use crate::migration::{self, Migration, MigrationResult, MoveMode};
use crate::placement::{self, Index, Placement};
use crate::role::{Decision, DecisionKind, Desired, Priority, RoleRecord, RoleState};
use crate::state::ClusterState;

/// What the leader knows of a node that owns or releases roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Silent, but its lease may still be running: it may still run its roles.
    Suspect,
    /// Provably runs nothing any more (its lease ran out, or a fence agent confirmed power-off).
    Lost(String),
}

pub struct Inputs<'a> {
    pub state: &'a ClusterState,
    pub liveness: &'a BTreeMap<NodeId, Liveness>,
    pub now_ms: u64,
}

/// One role's view while deciding: the inputs with earlier decisions of this tick applied, and
/// what counts against each node (kept up to date with those decisions).
struct Now<'a> {
    inputs: Inputs<'a>,
    index: &'a Index,
}

impl<'a> std::ops::Deref for Now<'a> {
    type Target = Inputs<'a>;
    fn deref(&self) -> &Inputs<'a> {
        &self.inputs
    }
}

impl Inputs<'_> {
    fn lost(&self, node: NodeId) -> Option<String> {
        if !self.state.nodes.contains_key(&node) {
            return Some("was removed from the cluster".into());
        }
        match self.liveness.get(&node) {
            Some(Liveness::Lost(why)) => Some(why.clone()),
            _ => None,
        }
    }

    fn name(&self, node: NodeId) -> String {
        self.state.nodes.get(&node).map_or_else(|| format!("node {node}"), |n| n.name.clone())
    }
}

/// One decision per role that needs one, highest priority first (they place first). A role
/// that displaces others brings their decisions too.
pub fn decide(inputs: &Inputs) -> Vec<Command> {
    let mut names: Vec<(Priority, &String)> =
        inputs.state.roles.values().map(|r| (r.spec.priority, &r.spec.name)).collect();
    names.sort();
    // Later roles must see earlier decisions (anti-affinity, load, displacement); the state is
    // copied only once there is a decision, so an idle tick copies nothing.
    let mut decided: Option<ClusterState> = None;
    let mut index = Index::of(inputs.state);
    let mut out = Vec::new();
    for (_, name) in names {
        let state = decided.as_ref().unwrap_or(inputs.state);
        let current = Now { inputs: Inputs { state, liveness: inputs.liveness, now_ms: inputs.now_ms }, index: &index };
        let Some(role) = state.roles.get(name) else { continue };
        let mut decisions = Vec::new();
        decide_role(&current, role, &mut decisions);
        for decision in decisions {
            let role = decision.role.clone();
            let command = Command::DecideRole(decision);
            let state = decided.get_or_insert_with(|| inputs.state.clone());
            if let Some(before) = state.roles.get(&role) {
                index.remove(before);
            }
            state.apply(&command);
            if let Some(after) = state.roles.get(&role) {
                index.add(after);
            }
            out.push(command);
        }
    }
    out
}

fn decide_role(inputs: &Now, role: &RoleRecord, out: &mut Vec<RoleDecision>) {
    let mut next = RoleDecision::from_record(role, inputs.now_ms);
    let name = |n| inputs.name(n);

    // A releasing node that provably runs nothing any more has nothing left to confirm.
    if let Some(old) = role.releasing
        && let Some(why) = inputs.lost(old)
    {
        next.releasing = None;
        next.note = Some(format!("{} {why}; it can no longer run {}", name(old), role.spec.name));
        next.note_kind = DecisionKind::Released;
    }

    // A hand-over not yet settled: wait until the source confirmed it quit (or is lost),
    // unless the owner itself is lost (its guard killed the guest; the source still waits).
    if role.handing_over() && next.releasing.is_some() && role.owner.is_some_and(|o| inputs.lost(o).is_none()) {
        if next.changes(role) {
            out.push(next);
        }
        return;
    }

    // A migration under way ends as the source's QEMU says, unless a side is gone or the role
    // is to stop; nothing else is decided about the role meanwhile.
    let mut abandoned = false;
    if let Some(m) = &role.migration {
        match abandon_reason(inputs, role, m) {
            None => {
                if next.changes(role) {
                    out.push(next);
                }
                return;
            }
            Some(why) => {
                let summary = format!("{} migration to {} abandoned: {why}", m.mode.as_str(), name(m.to));
                next.migration = None;
                next.finished_migration = Some(Box::new(failed_migration(inputs, role, m, summary.clone())));
                next.note = Some(summary);
                next.note_kind = DecisionKind::MigrationFailed;
                abandoned = true;
            }
        }
    }

    match role.spec.desired {
        Desired::Stopped => {
            if let Some(owner) = role.owner {
                next.bump();
                next.owner = None;
                // An owner still waiting for an earlier one to stop never started: the earlier
                // one is who must confirm.
                next.releasing = next.releasing.or(if inputs.lost(owner).is_some() { None } else { Some(owner) });
                next.set(RoleState::Pending, format!("stopping on {}", name(owner)));
            } else if next.releasing.is_none() && role.state != RoleState::Offline {
                next.set(RoleState::Offline, "stopped as asked");
            }
        }
        Desired::Started => match role.owner {
            None if role.held => {
                if next.releasing.is_none() && role.state != RoleState::Offline {
                    next.set(RoleState::Offline, held_detail(role));
                }
            }
            None => place_role(inputs, role, &mut next, &[], None, out),
            Some(owner) => {
                if let Some(why) = inputs.lost(owner) {
                    fail_over(inputs, role, &mut next, owner, format!("{} {why}", name(owner)), out);
                } else if role.failed_on.contains(&owner) {
                    // The owner stopped it after exhausting its restart policy.
                    let why = format!("{} could not keep it running", name(owner));
                    fail_over(inputs, role, &mut next, owner, why, out);
                } else if inputs.liveness.get(&owner) == Some(&Liveness::Suspect) {
                    let fencing = inputs.state.nodes.get(&owner).and_then(|n| n.fence_request.as_ref());
                    let detail = match fencing {
                        Some(why) => {
                            format!("{} is being fenced ({why}); recovery follows once it runs nothing", name(owner))
                        }
                        None => format!(
                            "{} is not responding; waiting for its lease to run out before recovery",
                            name(owner)
                        ),
                    };
                    next.set(RoleState::Pending, detail);
                } else if !abandoned && let Some((to, why, asked)) = move_wanted(inputs, role, owner) {
                    match move_mode(inputs, role, asked) {
                        MoveMode::Cold => planned_move(inputs, role, &mut next, owner, to, why),
                        mode => begin_migration(inputs, role, &mut next, owner, to, mode, why),
                    }
                }
            }
        },
    }
    if next.changes(role) {
        out.push(next);
    }
}

fn held_detail(role: &RoleRecord) -> String {
    format!("manual priority: waits for the admin to start it (`halo role start {}`)", role.spec.name)
}

/// Whether a role running on a healthy `owner` should move, where to, why, and how if the
/// admin said.
fn move_wanted(inputs: &Now, role: &RoleRecord, owner: NodeId) -> Option<(Option<NodeId>, String, Option<MoveMode>)> {
    if let Some(request) = &role.move_request {
        return Some((request.to, request.reason.clone(), request.mode));
    }
    let node = inputs.state.nodes.get(&owner)?;
    if node.drain {
        return Some((None, format!("{} is being drained", node.name), None));
    }
    if !role.spec.possible.is_empty() && !role.spec.possible.contains(&node.name) {
        return Some((None, format!("{} is no longer a possible owner", node.name), None));
    }
    let target = crate::failback::automatic(inputs.state, inputs.index, role, &node.name, inputs.now_ms)?;
    Some((Some(target), format!("failback to preferred owner {}", inputs.name(target)), None))
}

/// A target for a planned move off `owner`: the one asked for if it fits, else placement's pick.
fn move_target(inputs: &Now, role: &RoleRecord, owner: NodeId, to: Option<NodeId>) -> Placement {
    let exclude = [(owner, "is the node it is moving off".to_string())];
    match to {
        Some(target) => {
            let fit =
                inputs.state.nodes.get(&target).and_then(|n| placement::unfit_in(inputs.index, role, n, &exclude));
            match fit {
                None => Placement { node: Some(target), reasons: vec![format!("{}: asked for", inputs.name(target))] },
                Some(reason) => Placement { node: None, reasons: vec![format!("{}: {reason}", inputs.name(target))] },
            }
        }
        None => placement::place_in(inputs.state, inputs.index, role, &exclude),
    }
}

/// A planned move off a healthy `owner`: the new owner starts only once the old one confirmed
/// it stopped (`releasing`), so the two never overlap.
fn planned_move(
    inputs: &Now,
    role: &RoleRecord,
    next: &mut RoleDecision,
    owner: NodeId,
    to: Option<NodeId>,
    why: String,
) {
    next.clear_move = role.move_request.is_some();
    let Placement { node, reasons } = move_target(inputs, role, owner, to);
    match node {
        Some(target) => {
            next.bump();
            next.owner = Some(target);
            // Never forget a node that has yet to confirm it stopped the role: while one is
            // pending, the owner has not started it, so that node is still the one to wait for.
            next.releasing = Some(next.releasing.unwrap_or(owner));
            let summary = format!("moving from {} to {}: {why}", inputs.name(owner), inputs.name(target));
            next.decision = Some(Decision {
                at_ms: inputs.now_ms,
                generation: next.generation,
                kind: DecisionKind::Moved,
                summary,
                reasons,
            });
            next.set(RoleState::Pending, format!("moving from {} to {}", inputs.name(owner), inputs.name(target)));
        }
        None => stays(inputs, role, next, owner, &why, reasons),
    }
}

/// No other node can take the role: it stays, and says why (once).
fn stays(inputs: &Now, role: &RoleRecord, next: &mut RoleDecision, owner: NodeId, why: &str, reasons: Vec<String>) {
    let detail = format!("running on {}; cannot move ({why}): no other node can run it", inputs.name(owner));
    if role.detail != detail {
        next.decision = Some(Decision {
            at_ms: inputs.now_ms,
            generation: next.generation,
            kind: DecisionKind::Stays,
            summary: format!("stays on {}: no other node can run it", inputs.name(owner)),
            reasons,
        });
    }
    next.detail = detail;
}

/// How a move happens: as the admin asked, else live for a running VM role, stepping down to
/// quick and then cold after a recent failed attempt; cold for everything else.
fn move_mode(inputs: &Now, role: &RoleRecord, asked: Option<MoveMode>) -> MoveMode {
    let running_vm =
        migration::migratable(&role.spec).is_ok() && role.state == RoleState::Online && role.releasing.is_none();
    if !running_vm {
        return MoveMode::Cold;
    }
    if let Some(mode) = asked {
        return mode;
    }
    let has_shared = !inputs.state.settings.shared_storage.is_empty();
    match &role.last_migration {
        Some(last) if !last.ok && inputs.now_ms.saturating_sub(last.finished_ms) < FALLBACK_WINDOW_MS => {
            match last.mode {
                MoveMode::Live if has_shared => MoveMode::Quick,
                _ => MoveMode::Cold,
            }
        }
        _ => MoveMode::Live,
    }
}

/// A failed migration makes the next automatic move of the role (drain, failback) use the
/// next safer mode for this long.
const FALLBACK_WINDOW_MS: u64 = 10 * 60 * 1000;
/// A live migration whose target has not got ready by then is given up.
const TARGET_READY_LIMIT_MS: u64 = 60_000;

/// A live or quick migration off a healthy `owner`. The role stays the owner's until the
/// source's QEMU reports the guest moved; at most `parallel_migrations` run at once.
fn begin_migration(
    inputs: &Now,
    role: &RoleRecord,
    next: &mut RoleDecision,
    owner: NodeId,
    to: Option<NodeId>,
    mode: MoveMode,
    why: String,
) {
    let under_way = inputs.state.roles.values().filter(|r| r.migration.is_some()).count();
    let slots = inputs.state.settings.parallel_migrations as usize;
    if under_way >= slots {
        next.detail = format!(
            "running on {}; its {} migration waits for a slot ({under_way} under way, at most {slots})",
            inputs.name(owner),
            mode.as_str()
        );
        return;
    }
    let Placement { node, reasons } = move_target(inputs, role, owner, to);
    next.clear_move = role.move_request.is_some();
    let Some(target) = node else { return stays(inputs, role, next, owner, &why, reasons) };
    let (from_name, to_name) = (inputs.name(owner), inputs.name(target));
    next.migration = Some(Migration {
        id: role.migrations + 1,
        to: target,
        mode,
        started_ms: inputs.now_ms,
        uri: None,
        reason: why.clone(),
    });
    let summary = format!("{} migration from {from_name} to {to_name}: {why}", mode.as_str());
    next.decision = Some(Decision {
        at_ms: inputs.now_ms,
        generation: next.generation,
        kind: DecisionKind::Migrating,
        summary,
        reasons,
    });
    next.detail = format!("running on {from_name}; {} migration to {to_name} under way", mode.as_str());
}

/// Why a migration under way must be given up, if it must.
fn abandon_reason(inputs: &Now, role: &RoleRecord, m: &Migration) -> Option<String> {
    if role.spec.desired == Desired::Stopped {
        return Some("the role is to stop".into());
    }
    if let Some(owner) = role.owner
        && let Some(why) = inputs.lost(owner)
    {
        return Some(format!("the source {} {why}", inputs.name(owner)));
    }
    if let Some(why) = inputs.lost(m.to) {
        return Some(format!("the target {} {why}", inputs.name(m.to)));
    }
    if let Some(owner) = role.owner
        && role.failed_on.contains(&owner)
    {
        return Some(format!("the guest failed at the source {}", inputs.name(owner)));
    }
    if inputs.liveness.get(&m.to) == Some(&Liveness::Suspect) {
        return Some(format!("the target {} is not responding", inputs.name(m.to)));
    }
    if inputs.state.nodes.get(&m.to).is_some_and(|n| n.state != crate::state::NodeState::Up) {
        return Some(format!("the target {} is no longer up", inputs.name(m.to)));
    }
    if m.mode == MoveMode::Live && m.uri.is_none() && inputs.now_ms.saturating_sub(m.started_ms) > TARGET_READY_LIMIT_MS
    {
        return Some(format!(
            "the target {} did not get ready within {} s",
            inputs.name(m.to),
            TARGET_READY_LIMIT_MS / 1000
        ));
    }
    None
}

fn failed_migration(inputs: &Now, role: &RoleRecord, m: &Migration, detail: String) -> MigrationResult {
    MigrationResult {
        id: m.id,
        mode: m.mode,
        from: role.owner.map(|o| inputs.name(o)).unwrap_or_default(),
        to: inputs.name(m.to),
        ok: false,
        detail,
        started_ms: m.started_ms,
        finished_ms: inputs.now_ms,
        total_ms: None,
        downtime_ms: None,
        qemu_total_ms: None,
        qemu_downtime_ms: None,
    }
}

/// Move `role` off `from`, which runs nothing of it any more; a manual-priority role is only
/// let go, and waits for the admin.
fn fail_over(
    inputs: &Now,
    role: &RoleRecord,
    next: &mut RoleDecision,
    from: NodeId,
    why: String,
    out: &mut Vec<RoleDecision>,
) {
    if role.spec.priority == Priority::Manual {
        next.bump();
        next.owner = None;
        next.held = true;
        let detail = format!("{why}; {}", held_detail(role));
        next.decision = Some(Decision {
            at_ms: inputs.now_ms,
            generation: next.generation,
            kind: DecisionKind::Held,
            summary: "not restarted elsewhere: manual priority".into(),
            reasons: vec![detail.clone()],
        });
        next.set(RoleState::Offline, detail);
        return;
    }
    let window_start = inputs.now_ms.saturating_sub(role.spec.failover.period_s * 1000);
    next.failovers_ms.retain(|&t| t >= window_start);
    // A node still to confirm an earlier stop (not lost: that was cleared) stays to confirm it.
    next.owner = None;
    if next.failovers_ms.len() >= role.spec.failover.max_failovers as usize {
        next.bump();
        let detail = format!(
            "{why}; it already failed over {} time(s) within {} s, the most its failover policy allows",
            next.failovers_ms.len(),
            role.spec.failover.period_s
        );
        next.decision = Some(Decision {
            at_ms: inputs.now_ms,
            generation: next.generation,
            kind: DecisionKind::Held,
            summary: "not failed over again".into(),
            reasons: vec![detail.clone()],
        });
        next.set(RoleState::Failed, detail);
        return;
    }
    next.failovers_ms.push(inputs.now_ms);
    let exclude = [(from, "is the node it is failing over from".to_string())];
    place_role(inputs, role, next, &exclude, Some(why), out);
}

fn place_role(
    inputs: &Now,
    role: &RoleRecord,
    next: &mut RoleDecision,
    exclude: &[(NodeId, String)],
    because: Option<String>,
    out: &mut Vec<RoleDecision>,
) {
    let mut candidate = role.clone();
    candidate.failed_on = next.failed_on.clone();
    let Placement { node, reasons } = placement::place_in(inputs.state, inputs.index, &candidate, exclude);
    match node {
        Some(node) => {
            next.bump();
            next.owner = Some(node);
            let (kind, summary) = match &because {
                Some(why) => (DecisionKind::FailedOver, format!("failed over to {}: {why}", inputs.name(node))),
                None => (DecisionKind::Placed, format!("placed on {}", inputs.name(node))),
            };
            next.decision =
                Some(Decision { at_ms: inputs.now_ms, generation: next.generation, kind, summary, reasons });
            let waiting =
                next.releasing.map(|r| format!(" once {} has stopped it", inputs.name(r))).unwrap_or_default();
            next.set(RoleState::Pending, format!("starting on {}{waiting}", inputs.name(node)));
        }
        None if role.spec.priority == Priority::High
            && let Some(room) = placement::displace(inputs.state, &candidate, exclude) =>
        {
            for victim in &room.displaced {
                if let Some(record) = inputs.state.roles.get(victim) {
                    out.push(displaced(inputs, record, &role.spec.name, room.node));
                }
            }
            next.bump();
            next.owner = Some(room.node);
            next.waits_for = room.displaced.clone();
            let node = inputs.name(room.node);
            let (kind, summary) = match &because {
                Some(why) => {
                    (DecisionKind::FailedOver, format!("failed over to {node}, displacing lower-priority roles: {why}"))
                }
                None => (DecisionKind::Placed, format!("placed on {node}, displacing lower-priority roles")),
            };
            next.decision = Some(Decision {
                at_ms: inputs.now_ms,
                generation: next.generation,
                kind,
                summary,
                reasons: room.reasons,
            });
            let waiting = room.displaced.join(", ");
            next.set(RoleState::Pending, format!("starting on {node} once {waiting} stopped there to make room"));
        }
        None => {
            let detail = match &because {
                Some(why) => format!("{why}, and no node can run it"),
                None => "no node can run it".to_string(),
            };
            // Already failed and still unplaceable: keep the first explanation, commit nothing.
            if role.state != RoleState::Failed || role.owner.is_some() {
                next.bump();
                next.decision = Some(Decision {
                    at_ms: inputs.now_ms,
                    generation: next.generation,
                    kind: DecisionKind::Unplaceable,
                    summary: detail.clone(),
                    reasons,
                });
                next.set(RoleState::Failed, detail);
            }
        }
    }
}

/// `victim` stops on `node` to make room for the high-priority role `by`; then it is placed
/// elsewhere if it can be, or held if it is a manual-priority role.
fn displaced(inputs: &Now, victim: &RoleRecord, by: &str, node: NodeId) -> RoleDecision {
    let mut d = RoleDecision::from_record(victim, inputs.now_ms);
    d.bump();
    d.owner = None;
    d.releasing = Some(victim.releasing.unwrap_or(node));
    d.held = victim.spec.priority == Priority::Manual;
    let why = format!("displaced from {} to make room for high-priority role {by}", inputs.name(node));
    d.decision = Some(Decision {
        at_ms: inputs.now_ms,
        generation: d.generation,
        kind: DecisionKind::Displaced,
        summary: why.clone(),
        reasons: vec![],
    });
    d.set(RoleState::Pending, format!("stopping on {}: {why}", inputs.name(node)));
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{RoleReport, RoleReportOutcome};
    use crate::placement::tests_support::{cluster, role};

    fn run(state: &mut ClusterState, liveness: &BTreeMap<NodeId, Liveness>, now_ms: u64) -> Vec<Command> {
        let commands = decide(&Inputs { state, liveness, now_ms });
        for c in &commands {
            state.apply(c);
        }
        commands
    }

    fn report(state: &mut ClusterState, role: &str, node: NodeId, outcome: RoleReportOutcome) {
        let generation = state.roles[role].generation;
        state.apply(&Command::ReportRole(RoleReport {
            role: role.into(),
            node,
            generation,
            outcome,
            detail: String::new(),
            now_ms: 0,
        }));
    }

    #[test]
    fn a_lost_owner_fails_over_only_once_its_lease_ran_out() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let mut live = BTreeMap::new();
        run(&mut s, &live, 1);
        assert_eq!(s.roles["web"].owner, Some(1));
        assert_eq!(s.roles["web"].generation, 1);
        report(&mut s, "web", 1, RoleReportOutcome::Online);
        assert_eq!(s.roles["web"].state, RoleState::Online);

        live.insert(1, Liveness::Suspect);
        run(&mut s, &live, 2);
        assert_eq!(s.roles["web"].owner, Some(1), "never moved while the old owner may still run it");
        assert_eq!(s.roles["web"].state, RoleState::Pending);
        assert!(run(&mut s, &live, 3).is_empty(), "no repeated commits while waiting");

        live.insert(1, Liveness::Lost("lease ran out".into()));
        s.nodes.get_mut(&1).unwrap().state = crate::state::NodeState::Down;
        run(&mut s, &live, 4);
        let r = &s.roles["web"];
        assert_eq!((r.owner, r.releasing, r.generation), (Some(2), None, 2));
        assert!(r.decisions.last().unwrap().summary.contains("failed over to b"));
    }

    #[test]
    fn the_failover_threshold_ends_in_failed() {
        let mut s = cluster();
        let mut r = role("web");
        r.spec.failover.max_failovers = 1;
        s.roles.insert("web".into(), r);
        let mut live = BTreeMap::new();
        run(&mut s, &live, 1);
        live.insert(1, Liveness::Lost("lease ran out".into()));
        run(&mut s, &live, 2);
        assert_eq!(s.roles["web"].owner, Some(2));
        live.insert(2, Liveness::Lost("lease ran out".into()));
        run(&mut s, &live, 3);
        let r = &s.roles["web"];
        assert_eq!((r.owner, r.state), (None, RoleState::Failed));
        assert!(r.detail.contains("failed over 1 time(s)"), "{}", r.detail);
    }

    #[test]
    fn stopping_waits_for_the_owner_to_confirm() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let live = BTreeMap::new();
        run(&mut s, &live, 1);
        s.roles.get_mut("web").unwrap().spec.desired = Desired::Stopped;
        run(&mut s, &live, 2);
        assert_eq!((s.roles["web"].owner, s.roles["web"].releasing), (None, Some(1)));
        report(&mut s, "web", 1, RoleReportOutcome::Stopped);
        run(&mut s, &live, 3);
        assert_eq!((s.roles["web"].releasing, s.roles["web"].state), (None, RoleState::Offline));
    }

    #[test]
    fn drain_moves_with_release_and_failback_returns_to_the_preferred_owner() {
        let mut s = cluster();
        let mut r = role("web");
        r.spec.preferred = vec!["a".into()];
        s.roles.insert("web".into(), r);
        let live = BTreeMap::new();
        run(&mut s, &live, 1);
        report(&mut s, "web", 1, RoleReportOutcome::Online);

        s.apply(&Command::PauseNode { node: 1, drain: true, now_ms: 2 });
        run(&mut s, &live, 3);
        let r = &s.roles["web"];
        assert_eq!((r.owner, r.releasing), (Some(2), Some(1)), "the old owner must release first");
        report(&mut s, "web", 1, RoleReportOutcome::Stopped);
        report(&mut s, "web", 2, RoleReportOutcome::Online);
        assert!(run(&mut s, &live, 4).is_empty(), "paused node is not a target: nothing more to do");

        s.apply(&Command::ResumeNode { node: 1, failback: true, now_ms: 5 });
        run(&mut s, &live, 6);
        let r = &s.roles["web"];
        assert_eq!((r.owner, r.releasing, r.move_request.clone()), (Some(1), Some(2), None));
        assert!(r.decisions.last().unwrap().summary.contains("failback to preferred owner a"));
    }

    #[test]
    fn immediate_failback_returns_an_online_role_on_its_own_and_never_fails_back_does_not() {
        for (failback, returns) in [(crate::role::Failback::Immediate, true), (crate::role::Failback::Never, false)] {
            let mut s = cluster();
            let mut r = role("web");
            r.spec.preferred = vec!["a".into()];
            r.spec.failback = failback;
            s.roles.insert("web".into(), r);
            let live = BTreeMap::new();
            // Placed on b while a is paused; a comes back without --failback.
            s.apply(&Command::PauseNode { node: 1, drain: false, now_ms: 0 });
            run(&mut s, &live, 1);
            assert_eq!(s.roles["web"].owner, Some(2));
            report(&mut s, "web", 2, RoleReportOutcome::Online);
            s.apply(&Command::ResumeNode { node: 1, failback: false, now_ms: 2 });
            run(&mut s, &live, 3);
            let r = &s.roles["web"];
            if returns {
                assert_eq!((r.owner, r.releasing), (Some(1), Some(2)), "{failback:?}");
                assert!(r.decisions.last().unwrap().summary.contains("failback to preferred owner a"));
            } else {
                assert_eq!((r.owner, r.releasing), (Some(2), None), "{failback:?}");
            }
        }
    }

    #[test]
    fn a_move_to_an_unfit_node_is_refused_and_nothing_changes() {
        let mut s = cluster();
        let mut r = role("web");
        r.spec.possible = vec!["a".into(), "b".into()];
        s.roles.insert("web".into(), r);
        run(&mut s, &BTreeMap::new(), 1);
        let before = s.clone();
        let result = s.apply(&Command::MoveRole { role: "web".into(), to: Some(3), mode: None });
        assert!(matches!(result, crate::command::CommandResult::Rejected(_)), "{result:?}");
        assert_eq!(s, before);
    }

    #[test]
    fn a_role_that_keeps_failing_moves_and_then_fails() {
        let mut s = cluster();
        s.nodes.remove(&3);
        s.roles.insert("web".into(), role("web"));
        let live = BTreeMap::new();
        run(&mut s, &live, 1);
        report(&mut s, "web", 1, RoleReportOutcome::Failed);
        run(&mut s, &live, 2);
        assert_eq!(s.roles["web"].owner, Some(2));
        report(&mut s, "web", 2, RoleReportOutcome::Failed);
        run(&mut s, &live, 3);
        let r = &s.roles["web"];
        assert_eq!((r.owner, r.state), (None, RoleState::Failed));
        assert!(r.decisions.last().unwrap().reasons.iter().any(|x| x.contains("failed there")), "{:?}", r.decisions);
    }

    fn sized(name: &str, priority: Priority, memory_mb: u64) -> RoleRecord {
        let mut r = role(name);
        r.spec.priority = priority;
        r.spec.memory_mb = memory_mb;
        r
    }

    fn two_nodes_of(memory_mb: u64) -> ClusterState {
        let mut s = cluster();
        s.nodes.remove(&3);
        for n in s.nodes.values_mut() {
            n.capacity = Some(crate::capacity::Capacity { cpu_milli: 4000, memory_mb });
        }
        s
    }

    #[test]
    fn a_high_priority_role_displaces_low_ones_and_starts_once_they_stopped() {
        let mut s = two_nodes_of(4096);
        s.roles.insert("low-a".into(), sized("low-a", Priority::Low, 3072));
        s.roles.insert("low-b".into(), sized("low-b", Priority::Low, 3072));
        s.roles.insert("mid".into(), sized("mid", Priority::Medium, 1024));
        let live = BTreeMap::new();
        run(&mut s, &live, 1);
        for name in ["low-a", "low-b", "mid"] {
            let owner = s.roles[name].owner.expect("placed");
            report(&mut s, name, owner, RoleReportOutcome::Online);
        }
        // No room anywhere for 2 GiB: only a low role can make room, never the medium one.
        s.roles.insert("vip".into(), sized("vip", Priority::High, 2048));
        run(&mut s, &live, 2);
        let vip = &s.roles["vip"];
        let node = vip.owner.expect("placed by displacement");
        assert_eq!(vip.waits_for.len(), 1, "{vip:?}");
        let victim = vip.waits_for[0].clone();
        assert!(victim.starts_with("low-"), "{victim}");
        let v = &s.roles[&victim];
        assert_eq!(v.releasing, Some(node), "the displaced role stops there first");
        assert_ne!(v.owner, Some(node));
        assert!(v.decisions.iter().any(|d| d.summary.contains("to make room for high-priority role vip")), "{v:?}");
        assert_eq!(s.roles["mid"].state, RoleState::Online, "medium roles are never displaced");
        // It does not fit anywhere else either: failed, with the reason.
        assert_eq!(v.state, RoleState::Failed, "{v:?}");
        assert!(v.decisions.last().unwrap().reasons.iter().any(|r| r.contains("memory")), "{:?}", v.decisions);

        // A medium role is never placed by displacing anything.
        s.roles.insert("mid2".into(), sized("mid2", Priority::Medium, 4096));
        run(&mut s, &live, 3);
        assert_eq!(s.roles["mid2"].owner, None);
        assert!(s.roles["mid2"].detail.contains("no node can run it"));
    }

    #[test]
    fn capacity_keeps_roles_within_what_nodes_declare() {
        let mut s = two_nodes_of(4096);
        for name in ["r1", "r2", "r3"] {
            s.roles.insert(name.into(), sized(name, Priority::Medium, 2048));
        }
        run(&mut s, &BTreeMap::new(), 1);
        let on = |s: &ClusterState, n| s.roles.values().filter(|r| r.owner == Some(n)).count();
        assert_eq!((on(&s, 1), on(&s, 2)), (2, 1), "least loaded first, within capacity");
        s.roles.insert("big".into(), sized("big", Priority::Medium, 4096));
        run(&mut s, &BTreeMap::new(), 2);
        let big = &s.roles["big"];
        assert_eq!((big.owner, big.state), (None, RoleState::Failed));
        let why = &big.decisions.last().unwrap().reasons;
        assert!(why.contains(&"a: needs 4 GiB memory, only 0 MiB of 4 GiB free".to_string()), "{why:?}");
    }

    #[test]
    fn a_manual_role_is_not_restarted_elsewhere_until_the_admin_starts_it() {
        let mut s = cluster();
        s.roles.insert("lab".into(), sized("lab", Priority::Manual, 0));
        let mut live = BTreeMap::new();
        run(&mut s, &live, 1);
        assert_eq!(s.roles["lab"].owner, Some(1), "the admin created it started: it is placed");
        report(&mut s, "lab", 1, RoleReportOutcome::Online);
        live.insert(1, Liveness::Lost("lease ran out".into()));
        s.nodes.get_mut(&1).unwrap().state = crate::state::NodeState::Down;
        run(&mut s, &live, 2);
        let r = &s.roles["lab"];
        assert_eq!((r.owner, r.state, r.held), (None, RoleState::Offline, true));
        assert!(r.detail.contains("halo role start lab"), "{}", r.detail);
        assert!(run(&mut s, &live, 3).is_empty(), "held: nothing more happens on its own");
        s.apply(&Command::SetRoleDesired { role: "lab".into(), desired: Desired::Started, now_ms: 4 });
        run(&mut s, &live, 5);
        assert_eq!((s.roles["lab"].owner, s.roles["lab"].held), (Some(2), false));
    }

    #[test]
    fn a_decision_that_crossed_an_admin_request_is_not_applied() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let live = BTreeMap::new();
        run(&mut s, &live, 1);
        s.apply(&Command::SetRoleDesired { role: "web".into(), desired: Desired::Stopped, now_ms: 2 });
        // Computed now, committed after the admin changed their mind: stale.
        let late = decide(&Inputs { state: &s, liveness: &live, now_ms: 3 });
        assert_eq!(late.len(), 1);
        s.apply(&Command::SetRoleDesired { role: "web".into(), desired: Desired::Started, now_ms: 4 });
        let before = s.clone();
        let result = s.apply(&late[0]);
        assert!(matches!(result, crate::command::CommandResult::Rejected(_)), "{result:?}");
        assert_eq!(s, before);
    }

    /// Found by halo-sim (seed 374): a second move while the first old owner had not yet
    /// confirmed its stop replaced it as `releasing`, and the new owner started beside it.
    #[test]
    fn a_node_yet_to_confirm_its_stop_is_never_forgotten() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let live = BTreeMap::new();
        run(&mut s, &live, 1);
        report(&mut s, "web", 1, RoleReportOutcome::Online);
        s.apply(&Command::MoveRole { role: "web".into(), to: Some(2), mode: None });
        run(&mut s, &live, 2);
        assert_eq!((s.roles["web"].owner, s.roles["web"].releasing), (Some(2), Some(1)));
        // Node 1 has not confirmed yet; the role is moved on again.
        s.apply(&Command::MoveRole { role: "web".into(), to: Some(3), mode: None });
        run(&mut s, &live, 4);
        assert_eq!((s.roles["web"].owner, s.roles["web"].releasing), (Some(3), Some(1)), "node 1 must still confirm");
        // Stopped, then failed over from a lost owner: still node 1 to wait for.
        let mut lost = BTreeMap::new();
        lost.insert(3, Liveness::Lost("lease ran out".into()));
        s.nodes.get_mut(&3).unwrap().state = crate::state::NodeState::Down;
        run(&mut s, &lost, 6);
        assert_eq!(s.roles["web"].releasing, Some(1), "{:?}", s.roles["web"]);
        s.apply(&Command::SetRoleDesired { role: "web".into(), desired: Desired::Stopped, now_ms: 7 });
        run(&mut s, &lost, 8);
        assert_eq!((s.roles["web"].owner, s.roles["web"].releasing), (None, Some(1)));
    }
}
