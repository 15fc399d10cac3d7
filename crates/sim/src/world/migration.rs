//! Live and quick migration of VM roles, as the executor carries them out, modelled: a
//! guest runs where `running` says; `copies` are QEMUs that hold it without running it (a
//! live target waiting paused, or a source whose guest left). The rules the nodes follow are
//! the real ones (`execution::receives`, `resumes_from`, `runs`); QEMU's transfer is a delay
//! that ends in "completed" or "failed", and one the cluster calls off may still complete.

use halo_core::NodeId;
use halo_core::execution;
use halo_core::migration::{MigrationEvent, MigrationReport, MoveMode};
use rand::Rng;

use super::{EPOCH_MS, Msg, NETWORKS, World};

/// A QEMU that holds a guest without running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// A live migration's target, waiting paused for migration `id`.
    Incoming { id: u64 },
    /// A source whose guest left in migration `id`, under generation `generation`.
    Out { id: u64, generation: u64 },
}

/// A transfer under way at the source.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    id: u64,
    to: NodeId,
    mode: MoveMode,
    done_at: u64,
    succeeds: bool,
}

impl World {
    pub(super) fn migrations(&mut self, id: NodeId) {
        if !self.active(id) {
            return;
        }
        let t = self.time;
        let (succeeds, takes, completes_anyway) =
            (self.rng.random_bool(0.8), self.rng.random_range(50..1_500), self.rng.random_bool(0.3));
        // Whether each node holds a waiting copy for a migration: the transfer needs it.
        let waiting: Vec<(NodeId, String, u64)> = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .flat_map(|n| {
                n.copies.iter().filter_map(move |(role, c)| match c {
                    Copy::Incoming { id } => Some((n.id, role.clone(), *id)),
                    Copy::Out { .. } => None,
                })
            })
            .collect();
        let node = self.node(id);
        let local = node.now(t);
        let lease_held = node.heartbeats.lease().valid(local);
        let may_start = node.heartbeats.may_start(node.applied as u64, local);
        let super::Node { state, copies, running, migrating, migration_reports, reported, .. } = node;
        let mut notes = Vec::new();
        let (mut migrated, mut called_back) = (0, 0);

        // Copies no longer wanted quit (as the executor stops them).
        copies.retain(|name, copy| {
            let Some(r) = state.roles.get(name) else { return false };
            lease_held
                && match *copy {
                    Copy::Incoming { id: m } => execution::receives(r, id, m) || execution::resumes_from(r, id, m),
                    Copy::Out { generation, .. } => r.owner == Some(id) && r.generation == generation,
                }
        });

        for r in state.roles.values() {
            let name = &r.spec.name;
            if r.migration.is_none() && !copies.contains_key(name) && !migrating.contains_key(name) {
                continue;
            }
            // Target: a QEMU waits for the guest; the hand-over lets it run.
            if let Some(m) = &r.migration
                && m.uri.is_none()
                && may_start
                && execution::receives(r, id, m.id)
                && r.owner != Some(id)
                && !running.contains_key(name)
                && !copies.contains_key(name)
            {
                copies.insert(name.clone(), Copy::Incoming { id: m.id });
                // On its first network, as the agent listens: the cluster accepts only its own addresses.
                let ready = MigrationEvent::Ready { uri: format!("tcp:10.0.0.{id}:4444") };
                migration_reports.insert(name.clone(), report(name, id, r.generation, m.id, ready, t));
            }
            if let Some(Copy::Incoming { id: m }) = copies.get(name).copied()
                && may_start
                && execution::resumes_from(r, id, m)
            {
                copies.remove(name);
                running.insert(name.clone(), r.generation);
                migrated += 1;
                notes.push(format!("node {id} resumes the migrated guest of {name} (generation {})", r.generation));
            }

            // Source.
            let mine = r.owner == Some(id) && running.get(name) == Some(&r.generation);
            let current = r.migration.as_ref().map(|m| m.id);
            if let Some(transfer) = migrating.get(name).copied() {
                let called_off = current != Some(transfer.id);
                // A live transfer needs the target's QEMU there to take it; a quick one a file.
                let target_ok = transfer.mode == MoveMode::Quick
                    || waiting.iter().any(|(n, role, i)| *n == transfer.to && role == name && *i == transfer.id);
                if called_off || t >= transfer.done_at {
                    migrating.remove(name);
                    let completed = mine
                        && target_ok
                        && if called_off {
                            completes_anyway && t >= transfer.done_at.saturating_sub(200)
                        } else {
                            transfer.succeeds
                        };
                    let event = if completed {
                        running.remove(name);
                        copies.insert(name.clone(), Copy::Out { id: transfer.id, generation: r.generation });
                        notes.push(format!("node {id}: the guest of {name} left (migration {})", transfer.id));
                        MigrationEvent::Completed {
                            qemu_total_ms: 300,
                            qemu_downtime_ms: 20,
                            paused_at_ms: EPOCH_MS + t,
                            state_file: None,
                        }
                    } else {
                        MigrationEvent::Failed { detail: "the transfer failed".into() }
                    };
                    migration_reports.insert(name.clone(), report(name, id, r.generation, transfer.id, event, t));
                }
            } else if mine
                && let Some(m) = &r.migration
                && (m.mode == MoveMode::Quick || m.uri.is_some())
                && !copies.contains_key(name)
            {
                let transfer = Transfer { id: m.id, to: m.to, mode: m.mode, done_at: t + takes, succeeds };
                migrating.insert(name.clone(), transfer);
            }
            // A migration of a role this node owns but holds nothing of, with nothing to report.
            if let Some(m) = &r.migration
                && r.owner == Some(id)
                && !running.contains_key(name)
                && !copies.contains_key(name)
                && !migrating.contains_key(name)
                && migration_reports.get(name).is_none_or(|rep| rep.id != m.id)
            {
                let detail = "the source no longer holds the guest".to_string();
                migration_reports
                    .insert(name.clone(), report(name, id, r.generation, m.id, MigrationEvent::Failed { detail }, t));
            }
            // A migration dropped after the guest left, without a hand-over: it resumes here.
            if let Some(Copy::Out { id: m, generation }) = copies.get(name).copied()
                && current != Some(m)
                && r.owner == Some(id)
                && r.generation == generation
                && may_start
            {
                copies.remove(name);
                running.insert(name.clone(), generation);
                called_back += 1;
                notes.push(format!("node {id}: migration {m} of {name} was dropped; its guest resumes here"));
            }
        }

        // Reports until the state reflects them.
        migration_reports.retain(|name, rep| {
            state.roles.get(name).and_then(|r| r.migration.as_ref()).is_some_and(|m| {
                m.id == rep.id && !(matches!(rep.event, MigrationEvent::Ready { .. }) && m.uri.is_some())
            })
        });
        let mut due = Vec::new();
        for (name, rep) in migration_reports.iter() {
            let key = format!("{name}/migration/{}/{:?}", rep.id, std::mem::discriminant(&rep.event));
            if reported.get(&key).is_none_or(|&at| t >= at + 500) {
                reported.insert(key, t);
                due.push(rep.clone());
            }
        }
        self.migrated += migrated;
        self.migrations_called_back += called_back;
        for line in notes {
            self.note(line);
        }
        if let Some(leader) = self.leader {
            for rep in due {
                if leader == id {
                    if self.reaches_majority(id) {
                        self.propose(halo_core::command::Command::ReportMigration(rep));
                    }
                } else {
                    let network = self.rng.random_range(0..NETWORKS);
                    self.send(id, leader, network, Msg::Migration(rep));
                }
            }
        }
    }
}

fn report(role: &str, node: NodeId, generation: u64, id: u64, event: MigrationEvent, t: u64) -> MigrationReport {
    MigrationReport { role: role.to_string(), node, generation, id, event, now_ms: EPOCH_MS + t }
}
