//! The commands that change roles: create, apply, delete, start and stop, move, the
//! leader's decisions and the nodes' reports.

use crate::NodeId;
use crate::command::{CommandResult, Rejection, RoleDecision, RoleReport, RoleReportOutcome};
use crate::migration::MoveMode;
use crate::role::{Decision, Desired, MoveRequest, RoleRecord, RoleSpec, RoleState};
use crate::state::ClusterState;

impl ClusterState {
    pub(crate) fn create_role(&mut self, spec: &RoleSpec, now_ms: u64) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        if self.roles.contains_key(&spec.name) {
            return Err(Rejection::DuplicateRole(spec.name.clone()));
        }
        spec.validate(self)?;
        self.roles.insert(spec.name.clone(), RoleRecord::new(spec.clone(), now_ms));
        Ok(CommandResult::Done)
    }

    pub(crate) fn apply_roles(&mut self, specs: &[RoleSpec], now_ms: u64) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        let changes = crate::apply::plan(self, specs)?;
        for (spec, change) in specs.iter().zip(&changes) {
            match change {
                crate::apply::Change::Create { .. } => {
                    self.roles.insert(spec.name.clone(), RoleRecord::new(spec.clone(), now_ms));
                }
                crate::apply::Change::Update { .. } => {
                    if let Some(record) = self.roles.get_mut(&spec.name) {
                        crate::apply::update(record, spec, now_ms);
                    }
                }
                crate::apply::Change::Unchanged { .. } => {}
            }
        }
        Ok(CommandResult::Applied(changes))
    }

    pub(crate) fn delete_role(&mut self, role: &str) -> Result<CommandResult, Rejection> {
        let record = self.roles.get(role).ok_or_else(|| Rejection::UnknownRole(role.to_string()))?;
        if let Some(node) = record.owner.or(record.releasing) {
            let node = self.nodes.get(&node).map_or_else(|| node.to_string(), |n| n.name.clone());
            return Err(Rejection::RoleRunning { role: role.to_string(), node });
        }
        self.roles.remove(role);
        Ok(CommandResult::Done)
    }

    pub(crate) fn set_role_desired(
        &mut self,
        role: &str,
        desired: Desired,
        now_ms: u64,
    ) -> Result<CommandResult, Rejection> {
        let record = self.roles.get_mut(role).ok_or_else(|| Rejection::UnknownRole(role.to_string()))?;
        record.spec.desired = desired;
        record.touched();
        if desired == Desired::Started {
            record.start_asked(now_ms);
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn move_role(
        &mut self,
        role: &str,
        to: Option<NodeId>,
        mode: Option<MoveMode>,
    ) -> Result<CommandResult, Rejection> {
        let record = self.roles.get(role).ok_or_else(|| Rejection::UnknownRole(role.to_string()))?;
        crate::placement::check_move(self, record, to, mode)?;
        let reason = match to.and_then(|t| self.nodes.get(&t)) {
            Some(node) => format!("moved to {} by the admin", node.name),
            None => "moved by the admin".to_string(),
        };
        if let Some(record) = self.roles.get_mut(role) {
            record.move_request = Some(MoveRequest { to, reason, mode });
            record.touched();
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn decide_role(&mut self, d: &RoleDecision) -> Result<CommandResult, Rejection> {
        let record = self.roles.get_mut(&d.role).ok_or_else(|| Rejection::UnknownRole(d.role.to_string()))?;
        // Generations never go back: a decision is made on top of the one it read, and
        // every node acts on the newest only.
        if record.generation != d.expected_generation
            || record.revision != d.expected_revision
            || d.generation < record.generation
        {
            return Err(Rejection::StaleDecision(d.role.to_string()));
        }
        if d.generation != record.generation {
            // A new placement boots the guest: resuming belongs to the migration's.
            record.resume = None;
        }
        record.generation = d.generation;
        record.owner = d.owner;
        record.releasing = d.releasing;
        record.set_state(d.state, d.detail.clone(), d.now_ms);
        // A failover appends its time; pruning the window only drops old ones. (Counted
        // by membership, not by order: a new leader's clock may be behind the last's.)
        record.failovers += d.failovers_ms.iter().filter(|t| !record.failovers_ms.contains(t)).count() as u64;
        record.failovers_ms = d.failovers_ms.clone();
        record.failed_on = d.failed_on.clone();
        record.held = d.held;
        record.waits_for = d.waits_for.clone();
        if let Some(m) = &d.migration {
            record.migrations = record.migrations.max(m.id);
        }
        record.migration = d.migration.clone();
        if let Some(result) = &d.finished_migration {
            record.last_migration = Some(result.as_ref().clone());
        }
        if d.clear_move {
            record.move_request = None;
        }
        crate::migration::settle(record);
        if let Some(decision) = &d.decision {
            record.record_decision(decision.clone());
        } else if let Some(note) = &d.note {
            record.record_decision(Decision {
                at_ms: d.now_ms,
                generation: d.generation,
                kind: d.note_kind,
                summary: note.clone(),
                reasons: Vec::new(),
            });
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn report_role(&mut self, report: &RoleReport) -> Result<CommandResult, Rejection> {
        let node_name = self.nodes.get(&report.node).map_or_else(|| report.node.to_string(), |n| n.name.clone());
        let record = self.roles.get_mut(&report.role).ok_or_else(|| Rejection::UnknownRole(report.role.to_string()))?;
        let current = record.owner == Some(report.node) && record.generation == report.generation;
        match report.outcome {
            RoleReportOutcome::Stopped if record.releasing == Some(report.node) => {
                record.releasing = None;
                crate::migration::settle(record);
                if let Some(owner) = record.owner {
                    let owner = self.nodes.get(&owner).map_or_else(|| owner.to_string(), |n| n.name.clone());
                    record.set_state(RoleState::Pending, format!("starting on {owner}"), report.now_ms);
                }
            }
            RoleReportOutcome::Online if current => {
                // `failed_on` stays: a node where it failed is not tried again until the admin
                // restarts the role (`halo role start` clears the history).
                record.set_state(RoleState::Online, format!("running on {node_name}"), report.now_ms);
                record.waits_for.clear();
                if let Some(from) = record.resume.as_ref().map(|r| r.from) {
                    let from = self.nodes.get(&from).map_or_else(|| from.to_string(), |n| n.name.clone());
                    crate::migration::resumed(record, from, node_name, report.now_ms);
                }
            }
            RoleReportOutcome::Failed if current => {
                if !record.failed_on.contains(&report.node) {
                    record.failed_on.push(report.node);
                }
                record.set_state(
                    RoleState::Pending,
                    format!("failed on {node_name}: {}", report.detail),
                    report.now_ms,
                );
                record.record_decision(Decision {
                    at_ms: report.now_ms,
                    generation: record.generation,
                    kind: crate::role::DecisionKind::Failed,
                    summary: format!("failed on {node_name}"),
                    reasons: vec![report.detail.clone()],
                });
            }
            RoleReportOutcome::StopFailed
                if record.owner == Some(report.node) || record.releasing == Some(report.node) =>
            {
                let why = format!("could not stop role {}: {}", report.role, report.detail);
                let summary = format!("could not be stopped on {node_name}; {node_name} is being fenced");
                record.set_state(RoleState::Pending, summary.clone(), report.now_ms);
                record.record_decision(Decision {
                    at_ms: report.now_ms,
                    generation: record.generation,
                    kind: crate::role::DecisionKind::Fencing,
                    summary,
                    reasons: vec![report.detail.clone()],
                });
                if let Some(node) = self.nodes.get_mut(&report.node)
                    && node.fence_request.is_none()
                {
                    node.fence_request = Some(why);
                }
            }
            _ => return Err(Rejection::StaleReport(report.role.to_string())),
        }
        Ok(CommandResult::Done)
    }
}
