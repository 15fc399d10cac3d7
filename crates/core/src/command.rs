//! Every change to the cluster database is one of these commands, committed through Raft.
//! HTTP handlers and the manager only build commands; [`crate::state::ClusterState::apply`]
//! is the one place that interprets them.

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::state::{ClusterInfo, ClusterSettings, NetworkState, NodeRecord, NodeState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The first entry of a new cluster, written by the node that bootstraps it.
    CreateCluster {
        cluster: ClusterInfo,
        first_node: NodeRecord,
        settings: ClusterSettings,
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
    },
    /// Node and network states as judged by the leader's failure detector.
    SetNodeStates {
        now_ms: u64,
        updates: Vec<NodeStateUpdate>,
    },
    RemoveNode {
        node: NodeId,
    },
    /// Validated all together: one bad key rejects the whole command.
    SetProperties {
        properties: Vec<(String, String)>,
    },
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
    #[error("no node with id {0}")]
    UnknownNodeId(NodeId),
    #[error("invalid property '{key}': {reason}")]
    InvalidProperty { key: String, reason: String },
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::CreateCluster { cluster, .. } => write!(f, "create cluster {}", cluster.name),
            Command::IssueJoinToken { id, .. } => write!(f, "issue join token {id}"),
            Command::AdmitNode { node, .. } => write!(f, "admit node {}", node.name),
            Command::SetNodeStates { updates, .. } => write!(f, "set {} node state(s)", updates.len()),
            Command::RemoveNode { node } => write!(f, "remove node {node}"),
            Command::SetProperties { properties } => write!(f, "set {} propert(ies)", properties.len()),
        }
    }
}
