//! The cluster as a whole: `halo status`, `halo node`, `halo cluster show|set|rotate-*`.

use halo_core::capacity::Capacity;
use halo_core::state::{DiskSpace, NetworkState, NodeState};
use halo_core::timing::RaftTiming;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::roles::RoleView;
use crate::validation::ValidationSummaryView;

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
    pub data_disk_low: Option<DiskSpace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkView {
    pub index: usize,
    pub address: String,
    pub state: NetworkState,
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
    pub raft: RaftTiming,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertiesRequest {
    pub properties: Vec<(String, String)>,
}

/// Where a CA rotation stands (`halo cluster rotate-ca`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaRotationView {
    /// `trusting` or `issuing` while one is under way; none once done (or never started).
    pub stage: Option<halo_core::ca_rotation::CaStage>,
    /// SHA-256 of the CA being rotated in, else of the cluster's CA.
    pub ca_sha256: String,
    /// What the rotation's next step waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The CA certificates every node trusts now (PEM): what clients should trust.
    pub trust_pem: String,
}

/// Starting a CA or heartbeat key rotation takes an empty JSON object: a stray POST without
/// one rotates nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {}
