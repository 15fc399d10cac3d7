//! Raft on this node, in halo's words: start it, write commands, change the voters, confirm
//! leadership for a read, answer peers' messages, and say where it stands ([`RaftStatus`]).
//! openraft's types stay inside this crate, so an openraft upgrade touches one place.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use halo_core::command::{Command, CommandResult};
use halo_core::former_leader::{AppendReceipts, LeaderId, VoterReport, Voters};
use halo_core::timing::RaftTiming;
use openraft::errors::{ClientWriteError, Fatal, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Instant as _, ReadPolicy, ServerState};

use crate::rpc::{Incoming, Network, RaftMessage, RaftTransport};
use crate::{LogStore, PeerNode, Raft, StateMachine, TypeConfig};

type Metrics = openraft::RaftMetrics<TypeConfig>;

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// Only the leader may do this, and this node is not it (or no longer).
    #[error("this node is not the leader")]
    NotLeader,
    #[error("invalid Raft settings: {0}")]
    Settings(String),
    #[error("{0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> ConsensusError {
    ConsensusError::Failed(e.to_string())
}

/// Where Raft stands on this node.
#[derive(Debug, Clone)]
pub struct RaftStatus {
    pub term: u64,
    /// The leader this node knows of, and where to reach it.
    pub leader: Option<u64>,
    pub leader_node: Option<PeerNode>,
    /// Whether this node leads.
    pub leading: bool,
    /// The voters, and every node of the membership (voters and learners).
    pub voters: BTreeSet<u64>,
    pub members: BTreeSet<u64>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// On the leader: how far each other node's log matches (none: nothing matched yet).
    pub replication: Option<BTreeMap<u64, Option<u64>>>,
    /// The leader this node follows or is, once a quorum granted it (`former_leader`'s words).
    pub granted_leader: Option<LeaderId>,
    /// The voters as `former_leader::bound` weighs them.
    pub voters_now: Voters,
}

impl RaftStatus {
    fn of(m: &Metrics, me: u64) -> Self {
        let membership = m.membership_config.membership();
        Self {
            term: m.current_term,
            leader: m.current_leader,
            leader_node: m.current_leader.and_then(|l| membership.get_node(&l).cloned()),
            leading: is_leader(m, me),
            voters: membership.voter_ids().collect(),
            members: membership.nodes().map(|(id, _)| *id).collect(),
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: m.cluster_committed.map_or(0, |l| l.index),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            replication: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, log)| (*id, log.map(|l| l.index))).collect()),
            granted_leader: crate::leadership::leader(m),
            voters_now: crate::leadership::voters(m),
        }
    }
}

fn is_leader(m: &Metrics, me: u64) -> bool {
    m.state == ServerState::Leader && m.current_leader == Some(me)
}

/// This node is the only voter: it is its own quorum at every instant. (Raft records no
/// acknowledgement for it while nothing is written, so an idle one-node cluster would
/// otherwise lose its quorum, and its lease with it.)
fn sole_voter(m: &Metrics, me: u64) -> bool {
    let mut voters = m.membership_config.membership().voter_ids();
    voters.next() == Some(me) && voters.next().is_none()
}

/// Raft on this node.
pub struct Consensus {
    raft: Raft,
    id: u64,
    /// The appends this node took and its leaderships, for its voter report.
    receipts: Arc<Mutex<AppendReceipts>>,
}

impl Consensus {
    /// Start Raft as node `id` with the cluster's `timing`, over `log` and `machine`,
    /// reaching peers through `transport`.
    pub async fn start(
        id: u64,
        timing: RaftTiming,
        transport: impl RaftTransport,
        log: LogStore,
        machine: StateMachine,
    ) -> Result<Self, ConsensusError> {
        let config = openraft::Config {
            cluster_name: "halo".into(),
            heartbeat_interval: timing.raft_heartbeat_ms,
            election_timeout_min: timing.election_timeout_min_ms,
            election_timeout_max: timing.election_timeout_max_ms,
            // A node returning from a partition or a SIGSTOP must not depose a healthy leader.
            enable_pre_vote: Some(true),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(500),
            // Sending and installing a whole snapshot: the transport adds the time its size
            // takes (`wire::transfer_allowance`) to three quarters of this.
            install_snapshot_timeout: 10_000,
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConsensusError::Settings(e.to_string()))?;
        let receipts = log.receipts();
        let raft = Raft::new(id, Arc::new(config), Network(transport), log, machine).await.map_err(failed)?;
        Ok(Self { raft, id, receipts })
    }

    /// Make this node the first and only voter of a new cluster.
    pub async fn initialize(&self, node: PeerNode) -> Result<(), ConsensusError> {
        self.raft.initialize(BTreeMap::from([(self.id, node)])).await.map_err(failed)
    }

    fn metrics(&self) -> Metrics {
        self.raft.metrics().borrow_watched().clone()
    }

    pub fn status(&self) -> RaftStatus {
        RaftStatus::of(&self.metrics(), self.id)
    }

    pub fn is_leader(&self) -> bool {
        is_leader(&self.metrics(), self.id)
    }

    /// If this node leads: how long ago a quorum last acknowledged its leadership, and the
    /// commit index now.
    pub fn leadership(&self) -> Option<(u64, u64)> {
        let watch = self.raft.metrics();
        let m = watch.borrow_watched();
        if !is_leader(&m, self.id) {
            return None;
        }
        let committed = m.cluster_committed.map_or(0, |l| l.index);
        if sole_voter(&m, self.id) {
            return Some((0, committed));
        }
        m.last_quorum_acked.as_ref().map(|at| (at.elapsed().as_millis() as u64, committed))
    }

    /// This node leads and heard from a quorum within twice `window_ms` (always, for a
    /// single voter).
    pub fn has_quorum(&self, window_ms: u64) -> bool {
        let m = self.metrics();
        let window = Duration::from_millis(window_ms.saturating_mul(2));
        m.state == ServerState::Leader
            && (sole_voter(&m, self.id) || m.last_quorum_acked.as_ref().is_some_and(|at| at.elapsed() <= window))
    }

    /// Commit `command`, on the leader.
    pub async fn write(&self, command: Command) -> Result<CommandResult, ConsensusError> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(ConsensusError::NotLeader),
            Err(e) => Err(failed(e)),
        }
    }

    /// Before a leader answers a read: a quorum confirms it still leads, and everything
    /// acknowledged before is applied here (read index).
    pub async fn confirm_leadership(&self) -> Result<(), ConsensusError> {
        self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await.map(drop).map_err(failed)
    }

    /// Replicate to node `id` as a learner (no vote yet).
    pub async fn add_learner(&self, id: u64, node: PeerNode) -> Result<(), ConsensusError> {
        self.raft.add_learner(id, node, false).await.map(drop).map_err(failed)
    }

    /// Make learner `id` a voter.
    pub async fn promote(&self, id: u64) -> Result<(), ConsensusError> {
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.raft.change_membership(change, true).await.map(drop).map_err(failed)
    }

    /// Take node `id` out of the membership (a voter or a learner); nothing if it is in none.
    pub async fn remove(&self, id: u64) -> Result<(), ConsensusError> {
        let membership = self.metrics().membership_config.membership().clone();
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Ok(());
        };
        self.raft.change_membership(change, false).await.map(drop).map_err(failed)
    }

    fn receipts(&self) -> std::sync::MutexGuard<'_, AppendReceipts> {
        // Each step leaves the receipts whole: a poisoned lock still holds good ones.
        self.receipts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this node says as a voter now (monotonic `now_ms`): its vote, and the last
    /// leader before it.
    pub fn voter_report(&self, now_ms: u64) -> Option<VoterReport> {
        // The vote first: a receipt recorded after it can only be for this vote or a later one.
        let vote = crate::leadership::vote(&self.raft.metrics().borrow_watched());
        self.receipts().report(vote, now_ms)
    }

    /// Answer a peer's message (already checked to come from the node it speaks for), at
    /// monotonic `now_ms`; the reply as JSON.
    pub async fn handle(&self, message: RaftMessage, now_ms: u64) -> Result<Vec<u8>, serde_json::Error> {
        // Recorded before Raft takes it, so the voter report never misses an acknowledged one.
        if message.carries_entries() {
            self.receipts().took(message.claimant(), now_ms);
        }
        match message.0 {
            Incoming::Append(r) => serde_json::to_vec(&self.raft.append_entries(r).await),
            Incoming::Vote(r) => serde_json::to_vec(&self.raft.vote(r).await),
            Incoming::PreVote(r) => serde_json::to_vec(&self.raft.pre_vote(r).await),
            Incoming::Snapshot(vote, snapshot) => serde_json::to_vec(
                &self.raft.install_full_snapshot(vote, snapshot).await.map_err(RaftError::<TypeConfig>::Fatal),
            ),
            Incoming::TransferLeader(r) => {
                serde_json::to_vec(&self.raft.handle_transfer_leader(r).await.map_err(RaftError::<TypeConfig>::Fatal))
            }
        }
    }

    /// Resolves with the reason once Raft stopped on this node on an error (a write the
    /// database refused); never if it runs on or stops for a shutdown.
    pub async fn stopped_by_error(&self) -> String {
        let mut watch = self.raft.metrics();
        loop {
            let reason = match &watch.borrow_watched().running_state {
                Err(Fatal::StorageError(e)) => Some(format!("the cluster database cannot be written: {e}")),
                Err(Fatal::Panicked) => Some("Raft stopped on an internal error".to_string()),
                Err(Fatal::Stopped) | Ok(()) => None,
            };
            if let Some(reason) = reason {
                return reason;
            }
            if watch.changed().await.is_err() {
                // Raft is gone: the agent is shutting down.
                std::future::pending::<()>().await;
            }
        }
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::debug!("Raft shutdown: {e}");
        }
    }
}
