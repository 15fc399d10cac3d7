//! The cluster database: Raft (openraft) with its log, vote and state machine in one redb file.
//!
//! Everything openraft-specific lives in this crate, behind halo's own types: [`Consensus`]
//! (Raft on this node), [`rpc`] (its messages between nodes), the log and the state machine.
//! No openraft type appears in this crate's interface, so an openraft upgrade touches one
//! place. Every write that Raft relies on for safety
//! (log append, vote) is committed with fsync before it is acknowledged.

mod consensus;
mod db;
mod leadership;
mod log;
mod machine;
pub mod rpc;
pub mod wire;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use consensus::{Consensus, ConsensusError, RaftStatus};
pub use db::{Database, StoreError};
pub use log::LogStore;
pub use machine::{StateMachine, StateReader};

/// Where to reach a node, as recorded in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    pub api: String,
    /// `host:port` per heartbeat network; peer RPC uses the same addresses over TCP.
    pub networks: Vec<String>,
}

impl PeerNode {
    /// Where the cluster database says a node is.
    pub fn of(record: &halo_core::state::NodeRecord) -> Self {
        Self {
            name: record.name.clone(),
            api: record.api.clone(),
            networks: record.networks.iter().map(|n| n.address.clone()).collect(),
        }
    }
}

openraft::declare_raft_types!(
    pub(crate) TypeConfig:
        D = halo_core::command::Command,
        R = halo_core::command::CommandResult,
        NodeId = u64,
        Node = PeerNode,
);

pub(crate) type Raft = openraft::Raft<TypeConfig, StateMachine>;
pub(crate) type SnapshotData = Cursor<Vec<u8>>;
