//! The JSON shapes of the REST API, shared by the agent (server) and the CLI (client).
//! Field names here are the stable `--json` contract: extend, never rename.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::capacity::Capacity;
use crate::migration::{MigrationResult, MoveMode};
use crate::role::{Decision, Desired, Priority, RoleRecord, RoleSpec, RoleState};
use crate::state::{ClusterState, NetworkState, NodeState};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub cluster: String,
    /// Name of the current leader, if one is known.
    pub leader: Option<String>,
    /// Whether the cluster can commit writes right now.
    pub quorum: bool,
    pub term: u64,
    pub voters: usize,
    pub nodes: Vec<NodeView>,
    pub roles: Vec<RoleView>,
    /// The node that answered.
    pub answered_by: String,
    /// The answering node's copy of the cluster database.
    #[serde(default)]
    pub database: DatabaseView,
    /// The latest periodic validation; none until the leader has run one.
    #[serde(default)]
    pub validation: Option<ValidationSummaryView>,
}

/// The latest periodic validation in short: `halo validate` gives the whole report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidationSummaryView {
    pub result: crate::validation::Outcome,
    /// Wall-clock milliseconds when it ran.
    pub at_ms: u64,
    /// The node that ran it.
    pub by: String,
    /// Ids of the checks that failed, and of those that warned.
    pub failed: Vec<String>,
    pub warnings: Vec<String>,
}

impl ValidationSummaryView {
    pub fn of(record: &crate::validation::ValidationRecord) -> Self {
        use crate::validation::Outcome;
        let ids = |o: Outcome| record.checks.iter().filter(|c| c.outcome == o).map(|c| c.id.clone()).collect();
        Self {
            result: record.result,
            at_ms: record.at_ms,
            by: record.by.clone(),
            failed: ids(Outcome::Fail),
            warnings: ids(Outcome::Warning),
        }
    }

    /// "warning (inventory.kvm, network.redundancy)": the result and the checks that made it.
    pub fn summary(&self) -> String {
        let word = crate::validation::outcome_word(self.result);
        let worst = match self.result {
            crate::validation::Outcome::Fail => &self.failed,
            crate::validation::Outcome::Warning => &self.warnings,
            _ => return word.to_string(),
        };
        if worst.is_empty() { word.to_string() } else { format!("{word} ({})", worst.join(", ")) }
    }
}

/// Where one node's copy of the cluster database stands: what it applied, its latest snapshot,
/// and how far its log was compacted (entries up to `purged_index` live only in the snapshot).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DatabaseView {
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Size of this node's latest snapshot: about the size of the whole cluster state.
    #[serde(default)]
    pub snapshot_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub name: String,
    pub id: u64,
    pub state: NodeState,
    pub api: String,
    pub voter: bool,
    pub witness: bool,
    pub leader: bool,
    pub networks: Vec<NetworkView>,
    /// Wall-clock milliseconds since the UNIX epoch when the node entered its state.
    pub state_since_ms: u64,
    /// What the node offers to roles (none: not limited), and what its roles take of it.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    #[serde(default)]
    pub used: Capacity,
    /// Set while the node is being fenced because it could not stop a role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_request: Option<String>,
    /// When the node's newest certificate expires (Unix ms); it renews it before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires_ms: Option<u64>,
    /// Set while the node's data disk is nearly full: what is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disk_low: Option<crate::state::DiskSpace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkView {
    pub index: usize,
    pub address: String,
    pub state: NetworkState,
}

/// A role at a glance: `halo role list`, and `roles[]` of `halo status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleView {
    pub name: String,
    pub state: RoleState,
    pub owner: Option<String>,
    #[serde(default)]
    pub generation: u64,
    /// Why the role is in its state, in plain words.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub desired: Option<Desired>,
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// One role in full: `halo role show` and `halo role why`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleDetailView {
    #[serde(flatten)]
    pub role: RoleView,
    /// A previous owner that has not confirmed it stopped the role yet.
    pub releasing: Option<String>,
    /// The role as configured (the same shape `halo apply` takes).
    #[schema(value_type = Object)]
    pub spec: RoleSpec,
    /// Recent decisions, oldest first, each with its reasons.
    pub decisions: Vec<Decision>,
    /// A live or quick migration under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationView>,
    /// The last migration and how it went (times in ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration: Option<MigrationResult>,
    /// Failovers and migrations since the role was created.
    #[serde(default)]
    pub failovers: u64,
    #[serde(default)]
    pub migrations: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MigrationView {
    pub id: u64,
    pub mode: MoveMode,
    pub to: String,
    pub started_ms: u64,
    /// Whether the target is ready to receive (live).
    pub target_ready: bool,
}

impl RoleView {
    pub fn of(state: &ClusterState, record: &RoleRecord) -> Self {
        Self {
            name: record.spec.name.clone(),
            state: record.state,
            owner: record.owner.map(|id| node_name(state, id)),
            generation: record.generation,
            detail: record.detail.clone(),
            desired: Some(record.spec.desired),
            priority: Some(record.spec.priority),
        }
    }
}

impl RoleDetailView {
    pub fn of(state: &ClusterState, record: &RoleRecord) -> Self {
        Self {
            role: RoleView::of(state, record),
            releasing: record.releasing.map(|id| node_name(state, id)),
            migration: record.migration.as_ref().map(|m| MigrationView {
                id: m.id,
                mode: m.mode,
                to: node_name(state, m.to),
                started_ms: m.started_ms,
                target_ready: m.uri.is_some(),
            }),
            last_migration: record.last_migration.clone(),
            spec: record.spec.redacted(),
            decisions: record.decisions.clone(),
            failovers: record.failovers,
            migrations: record.migrations,
        }
    }
}

fn node_name(state: &ClusterState, id: crate::NodeId) -> String {
    state.nodes.get(&id).map_or_else(|| format!("node {id}"), |n| n.name.clone())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterRequest {
    pub name: String,
    /// The cluster's timing profile, and with it its Raft timing (fixed from then on);
    /// default when absent. Sent only when given, so an older agent still takes the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::timing::Profile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateClusterResponse {
    pub cluster: String,
    pub node: String,
    /// The admin bearer token. Shown once; only its hash is stored.
    pub admin_token: String,
    pub ca_cert_pem: String,
    pub endpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Seconds the token stays valid.
    pub ttl_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub expires_at_ms: u64,
}

/// `halo token create NAME --role R [--ttl D]`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    pub name: String,
    pub role: crate::access::AccessRole,
    /// Seconds it stays valid; none: until revoked.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A named API token as the API shows it: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenView {
    pub name: String,
    pub role: crate::access::AccessRole,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// A new token, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiTokenCreated {
    #[serde(flatten)]
    pub view: ApiTokenView,
    pub token: String,
}

/// Where a CA rotation stands (`halo cluster rotate-ca`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaRotationView {
    /// `trusting` or `issuing` while one is under way; none once done (or never started).
    pub stage: Option<crate::ca_rotation::CaStage>,
    /// SHA-256 of the CA being rotated in, else of the cluster's CA.
    pub ca_sha256: String,
    /// What the rotation's next step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The CA certificates every node trusts now (PEM): what clients should trust.
    pub trust_pem: String,
}

/// The new admin token, shown this once; the old one no longer works.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminTokenRotated {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinClusterRequest {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinClusterResponse {
    pub cluster: String,
    pub node: String,
    pub id: u64,
    pub voter: bool,
    pub endpoint: String,
}

/// Sent by a joining agent to a member's API, authenticated by the join token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdmissionRequest {
    pub token_id: String,
    pub token_secret: String,
    pub name: String,
    pub api: String,
    pub networks: Vec<String>,
    pub witness: bool,
    /// What the node offers to roles.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// PEM certificate signing request for the node's key; the key never leaves the node.
    pub csr_pem: String,
    /// The Raft timing the joining agent was configured with, if any: it must be the
    /// cluster's (see `timing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<crate::timing::RaftTiming>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdmissionResponse {
    pub id: u64,
    pub voter: bool,
    pub cluster: String,
    pub cluster_id: String,
    pub cert_pem: String,
    pub ca_cert_pem: String,
    /// The cluster's Raft timing, which the new node runs.
    #[serde(default)]
    pub raft: crate::timing::RaftTiming,
    /// Serials of the certificates the cluster revoked, which the new node refuses from its
    /// first handshake on.
    #[serde(default)]
    pub revoked: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertiesRequest {
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub name: String,
    pub id: String,
    pub created_at_ms: u64,
    pub max_voters: usize,
    pub heartbeat_interval_ms: u64,
    pub node_timeout_ms: u64,
    pub properties: std::collections::BTreeMap<String, String>,
    /// Lease timing and Raft's, fixed for the whole cluster.
    #[serde(default)]
    pub lease_ms: u64,
    #[serde(default)]
    pub lease_margin_ms: u64,
    #[serde(default)]
    pub raft: crate::timing::RaftTiming,
}
