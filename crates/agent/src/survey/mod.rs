//! The validation survey: the facts `halo validate` judges that only the nodes themselves can
//! find out. One surveyor (the node asked to validate, or the CLI before a cluster exists)
//! sends [`ProbeRequest`]s to every node; each node answers from [`local`]; [`run`] puts the
//! answers together into a [`Survey`] for `halo_core::validation` to judge.
//!
//! Probes change nothing the cluster or its users own: they read facts, open TCP connections,
//! and write, read, lock and remove test files of their own under `.halo-validate/` in each
//! shared storage path.

pub mod local;
pub mod run;

use halo_core::validation::survey::{NodeFacts, Reach, StorageError};
use serde::{Deserialize, Serialize};

pub use halo_core::validation::Survey;
pub use run::{Plan, Target, Transport, survey};

/// The directory, in each shared storage path, that holds the test's files.
pub const TEST_DIR: &str = ".halo-validate";

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRequest {
    /// This node's facts; `ocf` and `fence` name the agents to look for, `files` the VM files
    /// that must be visible.
    Facts {
        ocf: Vec<String>,
        fence: Vec<String>,
        #[serde(default)]
        files: Vec<String>,
    },
    /// Open TCP connections to each target from this node's own address on the same network.
    Reach {
        targets: Vec<ReachTarget>,
        attempts: u32,
    },
    /// Write random content of the node's own to `path/.halo-validate/file` and sync it (the
    /// surveyor never chooses what a node writes).
    Write {
        path: String,
        file: String,
    },
    /// Read `path/.halo-validate/file` back; answers its SHA-256.
    Read {
        path: String,
        file: String,
    },
    /// Remove `path/.halo-validate/file` (and the directory once it is empty).
    Remove {
        path: String,
        file: String,
    },
    /// Take an exclusive lock on `path/.halo-validate/file` without waiting, and hold it for at
    /// most `hold_ms` (or until `Unlock`).
    Lock {
        path: String,
        file: String,
        hold_ms: u64,
    },
    Unlock {
        path: String,
        file: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReachTarget {
    /// 1 for the first network.
    pub network: usize,
    pub node: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeReply {
    Facts(Box<NodeFacts>),
    Reach(Vec<Reach>),
    /// What was written (its SHA-256), how long writing and syncing took, the space left.
    Written {
        sha256: String,
        write_us: u64,
        free_mb: u64,
    },
    Read {
        sha256: String,
    },
    Locked {
        granted: bool,
    },
    Done,
    /// A storage step failed; the reply says why, classified.
    Failed(StorageError),
}
