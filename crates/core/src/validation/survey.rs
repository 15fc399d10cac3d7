//! What the agents found out for one validation run: each node's facts about itself, how it
//! reaches every other node on every network, and what happened when the nodes wrote, read
//! and locked files on the shared storage. Plain data, gathered by one node (or by the CLI
//! before a cluster exists) and judged by the inventory, network and storage checks.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Survey {
    pub nodes: Vec<NodeSurvey>,
    /// One entry per shared storage path tested.
    #[serde(default)]
    pub storage: Vec<StorageSurvey>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeSurvey {
    pub name: String,
    pub witness: bool,
    /// The node's declared heartbeat networks (`host:port`), network 1 first.
    pub networks: Vec<String>,
    /// What the node said about itself; none when it could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<NodeFacts>,
    /// Why there are no facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cluster knows the node is down, so it was not asked.
    #[serde(default)]
    pub down: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockReading>,
    /// This node's attempts to reach the other nodes, per network.
    #[serde(default)]
    pub reach: Vec<Reach>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeFacts {
    /// The node as it describes itself (its name, whether it is a witness, its networks).
    pub name: String,
    pub witness: bool,
    pub networks: Vec<String>,
    pub version: String,
    /// The distribution's name, e.g. "Debian GNU/Linux 12 (bookworm)".
    pub os: String,
    pub kernel: String,
    pub arch: String,
    /// `qemu-system-x86_64 --version`, first line; none when QEMU is not installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<String>,
    /// KVM really runs guests here (not only that /dev/kvm exists).
    pub kvm: bool,
    pub ocf_root: String,
    /// The OCF resource agents directory exists.
    pub ocf_installed: bool,
    /// Of the OCF agents asked about (`ocf:PROVIDER:AGENT`), those not installed here.
    #[serde(default)]
    pub ocf_missing: Vec<String>,
    /// Of the fence agents asked about, those not found on this node's PATH.
    #[serde(default)]
    pub fence_missing: Vec<String>,
    /// Of the files asked about (VM disks, kernels), those this node cannot see.
    #[serde(default)]
    pub files_missing: Vec<String>,
    pub memory_total_mb: u64,
    pub memory_available_mb: u64,
    pub data_dir: String,
    /// Free space for the agent's data directory.
    pub disk_free_mb: u64,
    /// Per declared network, the interface that holds its address (none if no interface does).
    #[serde(default)]
    pub interfaces: Vec<Option<String>>,
    /// The node's wall clock when it answered.
    pub wall_ms: u64,
    /// The watchdog device this node's fence guard feeds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchdog: Option<String>,
    /// A watchdog device exists here (`/dev/watchdog`), used or not.
    #[serde(default)]
    pub watchdog_present: bool,
}

/// How far a node's wall clock is from the surveying node's, measured across one request:
/// the answer's timestamp against the midpoint of sending and receiving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClockReading {
    pub offset_ms: i64,
    /// Half the request's round trip: the offset is known to within this.
    pub uncertainty_ms: u64,
}

impl ClockReading {
    pub fn measure(sent_ms: u64, answered_ms: u64, received_ms: u64) -> Self {
        let mid = (sent_ms + received_ms) / 2;
        Self { offset_ms: answered_ms as i64 - mid as i64, uncertainty_ms: received_ms.saturating_sub(sent_ms) / 2 }
    }

    /// The skew that is certain, whatever the request's delay.
    pub fn certain_skew_ms(&self) -> u64 {
        self.offset_ms.unsigned_abs().saturating_sub(self.uncertainty_ms)
    }
}

/// TCP connections from one node's address on a network to another node's address on the same
/// network (the address that carries its heartbeats and peer RPC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reach {
    /// 1 for the first declared network.
    pub network: usize,
    pub to: String,
    pub from_address: String,
    pub to_address: String,
    pub attempts: u32,
    pub answered: u32,
    /// Median connection time of the answered attempts, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
    /// Why the last failed attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageSurvey {
    pub path: String,
    pub nodes: Vec<StorageOnNode>,
    /// None when no node could write (nothing to lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockTest>,
}

/// Why a storage step failed, classified so that the report can say what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageFault {
    /// The path does not exist or is not a directory: not mounted here.
    Missing,
    /// Mounted read-only, or writing is not permitted.
    ReadOnly,
    /// Anything else (I/O error, full, timeout).
    Io,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageError {
    pub fault: StorageFault,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StorageOnNode {
    pub node: String,
    /// Writing and syncing a small file took this long, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_error: Option<StorageError>,
    /// The node whose file this node read back, and whether it read exactly what was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_identical: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_error: Option<StorageError>,
}

/// One node holds an exclusive lock on a file in the shared path; every other node tries to
/// take it too (and must be refused), then one tries again after it is released.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LockTest {
    pub holder: String,
    pub refused: Vec<String>,
    /// Nodes that got the lock while the holder still had it: locking does not work across them.
    pub granted_while_held: Vec<String>,
    /// The node that tried after the release, and whether it got the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_release: Option<LockRetry>,
    /// Attempts that failed for another reason, as "node: why".
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LockRetry {
    pub node: String,
    pub granted: bool,
}
