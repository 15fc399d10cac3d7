//! Validation: the report `halo validate` prints, its summary in `halo status`, and the
//! probes of the survey behind it. One surveyor (the node asked to validate, or the command
//! line before a cluster exists) sends [`ProbeRequest`]s to every node and puts the answers
//! together into a [`Survey`] for `halo_core::validation` to judge.
//!
//! Probes change nothing the cluster or its users own: they read facts, open TCP connections,
//! and write, read, lock and remove test files of their own under [`TEST_DIR`] in each shared
//! storage path.

use halo_core::validation::survey::{NodeFacts, Reach, StorageError};
use halo_core::validation::{self, Check, Outcome, ValidationRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use halo_core::validation::Survey;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidationView {
    pub cluster: String,
    /// Wall-clock milliseconds when the report was made.
    pub generated_at_ms: u64,
    /// The worst outcome of all checks.
    pub result: Outcome,
    pub checks: Vec<Check>,
    /// The facts the checks were judged on: per node, its inventory, clock and connections;
    /// per shared storage path, what each node could do there.
    #[serde(default)]
    pub survey: Survey,
}

impl ValidationView {
    pub fn new(cluster: String, generated_at_ms: u64, checks: Vec<Check>, survey: Survey) -> Self {
        Self { cluster, generated_at_ms, result: validation::worst(&checks), checks, survey }
    }
}

/// The latest periodic validation in short: `halo validate` gives the whole report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ValidationSummaryView {
    pub result: Outcome,
    /// Wall-clock milliseconds when it ran.
    pub at_ms: u64,
    /// The node that ran it.
    pub by: String,
    /// Ids of the checks that failed, and of those that warned.
    pub failed: Vec<String>,
    pub warnings: Vec<String>,
}

impl ValidationSummaryView {
    pub fn of(record: &ValidationRecord) -> Self {
        Self {
            result: record.result,
            at_ms: record.at_ms,
            by: record.by.clone(),
            failed: record.ids(Outcome::Fail),
            warnings: record.ids(Outcome::Warning),
        }
    }

    /// "warning (inventory.kvm, network.redundancy)": the result and the checks that made it.
    pub fn summary(&self) -> String {
        validation::summary(self.result, &self.failed, &self.warnings)
    }
}

/// The directory, in each shared storage path, that holds the test's files.
pub const TEST_DIR: &str = ".halo-validate";

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReachTarget {
    /// 1 for the first network.
    pub network: usize,
    pub node: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
