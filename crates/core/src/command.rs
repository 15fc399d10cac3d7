//! Every change to the cluster database is one of these commands, committed through Raft.
//! HTTP handlers and the manager only build commands; [`crate::state::ClusterState::apply`]
//! is the one place that interprets them.

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::migration::{Migration, MigrationReport, MigrationResult, MoveMode};
use crate::role::{Decision, Desired, RoleRecord, RoleSpec, RoleState};
use crate::settings::ClusterSettings;
use crate::state::{CertificateRecord, ClusterInfo, NetworkState, NodeRecord, NodeState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The first entry of a new cluster, written by the node that bootstraps it.
    CreateCluster {
        // Boxed: the cluster's certificates would make every command as large as this one.
        cluster: Box<ClusterInfo>,
        first_node: NodeRecord,
        settings: ClusterSettings,
        /// The first node's certificate (absent in entries from before certificates were
        /// recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_certificate: Option<CertificateRecord>,
    },
    IssueJoinToken {
        id: String,
        secret_sha256: String,
        expires_at_ms: u64,
    },
    /// Admit a node presenting a join token. `now_ms` is the proposing leader's wall clock.
    AdmitNode {
        token_id: String,
        token_secret_sha256: String,
        now_ms: u64,
        node: NodeRecord,
        /// The certificate the leader signed for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate: Option<CertificateRecord>,
    },
    /// Node and network states as judged by the leader's failure detector.
    SetNodeStates {
        now_ms: u64,
        updates: Vec<NodeStateUpdate>,
    },
    /// Remove a node: its certificates are revoked, and the heartbeat key it knew is
    /// replaced by `heartbeat_key_hex` (random, from the proposing leader).
    RemoveNode {
        node: NodeId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_key_hex: Option<String>,
        #[serde(default)]
        now_ms: u64,
    },
    /// A named API token (`access`); its secret's hash only.
    CreateApiToken {
        name: String,
        token: crate::access::ApiToken,
    },
    RevokeApiToken {
        name: String,
    },
    /// A new admin token replaces the old one, which stops working at once.
    RotateAdminToken {
        secret_sha256: String,
    },
    /// `inner`, made through the API by the token named `by` (which events then name).
    Attributed {
        by: String,
        inner: Box<Command>,
    },
    /// A node's new certificate (it renews its own before the old one expires).
    RenewCertificate {
        node: NodeId,
        certificate: CertificateRecord,
        now_ms: u64,
    },
    /// Validated all together: one bad key rejects the whole command.
    SetProperties {
        properties: Vec<(String, String)>,
    },
    CreateRole {
        spec: RoleSpec,
        now_ms: u64,
    },
    DeleteRole {
        role: String,
    },
    /// `halo apply`: create and update roles, all together or not at all.
    ApplyRoles {
        specs: Vec<RoleSpec>,
        now_ms: u64,
    },
    /// `halo role start|stop`: what the admin wants; the manager makes it so.
    SetRoleDesired {
        role: String,
        desired: Desired,
        now_ms: u64,
    },
    /// `halo role move`: a planned move, carried out by the manager.
    MoveRole {
        role: String,
        to: Option<NodeId>,
        /// None: live for a VM role, cold for any other.
        #[serde(default)]
        mode: Option<MoveMode>,
    },
    /// `halo node pause` (with `--drain`: move its roles off).
    PauseNode {
        node: NodeId,
        drain: bool,
        now_ms: u64,
    },
    /// `halo node resume` (with `--failback`: bring back the roles that prefer it).
    ResumeNode {
        node: NodeId,
        failback: bool,
        now_ms: u64,
    },
    /// `halo node fence N`: the device that powers N off, or none.
    SetFenceDevice {
        node: NodeId,
        device: Option<crate::state::FenceDevice>,
    },
    /// What a node offers to roles, as its agent declares it at start.
    SetNodeCapacity {
        node: NodeId,
        capacity: Option<crate::capacity::Capacity>,
    },
    /// `halo cluster rotate-ca`: a new CA, first trusted beside the current one
    /// (`ca_rotation`).
    StartCaRotation {
        cert_pem: String,
        key_pem: String,
        ca_sha256: String,
        now_ms: u64,
    },
    /// A node trusts the CA being rotated in.
    AcknowledgeCa {
        node: NodeId,
        ca_sha256: String,
    },
    /// The leader takes the rotation's next step, its condition met (`ca_rotation::next_step`).
    AdvanceCaRotation,
    /// `halo cluster rotate-heartbeat-key`: a new key for heartbeat datagrams (the old one is
    /// heard for a while: `heartbeat::KeyRing`).
    RotateHeartbeatKey {
        heartbeat_key_hex: String,
    },
    /// A node's agent says its data disk is nearly full (`low`: how much is left), or has room
    /// again (none).
    ReportDataDisk {
        node: NodeId,
        low: Option<crate::state::DiskSpace>,
    },
    /// The node that could not stop a role was fenced and runs none of its roles any more.
    ClearFenceRequest {
        node: NodeId,
    },
    /// The report of a validation the leader ran.
    RecordValidation(Box<crate::validation::ValidationRecord>),
    /// A decision of the leader's manager about one role.
    DecideRole(RoleDecision),
    /// What a node's executor did with a role it was told to run or stop.
    ReportRole(RoleReport),
    /// How a migration goes, from its source or its target.
    ReportMigration(MigrationReport),
}

/// Everything the manager decided about a role, as the complete new runtime fields. Applies
/// only on top of the generation and admin revision it was computed from, so a deposed
/// leader's late decision, or one that crossed an admin's request, changes nothing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleDecision {
    pub role: String,
    pub expected_generation: u64,
    /// The admin requests it was computed after (`RoleRecord::revision`).
    #[serde(default)]
    pub expected_revision: u64,
    pub generation: u64,
    pub owner: Option<NodeId>,
    pub releasing: Option<NodeId>,
    pub state: RoleState,
    pub detail: String,
    pub failovers_ms: Vec<u64>,
    pub failed_on: Vec<NodeId>,
    pub decision: Option<Decision>,
    /// A smaller event worth keeping in the role's history (e.g. a releasing node was lost).
    pub note: Option<String>,
    #[serde(default)]
    pub note_kind: crate::role::DecisionKind,
    /// The pending move request was dealt with (carried out or found impossible).
    #[serde(default)]
    pub clear_move: bool,
    #[serde(default)]
    pub held: bool,
    #[serde(default)]
    pub waits_for: Vec<String>,
    /// The migration under way after this decision (begun, kept, or dropped).
    #[serde(default)]
    pub migration: Option<Migration>,
    /// A migration this decision ended without it completing.
    #[serde(default)]
    pub finished_migration: Option<Box<MigrationResult>>,
    pub now_ms: u64,
}

impl RoleDecision {
    pub fn from_record(role: &RoleRecord, now_ms: u64) -> Self {
        Self {
            role: role.spec.name.clone(),
            expected_generation: role.generation,
            expected_revision: role.revision,
            generation: role.generation,
            owner: role.owner,
            releasing: role.releasing,
            state: role.state,
            detail: role.detail.clone(),
            failovers_ms: role.failovers_ms.clone(),
            failed_on: role.failed_on.clone(),
            decision: None,
            note: None,
            note_kind: crate::role::DecisionKind::Other,
            clear_move: false,
            held: role.held,
            waits_for: role.waits_for.clone(),
            migration: role.migration.clone(),
            finished_migration: None,
            now_ms,
        }
    }

    /// A new placement: a new generation, and nothing left to wait for from the last one.
    pub fn bump(&mut self) {
        self.generation += 1;
        self.waits_for.clear();
    }

    pub fn set(&mut self, state: RoleState, detail: impl Into<String>) {
        self.state = state;
        self.detail = detail.into();
    }

    /// Whether committing this would change anything.
    pub fn changes(&self, role: &RoleRecord) -> bool {
        self.generation != role.generation
            || self.owner != role.owner
            || self.releasing != role.releasing
            || self.state != role.state
            || self.detail != role.detail
            || self.failovers_ms != role.failovers_ms
            || self.failed_on != role.failed_on
            || self.decision.is_some()
            || self.note.is_some()
            || self.clear_move
            || self.held != role.held
            || self.waits_for != role.waits_for
            || self.migration != role.migration
            || self.finished_migration.is_some()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleReportOutcome {
    /// Every resource started and is healthy.
    Online,
    /// The node runs nothing of the role.
    Stopped,
    /// The role could not be kept running here (restart policy exhausted, start failed); the
    /// node stopped what it could.
    Failed,
    /// A resource of the role could not be stopped here (its stop failed and it still runs):
    /// only fencing the node makes it safe to run the role elsewhere.
    StopFailed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleReport {
    pub role: String,
    pub node: NodeId,
    pub generation: u64,
    pub outcome: RoleReportOutcome,
    pub detail: String,
    pub now_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStateUpdate {
    pub node: NodeId,
    pub state: NodeState,
    pub networks: Vec<NetworkState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum CommandResult {
    #[default]
    Done,
    NodeAdmitted {
        id: NodeId,
        voter: bool,
    },
    Applied(Vec<crate::apply::Change>),
    Rejected(Rejection),
}

/// Why a command changed nothing. The text is shown to the admin as is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    #[error("this agent already belongs to cluster '{0}'")]
    AlreadyCreated(String),
    #[error("no cluster has been created yet")]
    NoCluster,
    #[error("join token is not valid for this cluster")]
    UnknownToken,
    #[error("join token has expired; issue a new one with `halo cluster token`")]
    TokenExpired,
    #[error("join token was already used by node '{0}'; a token admits one node")]
    TokenUsed(String),
    #[error("a node named '{0}' is already a member of this cluster")]
    DuplicateNodeName(String),
    #[error("address {address} is already used by node '{node}'")]
    AddressInUse { address: String, node: String },
    #[error("invalid node name '{0}': use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit")]
    InvalidNodeName(String),
    #[error("invalid node '{node}': {reason}")]
    InvalidNode { node: String, reason: String },
    #[error("no node with id {0}")]
    UnknownNodeId(NodeId),
    #[error("invalid property '{key}': {reason}")]
    InvalidProperty { key: String, reason: String },
    #[error("invalid role '{role}': {reason}")]
    InvalidRole { role: String, reason: String },
    #[error("a role named '{0}' already exists")]
    DuplicateRole(String),
    #[error("no role named '{0}'")]
    UnknownRole(String),
    #[error("role '{role}' still runs on {node}; stop it first (`halo role stop {role}`)")]
    RoleRunning { role: String, node: String },
    #[error("decision for role '{0}' was made on an older generation")]
    StaleDecision(String),
    #[error("report for role '{0}' is about an older generation or another owner")]
    StaleReport(String),
    #[error("node '{0}' still owns roles; move or stop them first")]
    NodeOwnsRoles(String),
    #[error("role '{0}' is not running anywhere; start it instead")]
    RoleNotRunning(String),
    #[error("role '{role}' cannot move to {node}: {reason}")]
    CannotMove { role: String, node: String, reason: String },
    #[error("node '{0}' is a witness and runs no roles")]
    WitnessRunsNoRoles(String),
    #[error("invalid token name '{0}': use 1-63 letters, digits, '-', '_' or '.', and not 'admin'")]
    InvalidTokenName(String),
    #[error("an API token named '{0}' already exists")]
    DuplicateToken(String),
    #[error("no API token named '{0}'")]
    UnknownApiToken(String),
    #[error("invalid fence device for node '{node}': {reason}")]
    InvalidFenceDevice { node: String, reason: String },
    #[error("CA rotation: {0}")]
    CaRotation(String),
}

impl Command {
    /// The wall-clock time the proposer stamped on the command, if it carries one.
    pub fn timestamp_ms(&self) -> Option<u64> {
        match self {
            Command::AdmitNode { now_ms, .. }
            | Command::SetNodeStates { now_ms, .. }
            | Command::CreateRole { now_ms, .. }
            | Command::ApplyRoles { now_ms, .. }
            | Command::SetRoleDesired { now_ms, .. }
            | Command::PauseNode { now_ms, .. }
            | Command::ResumeNode { now_ms, .. }
            | Command::RenewCertificate { now_ms, .. }
            | Command::StartCaRotation { now_ms, .. }
            | Command::RemoveNode { now_ms, .. } => Some(*now_ms),
            Command::DecideRole(d) => Some(d.now_ms),
            Command::ReportRole(r) => Some(r.now_ms),
            Command::RecordValidation(r) => Some(r.at_ms),
            Command::ReportMigration(r) => Some(r.now_ms),
            Command::CreateCluster { cluster, .. } => Some(cluster.created_at_ms),
            Command::CreateApiToken { token, .. } => Some(token.created_at_ms),
            Command::Attributed { inner, .. } => inner.timestamp_ms(),
            _ => None,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::CreateCluster { cluster, .. } => write!(f, "create cluster {}", cluster.name),
            Command::IssueJoinToken { id, .. } => write!(f, "issue join token {id}"),
            Command::AdmitNode { node, .. } => write!(f, "admit node {}", node.name),
            Command::SetNodeStates { updates, .. } => write!(f, "set {} node state(s)", updates.len()),
            Command::RemoveNode { node, .. } => write!(f, "remove node {node}"),
            Command::RenewCertificate { node, .. } => write!(f, "renew the certificate of node {node}"),
            Command::CreateApiToken { name, token } => write!(f, "create {} token {name}", token.role),
            Command::RevokeApiToken { name } => write!(f, "revoke token {name}"),
            Command::RotateAdminToken { .. } => write!(f, "rotate the admin token"),
            Command::Attributed { by, inner } => write!(f, "{inner} (by {by})"),
            Command::SetProperties { properties } => write!(f, "set {} propert(ies)", properties.len()),
            Command::CreateRole { spec, .. } => write!(f, "create role {}", spec.name),
            Command::DeleteRole { role } => write!(f, "delete role {role}"),
            Command::ApplyRoles { specs, .. } => write!(f, "apply {} role(s)", specs.len()),
            Command::SetRoleDesired { role, desired, .. } => write!(f, "set role {role} desired {desired:?}"),
            Command::MoveRole { role, to, mode } => write!(f, "move role {role} to {to:?} ({mode:?})"),
            Command::PauseNode { node, drain, .. } => write!(f, "pause node {node} (drain {drain})"),
            Command::ResumeNode { node, failback, .. } => write!(f, "resume node {node} (failback {failback})"),
            Command::SetFenceDevice { node, .. } => write!(f, "set fence device of node {node}"),
            Command::SetNodeCapacity { node, .. } => write!(f, "set capacity of node {node}"),
            Command::ClearFenceRequest { node } => write!(f, "clear fence request of node {node}"),
            Command::ReportDataDisk { node, .. } => write!(f, "report the data disk of node {node}"),
            Command::StartCaRotation { .. } => write!(f, "start a CA rotation"),
            Command::AcknowledgeCa { node, .. } => write!(f, "node {node} trusts the new CA"),
            Command::AdvanceCaRotation => write!(f, "advance the CA rotation"),
            Command::RotateHeartbeatKey { .. } => write!(f, "rotate the heartbeat key"),
            Command::RecordValidation(r) => write!(f, "record validation by {} ({:?})", r.by, r.result),
            Command::DecideRole(d) => write!(f, "decide role {} generation {}", d.role, d.generation),
            Command::ReportRole(r) => write!(f, "report role {} {:?} from node {}", r.role, r.outcome, r.node),
            Command::ReportMigration(r) => {
                write!(f, "report migration {} of role {} from node {}", r.id, r.role, r.node)
            }
        }
    }
}
