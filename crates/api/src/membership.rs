//! Forming the cluster and joining it: bootstrap, join tokens and admission.

use halo_core::capacity::Capacity;
use halo_core::timing::{Profile, RaftTiming};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterRequest {
    pub name: String,
    /// The cluster's timing profile, and with it its Raft timing (fixed from then on);
    /// default when absent. Sent only when given, so an older agent still takes the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
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

/// `halo cluster token`: a join token valid this long.
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
    pub raft: Option<RaftTiming>,
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
    pub raft: RaftTiming,
    /// Serials of the certificates the cluster revoked, which the new node refuses from its
    /// first handshake on.
    #[serde(default)]
    pub revoked: Vec<String>,
}
