//! The replicated cluster state: what every node agrees on through Raft.
//!
//! Only [`ClusterState::apply`] changes it, and `apply` is deterministic: any time it needs
//! ("is this token expired?") comes inside the command, stamped by the leader that proposed it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::command::{Command, CommandResult, NodeStateUpdate, Rejection, RoleReport, RoleReportOutcome};
use crate::lease::LeaseTiming;
use crate::migration::MoveMode;
use crate::role::{Decision, Desired, MoveRequest, RoleRecord, RoleState};
use crate::timing::{Profile, RaftTiming};

/// Upper bound on voters a cluster may be configured with (Raft gets slower, not safer, past it).
pub const MAX_VOTERS_LIMIT: usize = 7;

/// Most heartbeat networks a node may have (each costs a socket and a datagram per interval).
pub const MAX_NETWORKS: usize = 8;

/// Longest address (`HOST:PORT`) a node record may hold; a bracketed IPv6 address with a port
/// fits in 47 bytes.
pub const MAX_ADDRESS_LEN: usize = 64;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterState {
    /// Format version of this structure as persisted in snapshots.
    pub version: u32,
    pub cluster: Option<ClusterInfo>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// The next node id to hand out; ids are never reused (a reused id would confuse Raft).
    pub next_node_id: NodeId,
    pub join_tokens: BTreeMap<String, JoinTokenRecord>,
    pub settings: ClusterSettings,
    /// Free-form cluster properties (`label.*`, `description`).
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleRecord>,
    /// Per node: the fence device that can power it off (the fast path of recovery).
    #[serde(default)]
    pub fence_devices: BTreeMap<NodeId, FenceDevice>,
    /// The report of the leader's latest periodic validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation: Option<crate::validation::ValidationRecord>,
    /// Per node: the certificates the cluster CA issued it that have not expired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<NodeId, Vec<CertificateRecord>>,
    /// Named API tokens (`access`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api_tokens: BTreeMap<String, crate::access::ApiToken>,
    /// Certificates no node may use any more (a removed node's), by serial, until they expire.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revoked: BTreeMap<String, RevokedCertificate>,
}

/// A certificate the cluster CA issued to a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_after_ms: u64,
    /// SHA-256 of the CA that issued it, while a rotation has two (`ca_rotation`); empty: the
    /// cluster's CA.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// The node it was issued to.
    pub node: String,
    pub not_after_ms: u64,
    pub revoked_at_ms: u64,
}

pub use crate::fence::FenceDevice;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterInfo {
    pub name: String,
    /// Random id; heartbeats and tokens of another cluster carry a different one.
    pub id: String,
    pub created_at_ms: u64,
    /// The cluster CA. The key is replicated so that any leader can admit nodes.
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// SHA-256 (hex) of the admin bearer token; the token itself is never stored.
    pub admin_token_sha256: String,
    /// Shared key (hex) that authenticates heartbeat datagrams.
    pub heartbeat_key_hex: String,
    /// A new CA being rotated in (`ca_rotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotation: Option<crate::ca_rotation::CaRotation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterSettings {
    pub max_voters: usize,
    pub heartbeat_interval_ms: u64,
    /// Silence on every network after which the leader declares a node down.
    pub node_timeout_ms: u64,
    /// How long one lease grant lets a node run roles.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Added by the leader before it recovers a silent node's roles.
    #[serde(default = "default_lease_margin_ms")]
    pub lease_margin_ms: u64,
    /// Directories mounted identically on every node (NFS, CephFS, a SAN file system): VM
    /// disks must live there, and quick migration saves guest state there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_storage: Vec<String>,
    /// How many live migrations a drain runs at once, cluster-wide.
    #[serde(default = "default_parallel_migrations")]
    pub parallel_migrations: u32,
    /// How often the leader validates the cluster and records the report (0: never). It also
    /// validates when the set of nodes changes.
    #[serde(default = "default_validation_interval_ms")]
    pub validation_interval_ms: u64,
    /// Raft's timing, the same on every node, fixed when the cluster is created (see
    /// `timing`). A database from before it was recorded has Raft's defaults, which is what
    /// every agent then ran.
    #[serde(default)]
    pub raft: RaftTiming,
    /// How long a node certificate the cluster CA issues is valid; a node renews its own once
    /// two thirds of that have passed.
    #[serde(default = "default_certificate_lifetime_ms")]
    pub certificate_lifetime_ms: u64,
}

/// Bounds of `certificate_lifetime_ms`: long enough to renew in time, short enough to matter.
pub const CERTIFICATE_LIFETIME_MS: std::ops::RangeInclusive<u64> = 10_000..=3 * 365 * 24 * 3_600_000;

fn default_certificate_lifetime_ms() -> u64 {
    90 * 24 * 3_600_000
}

fn default_parallel_migrations() -> u32 {
    2
}

fn default_validation_interval_ms() -> u64 {
    3_600_000
}

fn default_lease_ms() -> u64 {
    Profile::Default.timing().lease_ms
}

fn default_lease_margin_ms() -> u64 {
    Profile::Default.timing().lease_margin_ms
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self::of(Profile::Default, RaftTiming::default())
    }
}

impl ClusterSettings {
    /// The settings of a new cluster with this timing.
    pub fn of(profile: Profile, raft: RaftTiming) -> Self {
        let t = profile.timing();
        Self {
            max_voters: 5,
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            node_timeout_ms: t.node_timeout_ms,
            lease_ms: t.lease_ms,
            lease_margin_ms: t.lease_margin_ms,
            shared_storage: Vec::new(),
            parallel_migrations: default_parallel_migrations(),
            validation_interval_ms: default_validation_interval_ms(),
            raft,
            certificate_lifetime_ms: default_certificate_lifetime_ms(),
        }
    }

    /// Lease timing, the grant window included: computed here and nowhere else.
    pub fn lease_timing(&self) -> LeaseTiming {
        LeaseTiming {
            lease_ms: self.lease_ms,
            margin_ms: self.lease_margin_ms,
            grant_window_ms: self.raft.grant_window_ms(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    /// `host:port` of the node's HTTPS API.
    pub api: String,
    pub networks: Vec<NetworkRecord>,
    pub state: NodeState,
    /// A witness votes but never runs roles.
    pub witness: bool,
    /// Whether the node is (or is being made) a Raft voter; otherwise a learner.
    pub voter: bool,
    pub joined_at_ms: u64,
    pub state_since_ms: u64,
    /// Paused with `--drain`: its roles move elsewhere.
    #[serde(default)]
    pub drain: bool,
    /// What the node offers to roles, as its agent declares it; none means unlimited.
    #[serde(default)]
    pub capacity: Option<crate::capacity::Capacity>,
    /// Why the node must be fenced (it could not stop a role), until its roles are recovered.
    #[serde(default)]
    pub fence_request: Option<String>,
    /// Set while the node's data disk is nearly full (its agent reports it, and when it has
    /// room again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_disk_low: Option<DiskSpace>,
}

/// Space on a file system, as its node saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DiskSpace {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl std::fmt::Display for DiskSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB free of {} MiB", self.free_bytes >> 20, self.total_bytes >> 20)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    /// `host:port`: UDP heartbeats and TCP peer RPC on the same address.
    pub address: String,
    pub state: NetworkState,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Up,
    Down,
    Paused,
    Joining,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkState {
    Up,
    /// Silent on this network while the node is heard on another.
    Degraded,
    /// The node is down: no network reaches it.
    Down,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinTokenRecord {
    pub secret_sha256: String,
    pub expires_at_ms: u64,
    /// Name of the node that used it: a token admits exactly one node.
    pub used_by: Option<String>,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Paused => "paused",
            NodeState::Joining => "joining",
        }
    }
}

impl NetworkState {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkState::Up => "up",
            NetworkState::Degraded => "degraded",
            NetworkState::Down => "down",
        }
    }
}

impl ClusterState {
    /// Whether `node` may be admitted with this join token at `now_ms`. The state machine's own
    /// rule, asked by the leader too before it signs or proposes anything: a refused join then
    /// costs no log entry.
    pub fn check_admission(
        &self,
        token_id: &str,
        token_secret_sha256: &str,
        now_ms: u64,
        node: &NodeRecord,
    ) -> Result<(), Rejection> {
        self.require_cluster()?;
        let token = self.join_tokens.get(token_id).ok_or(Rejection::UnknownToken)?;
        if token.secret_sha256 != token_secret_sha256 {
            return Err(Rejection::UnknownToken);
        }
        if token.expires_at_ms <= now_ms {
            return Err(Rejection::TokenExpired);
        }
        if let Some(by) = &token.used_by {
            return Err(Rejection::TokenUsed(by.clone()));
        }
        validate_node_name(&node.name)?;
        if node.networks.is_empty() || node.networks.len() > MAX_NETWORKS {
            return Err(Rejection::InvalidNode {
                node: node.name.clone(),
                reason: format!("{} heartbeat networks given; 1 to {MAX_NETWORKS} are supported", node.networks.len()),
            });
        }
        for address in std::iter::once(&node.api).chain(node.networks.iter().map(|n| &n.address)) {
            if address.len() > MAX_ADDRESS_LEN {
                return Err(Rejection::InvalidNode {
                    node: node.name.clone(),
                    reason: format!("an address of {} bytes (at most {MAX_ADDRESS_LEN})", address.len()),
                });
            }
        }
        if self.node_by_name(&node.name).is_some() {
            return Err(Rejection::DuplicateNodeName(node.name.clone()));
        }
        for network in &node.networks {
            if let Some(other) = self
                .nodes
                .values()
                .find(|n| n.networks.iter().any(|x| x.address == network.address) || n.api == network.address)
            {
                return Err(Rejection::AddressInUse { address: network.address.clone(), node: other.name.clone() });
            }
        }
        Ok(())
    }

    pub fn node_by_name(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.values().find(|n| n.name == name)
    }

    pub fn voter_count(&self) -> usize {
        self.nodes.values().filter(|n| n.voter).count()
    }

    /// Apply one committed command. Rejections leave the state untouched.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        match self.try_apply(command) {
            Ok(result) => result,
            Err(rejection) => CommandResult::Rejected(rejection),
        }
    }

    fn try_apply(&mut self, command: &Command) -> Result<CommandResult, Rejection> {
        match command {
            Command::CreateCluster { cluster, first_node, settings, first_certificate } => {
                if let Some(existing) = &self.cluster {
                    return Err(Rejection::AlreadyCreated(existing.name.clone()));
                }
                validate_settings(settings)?;
                self.version = crate::FORMAT_VERSION;
                self.cluster = Some((**cluster).clone());
                self.settings = settings.clone();
                self.next_node_id = first_node.id + 1;
                self.nodes.insert(first_node.id, first_node.clone());
                if let Some(certificate) = first_certificate {
                    self.certificates.insert(first_node.id, vec![certificate.clone()]);
                }
                Ok(CommandResult::Done)
            }
            Command::IssueJoinToken { id, secret_sha256, expires_at_ms } => {
                self.require_cluster()?;
                self.join_tokens.insert(
                    id.clone(),
                    JoinTokenRecord {
                        secret_sha256: secret_sha256.clone(),
                        expires_at_ms: *expires_at_ms,
                        used_by: None,
                    },
                );
                Ok(CommandResult::Done)
            }
            Command::AdmitNode { token_id, token_secret_sha256, now_ms, node, certificate } => {
                self.check_admission(token_id, token_secret_sha256, *now_ms, node)?;
                let id = self.next_node_id;
                self.next_node_id += 1;
                // A witness must vote: it exists to break ties. Others vote while there is room.
                let voter = node.witness || self.voter_count() < self.settings.max_voters;
                let record = NodeRecord {
                    id,
                    voter,
                    state: NodeState::Joining,
                    joined_at_ms: *now_ms,
                    state_since_ms: *now_ms,
                    drain: false,
                    fence_request: None,
                    data_disk_low: None,
                    ..node.clone()
                };
                self.nodes.insert(id, record);
                if let Some(certificate) = certificate {
                    self.certificates.insert(id, vec![certificate.clone()]);
                }
                if let Some(token) = self.join_tokens.get_mut(token_id) {
                    token.used_by = Some(node.name.clone());
                }
                // Expired tokens are dead weight; drop them while we are here.
                self.join_tokens.retain(|_, t| t.used_by.is_some() || t.expires_at_ms > *now_ms);
                Ok(CommandResult::NodeAdmitted { id, voter })
            }
            Command::SetNodeStates { now_ms, updates } => {
                self.require_cluster()?;
                for NodeStateUpdate { node, state, networks } in updates {
                    let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
                    if record.state != *state {
                        record.state = *state;
                        record.state_since_ms = *now_ms;
                    }
                    for (net, new) in record.networks.iter_mut().zip(networks) {
                        net.state = *new;
                    }
                }
                Ok(CommandResult::Done)
            }
            Command::RemoveNode { node, heartbeat_key_hex, now_ms } => {
                self.require_cluster()?;
                let record = self.nodes.get(node).ok_or(Rejection::UnknownNodeId(*node))?;
                if self.roles.values().any(|r| r.owner == Some(*node)) {
                    return Err(Rejection::NodeOwnsRoles(record.name.clone()));
                }
                let name = record.name.clone();
                self.nodes.remove(node);
                for certificate in self.certificates.remove(node).unwrap_or_default() {
                    let revoked = RevokedCertificate {
                        node: name.clone(),
                        not_after_ms: certificate.not_after_ms,
                        revoked_at_ms: *now_ms,
                    };
                    self.revoked.insert(certificate.serial, revoked);
                }
                // An expired certificate fails the TLS check on its own.
                self.revoked.retain(|_, r| r.not_after_ms > *now_ms);
                if let (Some(key), Some(cluster)) = (heartbeat_key_hex, self.cluster.as_mut()) {
                    cluster.heartbeat_key_hex = key.clone();
                }
                Ok(CommandResult::Done)
            }
            Command::CreateApiToken { name, token } => {
                self.require_cluster()?;
                crate::access::validate_token_name(name)?;
                if self.api_tokens.contains_key(name) {
                    return Err(Rejection::DuplicateToken(name.clone()));
                }
                // Expired tokens are dead weight; drop them while we are here.
                self.api_tokens.retain(|_, t| t.expires_at_ms.is_none_or(|at| at > token.created_at_ms));
                self.api_tokens.insert(name.clone(), token.clone());
                Ok(CommandResult::Done)
            }
            Command::RevokeApiToken { name } => {
                self.require_cluster()?;
                self.api_tokens.remove(name).ok_or_else(|| Rejection::UnknownApiToken(name.clone()))?;
                Ok(CommandResult::Done)
            }
            Command::RotateAdminToken { secret_sha256 } => {
                self.require_cluster()?;
                if let Some(cluster) = self.cluster.as_mut() {
                    cluster.admin_token_sha256 = secret_sha256.clone();
                }
                Ok(CommandResult::Done)
            }
            Command::Attributed { inner, .. } => self.try_apply(inner),
            Command::RenewCertificate { node, certificate, now_ms } => {
                self.require_cluster()?;
                self.nodes.get(node).ok_or(Rejection::UnknownNodeId(*node))?;
                let issued = self.certificates.entry(*node).or_default();
                // The certificate being replaced stays valid until it expires: the node may
                // still be using it on connections opened before.
                issued.retain(|c| c.not_after_ms > *now_ms);
                issued.push(certificate.clone());
                Ok(CommandResult::Done)
            }
            Command::StartCaRotation { cert_pem, key_pem, ca_sha256, now_ms } => {
                self.start_ca_rotation(cert_pem, key_pem, ca_sha256, *now_ms)?;
                Ok(CommandResult::Done)
            }
            Command::AcknowledgeCa { node, ca_sha256 } => {
                self.acknowledge_ca(*node, ca_sha256)?;
                Ok(CommandResult::Done)
            }
            Command::AdvanceCaRotation => {
                self.advance_ca_rotation()?;
                Ok(CommandResult::Done)
            }
            Command::RotateHeartbeatKey { heartbeat_key_hex } => {
                let cluster = self.cluster.as_mut().ok_or(Rejection::NoCluster)?;
                if heartbeat_key_hex.len() < 32 || !heartbeat_key_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Rejection::InvalidProperty {
                        key: "heartbeat key".into(),
                        reason: "at least 16 bytes, in hex".into(),
                    });
                }
                cluster.heartbeat_key_hex = heartbeat_key_hex.clone();
                Ok(CommandResult::Done)
            }
            Command::SetFenceDevice { node, device } => {
                let record = self.nodes.get(node).ok_or(Rejection::UnknownNodeId(*node))?;
                match device {
                    Some(device) => {
                        device
                            .check()
                            .map_err(|reason| Rejection::InvalidFenceDevice { node: record.name.clone(), reason })?;
                        self.fence_devices.insert(*node, device.clone());
                    }
                    None => {
                        self.fence_devices.remove(node);
                    }
                }
                Ok(CommandResult::Done)
            }
            Command::CreateRole { spec, now_ms } => {
                self.require_cluster()?;
                if self.roles.contains_key(&spec.name) {
                    return Err(Rejection::DuplicateRole(spec.name.clone()));
                }
                spec.validate(self)?;
                self.roles.insert(spec.name.clone(), RoleRecord::new(spec.clone(), *now_ms));
                Ok(CommandResult::Done)
            }
            Command::ApplyRoles { specs, now_ms } => {
                self.require_cluster()?;
                let changes = crate::apply::plan(self, specs)?;
                for (spec, change) in specs.iter().zip(&changes) {
                    match change {
                        crate::apply::Change::Create { .. } => {
                            self.roles.insert(spec.name.clone(), RoleRecord::new(spec.clone(), *now_ms));
                        }
                        crate::apply::Change::Update { .. } => {
                            if let Some(record) = self.roles.get_mut(&spec.name) {
                                crate::apply::update(record, spec, *now_ms);
                            }
                        }
                        crate::apply::Change::Unchanged { .. } => {}
                    }
                }
                Ok(CommandResult::Applied(changes))
            }
            Command::DeleteRole { role } => {
                let record = self.roles.get(role).ok_or_else(|| Rejection::UnknownRole(role.clone()))?;
                if let Some(node) = record.owner.or(record.releasing) {
                    let node = self.nodes.get(&node).map_or_else(|| node.to_string(), |n| n.name.clone());
                    return Err(Rejection::RoleRunning { role: role.clone(), node });
                }
                self.roles.remove(role);
                Ok(CommandResult::Done)
            }
            Command::SetRoleDesired { role, desired, now_ms } => {
                let record = self.roles.get_mut(role).ok_or_else(|| Rejection::UnknownRole(role.clone()))?;
                record.spec.desired = *desired;
                record.touched();
                if *desired == Desired::Started {
                    record.start_asked(*now_ms);
                }
                Ok(CommandResult::Done)
            }
            Command::MoveRole { role, to, mode } => {
                let record = self.roles.get(role).ok_or_else(|| Rejection::UnknownRole(role.clone()))?;
                let owner = record.owner.ok_or_else(|| Rejection::RoleNotRunning(role.clone()))?;
                let cannot = |node: &str, reason: String| Rejection::CannotMove {
                    role: role.clone(),
                    node: node.to_string(),
                    reason,
                };
                if let Some(target) = to {
                    let node = self.nodes.get(target).ok_or(Rejection::UnknownNodeId(*target))?;
                    let why = if *target == owner {
                        Some("it already runs there".to_string())
                    } else {
                        crate::placement::unfit(self, record, node, &[])
                    };
                    if let Some(reason) = why {
                        return Err(cannot(&node.name, reason));
                    }
                }
                let target_name = to.and_then(|t| self.nodes.get(&t)).map_or("another node", |n| n.name.as_str());
                if let Some(m) = &record.migration {
                    let other = self.nodes.get(&m.to).map_or_else(|| m.to.to_string(), |n| n.name.clone());
                    return Err(cannot(target_name, format!("it is being migrated to {other}; wait for that to end")));
                }
                if matches!(mode, Some(MoveMode::Live | MoveMode::Quick)) {
                    crate::migration::migratable(&record.spec).map_err(|e| cannot(target_name, e))?;
                    if record.state != RoleState::Online || record.releasing.is_some() {
                        return Err(cannot(
                            target_name,
                            format!(
                                "its guest is not running ({}: {}); use --mode cold",
                                record.state.as_str(),
                                record.detail
                            ),
                        ));
                    }
                    if *mode == Some(MoveMode::Quick) && self.settings.shared_storage.is_empty() {
                        return Err(cannot(
                            target_name,
                            "quick migration saves the guest's state on shared storage, and none is configured \
                             (`halo cluster set shared_storage=PATH`)"
                                .into(),
                        ));
                    }
                }
                let reason = match to.and_then(|t| self.nodes.get(&t)) {
                    Some(node) => format!("moved to {} by the admin", node.name),
                    None => "moved by the admin".to_string(),
                };
                if let Some(record) = self.roles.get_mut(role) {
                    record.move_request = Some(MoveRequest { to: *to, reason, mode: *mode });
                    record.touched();
                }
                Ok(CommandResult::Done)
            }
            Command::PauseNode { node, drain, now_ms } => {
                let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
                if record.witness {
                    return Err(Rejection::WitnessRunsNoRoles(record.name.clone()));
                }
                if record.state != NodeState::Paused {
                    record.state = NodeState::Paused;
                    record.state_since_ms = *now_ms;
                }
                record.drain = *drain;
                Ok(CommandResult::Done)
            }
            Command::ResumeNode { node, failback, now_ms } => {
                let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
                if record.state == NodeState::Paused {
                    record.state = NodeState::Up;
                    record.state_since_ms = *now_ms;
                }
                record.drain = false;
                let name = record.name.clone();
                if *failback {
                    for role in self.roles.values_mut() {
                        // Better: a preferred node, ranked above where the role runs now.
                        let mine = role.spec.preference_rank(&name);
                        let theirs = role
                            .owner
                            .and_then(|o| self.nodes.get(&o))
                            .map_or(usize::MAX, |o| role.spec.preference_rank(&o.name));
                        let better = role.owner.is_some() && mine < usize::MAX && mine < theirs;
                        if better && role.owner != Some(*node) {
                            let reason = format!("failback to preferred owner {name} after resume");
                            role.move_request = Some(MoveRequest { to: Some(*node), reason, mode: None });
                            role.touched();
                        }
                    }
                }
                Ok(CommandResult::Done)
            }
            Command::SetNodeCapacity { node, capacity } => {
                let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
                record.capacity = *capacity;
                Ok(CommandResult::Done)
            }
            Command::ReportDataDisk { node, low } => {
                let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
                record.data_disk_low = *low;
                Ok(CommandResult::Done)
            }
            Command::ClearFenceRequest { node } => {
                let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
                record.fence_request = None;
                Ok(CommandResult::Done)
            }
            Command::RecordValidation(record) => {
                self.last_validation = Some((**record).clone());
                Ok(CommandResult::Done)
            }
            Command::DecideRole(d) => {
                let record = self.roles.get_mut(&d.role).ok_or_else(|| Rejection::UnknownRole(d.role.clone()))?;
                // Generations never go back: a decision is made on top of the one it read, and
                // every node acts on the newest only.
                if record.generation != d.expected_generation
                    || record.revision != d.expected_revision
                    || d.generation < record.generation
                {
                    return Err(Rejection::StaleDecision(d.role.clone()));
                }
                if d.generation != record.generation {
                    // A new placement boots the guest: resuming belongs to the migration's.
                    record.resume = None;
                }
                record.generation = d.generation;
                record.owner = d.owner;
                record.releasing = d.releasing;
                record.set_state(d.state, d.detail.clone(), d.now_ms);
                // A failover appends its time; pruning the window only drops old ones. (Counted
                // by membership, not by order: a new leader's clock may be behind the last's.)
                record.failovers += d.failovers_ms.iter().filter(|t| !record.failovers_ms.contains(t)).count() as u64;
                record.failovers_ms = d.failovers_ms.clone();
                record.failed_on = d.failed_on.clone();
                record.held = d.held;
                record.waits_for = d.waits_for.clone();
                if let Some(m) = &d.migration {
                    record.migrations = record.migrations.max(m.id);
                }
                record.migration = d.migration.clone();
                if let Some(result) = &d.finished_migration {
                    record.last_migration = Some(result.as_ref().clone());
                }
                if d.clear_move {
                    record.move_request = None;
                }
                crate::migration::settle(record);
                if let Some(decision) = &d.decision {
                    record.record_decision(decision.clone());
                } else if let Some(note) = &d.note {
                    record.record_decision(Decision {
                        at_ms: d.now_ms,
                        generation: d.generation,
                        kind: d.note_kind,
                        summary: note.clone(),
                        reasons: Vec::new(),
                    });
                }
                Ok(CommandResult::Done)
            }
            Command::ReportRole(report) => self.apply_report(report),
            Command::ReportMigration(report) => crate::migration::apply_report(self, report),
            Command::SetProperties { properties } => {
                self.require_cluster()?;
                let mut settings = self.settings.clone();
                for (key, value) in properties {
                    apply_property(&mut settings, key, value)?;
                }
                validate_settings(&settings)?;
                for role in self.roles.values() {
                    for vm in role.spec.vms().flatten() {
                        vm.check_shared(&settings.shared_storage).map_err(|e| Rejection::InvalidProperty {
                            key: "shared_storage".into(),
                            reason: format!("role {} would lose its disks: {e}", role.spec.name),
                        })?;
                    }
                }
                if settings.max_voters < self.voter_count() {
                    return Err(Rejection::InvalidProperty {
                        key: "max_voters".into(),
                        reason: format!("the cluster already has {} voters", self.voter_count()),
                    });
                }
                self.settings = settings;
                for (key, value) in properties {
                    if is_free_property(key) {
                        self.properties.insert(key.clone(), value.clone());
                    }
                }
                Ok(CommandResult::Done)
            }
        }
    }

    fn apply_report(&mut self, report: &RoleReport) -> Result<CommandResult, Rejection> {
        let node_name = self.nodes.get(&report.node).map_or_else(|| report.node.to_string(), |n| n.name.clone());
        let record = self.roles.get_mut(&report.role).ok_or_else(|| Rejection::UnknownRole(report.role.clone()))?;
        let current = record.owner == Some(report.node) && record.generation == report.generation;
        match report.outcome {
            RoleReportOutcome::Stopped if record.releasing == Some(report.node) => {
                record.releasing = None;
                crate::migration::settle(record);
                if let Some(owner) = record.owner {
                    let owner = self.nodes.get(&owner).map_or_else(|| owner.to_string(), |n| n.name.clone());
                    record.set_state(RoleState::Pending, format!("starting on {owner}"), report.now_ms);
                }
            }
            RoleReportOutcome::Online if current => {
                // `failed_on` stays: a node where it failed is not tried again until the admin
                // restarts the role (`halo role start` clears the history).
                record.set_state(RoleState::Online, format!("running on {node_name}"), report.now_ms);
                record.waits_for.clear();
                if let Some(from) = record.resume.as_ref().map(|r| r.from) {
                    let from = self.nodes.get(&from).map_or_else(|| from.to_string(), |n| n.name.clone());
                    crate::migration::resumed(record, from, node_name, report.now_ms);
                }
            }
            RoleReportOutcome::Failed if current => {
                if !record.failed_on.contains(&report.node) {
                    record.failed_on.push(report.node);
                }
                record.set_state(
                    RoleState::Pending,
                    format!("failed on {node_name}: {}", report.detail),
                    report.now_ms,
                );
                record.record_decision(Decision {
                    at_ms: report.now_ms,
                    generation: record.generation,
                    kind: crate::role::DecisionKind::Failed,
                    summary: format!("failed on {node_name}"),
                    reasons: vec![report.detail.clone()],
                });
            }
            RoleReportOutcome::StopFailed
                if record.owner == Some(report.node) || record.releasing == Some(report.node) =>
            {
                let why = format!("could not stop role {}: {}", report.role, report.detail);
                let summary = format!("could not be stopped on {node_name}; {node_name} is being fenced");
                record.set_state(RoleState::Pending, summary.clone(), report.now_ms);
                record.record_decision(Decision {
                    at_ms: report.now_ms,
                    generation: record.generation,
                    kind: crate::role::DecisionKind::Fencing,
                    summary,
                    reasons: vec![report.detail.clone()],
                });
                if let Some(node) = self.nodes.get_mut(&report.node)
                    && node.fence_request.is_none()
                {
                    node.fence_request = Some(why);
                }
            }
            _ => return Err(Rejection::StaleReport(report.role.clone())),
        }
        Ok(CommandResult::Done)
    }

    fn require_cluster(&self) -> Result<&ClusterInfo, Rejection> {
        self.cluster.as_ref().ok_or(Rejection::NoCluster)
    }
}

fn is_free_property(key: &str) -> bool {
    key == "description" || key.strip_prefix("label.").is_some_and(|rest| !rest.is_empty())
}

/// Checks one `key=value` cluster property; typed settings go into `settings`.
fn apply_property(settings: &mut ClusterSettings, key: &str, value: &str) -> Result<(), Rejection> {
    let number = |what: &str| -> Result<u64, Rejection> {
        value.parse::<u64>().map_err(|_| Rejection::InvalidProperty {
            key: what.into(),
            reason: format!("'{value}' is not a whole number"),
        })
    };
    match key {
        "heartbeat_interval_ms" => settings.heartbeat_interval_ms = number(key)?,
        "node_timeout_ms" => settings.node_timeout_ms = number(key)?,
        "lease_ms" => settings.lease_ms = number(key)?,
        "lease_margin_ms" => settings.lease_margin_ms = number(key)?,
        "profile" => {
            let named = value
                .parse::<Profile>()
                .map_err(|reason| Rejection::InvalidProperty { key: key.into(), reason })?
                .timing();
            // A profile is heartbeat and lease timing only; what else is set stays.
            settings.heartbeat_interval_ms = named.heartbeat_interval_ms;
            settings.node_timeout_ms = named.node_timeout_ms;
            settings.lease_ms = named.lease_ms;
            settings.lease_margin_ms = named.lease_margin_ms;
        }
        "raft_heartbeat_ms" | "election_timeout_min_ms" | "election_timeout_max_ms" => {
            return Err(Rejection::InvalidProperty {
                key: key.into(),
                reason: "Raft timing is fixed when the cluster is created (the creating agent's [timing]); \
                         every node must run the same"
                    .into(),
            });
        }
        "max_voters" => settings.max_voters = number(key)? as usize,
        "shared_storage" => {
            settings.shared_storage = crate::vm::parse_shared_storage(value)
                .map_err(|reason| Rejection::InvalidProperty { key: key.into(), reason })?;
        }
        "parallel_migrations" => settings.parallel_migrations = u32::try_from(number(key)?).unwrap_or(u32::MAX),
        "validation_interval_ms" => settings.validation_interval_ms = number(key)?,
        "certificate_lifetime_ms" => settings.certificate_lifetime_ms = number(key)?,
        _ if is_free_property(key) => {
            if value.len() > 4096 {
                return Err(Rejection::InvalidProperty { key: key.into(), reason: "longer than 4096 bytes".into() });
            }
        }
        _ => {
            return Err(Rejection::InvalidProperty {
                key: key.into(),
                reason: "unknown property (known: description, label.NAME, profile, heartbeat_interval_ms, \
                         node_timeout_ms, lease_ms, lease_margin_ms, max_voters, shared_storage, \
                         parallel_migrations, validation_interval_ms, certificate_lifetime_ms)"
                    .into(),
            });
        }
    }
    Ok(())
}

pub fn validate_settings(settings: &ClusterSettings) -> Result<(), Rejection> {
    let invalid = |key: &str, reason: String| Rejection::InvalidProperty { key: key.into(), reason };
    if !(10..=10_000).contains(&settings.heartbeat_interval_ms) {
        return Err(invalid("heartbeat_interval_ms", "must be between 10 and 10000".into()));
    }
    if settings.node_timeout_ms < 3 * settings.heartbeat_interval_ms || settings.node_timeout_ms > 600_000 {
        return Err(invalid(
            "node_timeout_ms",
            format!("must be at least 3 heartbeats ({} ms) and at most 600000", 3 * settings.heartbeat_interval_ms),
        ));
    }
    if settings.lease_ms < settings.node_timeout_ms || settings.lease_ms > 600_000 {
        return Err(invalid(
            "lease_ms",
            format!("must be at least the node timeout ({} ms) and at most 600000", settings.node_timeout_ms),
        ));
    }
    if settings.lease_margin_ms < 50.max(settings.lease_ms / 100) || settings.lease_margin_ms > settings.lease_ms {
        return Err(invalid(
            "lease_margin_ms",
            format!(
                "must be at least 50 and 1 % of the lease ({} ms; it covers clock rates that differ), \
                 and at most the lease",
                50.max(settings.lease_ms / 100)
            ),
        ));
    }
    if settings.node_timeout_ms > 1000 * settings.heartbeat_interval_ms {
        return Err(invalid(
            "node_timeout_ms",
            format!(
                "must be at most 1000 heartbeats ({} ms): a heartbeat counts only if it answers one sent within the timeout",
                1000 * settings.heartbeat_interval_ms
            ),
        ));
    }
    settings.raft.check().map_err(|reason| invalid("raft", reason))?;
    if !CERTIFICATE_LIFETIME_MS.contains(&settings.certificate_lifetime_ms) {
        return Err(invalid(
            "certificate_lifetime_ms",
            format!(
                "must be between {} and {} (three years)",
                CERTIFICATE_LIFETIME_MS.start(),
                CERTIFICATE_LIFETIME_MS.end()
            ),
        ));
    }
    // The leader's own lease (half a lease, dated from its last quorum acknowledgement) must
    // outlast the grant window, or a healthy leader would stop granting itself between two
    // acknowledgements; a lease shorter than that is not a lease Raft can keep.
    let grant_window = settings.raft.grant_window_ms();
    if settings.lease_timing().leader_lease_ms() <= grant_window {
        return Err(invalid(
            "lease_ms",
            format!(
                "must be more than twice the grant window ({grant_window} ms = {} Raft heartbeats of {} ms; the \
                 leader's own lease, half a lease, must outlast it): at least {} ms",
                crate::timing::GRANT_WINDOW_HEARTBEATS,
                settings.raft.raft_heartbeat_ms,
                2 * grant_window + 2
            ),
        ));
    }
    if !(1..=64).contains(&settings.parallel_migrations) {
        return Err(invalid("parallel_migrations", "must be between 1 and 64".into()));
    }
    if settings.validation_interval_ms != 0 && settings.validation_interval_ms < 10_000 {
        return Err(invalid("validation_interval_ms", "must be 0 (never) or at least 10000".into()));
    }
    if settings.max_voters == 0 || settings.max_voters > MAX_VOTERS_LIMIT {
        return Err(invalid("max_voters", format!("must be between 1 and {MAX_VOTERS_LIMIT}")));
    }
    Ok(())
}

/// Node names appear in commands, files and URLs: keep them simple.
pub fn validate_node_name(name: &str) -> Result<(), Rejection> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(Rejection::InvalidNodeName(name.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, addr: &str) -> NodeRecord {
        NodeRecord {
            id: 0,
            name: name.into(),
            api: format!("{addr}:1"),
            networks: vec![NetworkRecord { address: format!("{addr}:2"), state: NetworkState::Up }],
            state: NodeState::Joining,
            witness: false,
            voter: false,
            joined_at_ms: 0,
            state_since_ms: 0,
            drain: false,
            capacity: None,
            fence_request: None,
            data_disk_low: None,
        }
    }

    fn created() -> ClusterState {
        let mut s = ClusterState::default();
        let first = NodeRecord { id: 1, voter: true, state: NodeState::Up, ..node("a", "127.0.0.1") };
        let cluster = ClusterInfo {
            name: "c".into(),
            id: "x".into(),
            created_at_ms: 0,
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            admin_token_sha256: String::new(),
            heartbeat_key_hex: String::new(),
            ca_rotation: None,
        };
        let r = s.apply(&Command::CreateCluster {
            cluster: Box::new(cluster),
            first_node: first,
            settings: ClusterSettings::default(),
            first_certificate: Some(CertificateRecord {
                serial: "a1".into(),
                not_after_ms: 1_000,
                ca_sha256: String::new(),
            }),
        });
        assert_eq!(r, CommandResult::Done);
        s
    }

    fn token(s: &mut ClusterState, id: &str, expires: u64) {
        let r = s.apply(&Command::IssueJoinToken { id: id.into(), secret_sha256: "h".into(), expires_at_ms: expires });
        assert_eq!(r, CommandResult::Done);
    }

    fn admit(s: &mut ClusterState, token: &str, now: u64, n: NodeRecord) -> CommandResult {
        let certificate =
            Some(CertificateRecord { serial: format!("{}1", n.name), not_after_ms: 1_000, ca_sha256: String::new() });
        s.apply(&Command::AdmitNode {
            token_id: token.into(),
            token_secret_sha256: "h".into(),
            now_ms: now,
            node: n,
            certificate,
        })
    }

    #[test]
    fn a_ca_rotation_trusts_then_issues_then_drops_the_old_ca_each_step_only_once_every_node_is_ready() {
        use crate::ca_rotation::{CaStage, next_step, waiting_for};
        let mut s = created();
        let cluster = s.cluster.as_mut().expect("cluster");
        (cluster.ca_cert_pem, cluster.ca_key_pem) = ("OLD".into(), "OLDKEY".into());
        token(&mut s, "t", 100);
        assert_eq!(admit(&mut s, "t", 10, node("b", "127.0.0.2")), CommandResult::NodeAdmitted { id: 2, voter: true });
        let rejected = |r: CommandResult| matches!(r, CommandResult::Rejected(Rejection::CaRotation(_)));
        assert!(rejected(s.apply(&Command::AdvanceCaRotation)), "nothing to advance");
        let start = Command::StartCaRotation {
            cert_pem: "NEW".into(),
            key_pem: "NEWKEY".into(),
            ca_sha256: "n".into(),
            now_ms: 20,
        };
        assert_eq!(s.apply(&start), CommandResult::Done);
        assert!(rejected(s.apply(&start)), "one rotation at a time");
        let cluster = s.cluster.clone().expect("cluster");
        assert_eq!(cluster.trust_bundle(), "OLD\nNEW\n");
        assert_eq!(cluster.issuing_ca(), ("OLD", "OLDKEY", None), "the old CA issues until every node trusts the new");

        // Trusting: every node must say it trusts the new CA.
        assert_eq!(waiting_for(&s), Err("waiting for a, b to trust the new CA".into()));
        assert!(next_step(&s).is_none());
        assert!(rejected(s.apply(&Command::AdvanceCaRotation)));
        assert!(rejected(s.apply(&Command::AcknowledgeCa { node: 1, ca_sha256: "other".into() })));
        assert_eq!(s.apply(&Command::AcknowledgeCa { node: 1, ca_sha256: "n".into() }), CommandResult::Done);
        assert!(next_step(&s).is_none(), "b does not trust it yet");
        assert_eq!(s.apply(&Command::AcknowledgeCa { node: 2, ca_sha256: "n".into() }), CommandResult::Done);
        assert_eq!(next_step(&s), Some(Command::AdvanceCaRotation));
        assert_eq!(s.apply(&Command::AdvanceCaRotation), CommandResult::Done);
        let cluster = s.cluster.clone().expect("cluster");
        assert_eq!(cluster.ca_rotation.as_ref().map(|r| r.stage), Some(CaStage::Issuing));
        assert_eq!(cluster.issuing_ca(), ("NEW", "NEWKEY", Some("n")));

        // Issuing: every node's newest certificate must be from the new CA.
        assert!(rejected(s.apply(&Command::AdvanceCaRotation)));
        let renew = |node: u64, serial: &str| Command::RenewCertificate {
            node,
            certificate: CertificateRecord { serial: serial.into(), not_after_ms: 5_000, ca_sha256: "n".into() },
            now_ms: 30,
        };
        assert_eq!(s.apply(&renew(1, "a2")), CommandResult::Done);
        assert_eq!(waiting_for(&s), Err("waiting for b to renew its certificate from the new CA".into()));
        assert_eq!(s.apply(&renew(2, "b2")), CommandResult::Done);
        assert_eq!(s.apply(&Command::AdvanceCaRotation), CommandResult::Done);

        // Finished: the new CA is the cluster's; the old one's certificates are forgotten.
        let cluster = s.cluster.clone().expect("cluster");
        assert_eq!((cluster.ca_cert_pem.as_str(), cluster.ca_key_pem.as_str()), ("NEW", "NEWKEY"));
        assert!(cluster.ca_rotation.is_none());
        assert_eq!(cluster.trust_bundle(), "NEW");
        for (node, serial) in [(1, "a2"), (2, "b2")] {
            assert_eq!(
                s.certificates[&node],
                vec![CertificateRecord { serial: serial.into(), not_after_ms: 5_000, ca_sha256: String::new() }]
            );
        }
        let again =
            Command::StartCaRotation { cert_pem: "N2".into(), key_pem: "K2".into(), ca_sha256: "m".into(), now_ms: 40 };
        assert_eq!(s.apply(&again), CommandResult::Done, "the next rotation may start");
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let mut s = created();
        token(&mut s, "t1", 100);
        assert_eq!(admit(&mut s, "t1", 10, node("b", "127.0.0.2")), CommandResult::NodeAdmitted { id: 2, voter: true });
        let before = s.clone();
        assert_eq!(
            admit(&mut s, "t1", 10, node("c", "127.0.0.3")),
            CommandResult::Rejected(Rejection::TokenUsed("b".into()))
        );
        token(&mut s, "t2", 100);
        assert_eq!(admit(&mut s, "t2", 100, node("c", "127.0.0.3")), CommandResult::Rejected(Rejection::TokenExpired));
        assert_eq!(admit(&mut s, "nope", 1, node("c", "127.0.0.3")), CommandResult::Rejected(Rejection::UnknownToken));
        assert_eq!(s.nodes, before.nodes);
    }

    #[test]
    fn duplicate_names_and_addresses_are_rejected() {
        let mut s = created();
        token(&mut s, "t", 100);
        assert_eq!(
            admit(&mut s, "t", 1, node("a", "127.0.0.9")),
            CommandResult::Rejected(Rejection::DuplicateNodeName("a".into()))
        );
        assert!(matches!(
            admit(&mut s, "t", 1, node("z", "127.0.0.1")),
            CommandResult::Rejected(Rejection::AddressInUse { .. })
        ));
        assert!(matches!(
            admit(&mut s, "t", 1, node("bad name", "127.0.0.5")),
            CommandResult::Rejected(Rejection::InvalidNodeName(_))
        ));
        assert_eq!(s.nodes.len(), 1);
        assert!(s.join_tokens["t"].used_by.is_none());
    }

    #[test]
    fn oversized_node_records_are_refused_before_the_token_is_spent() {
        let mut s = created();
        token(&mut s, "t", 100);
        let mut many = node("m", "127.0.0.7");
        many.networks = (0..=MAX_NETWORKS)
            .map(|i| NetworkRecord { address: format!("127.0.2.{i}:7000"), state: NetworkState::Up })
            .collect();
        assert!(matches!(admit(&mut s, "t", 1, many), CommandResult::Rejected(Rejection::InvalidNode { .. })));
        let mut none = node("n", "127.0.0.8");
        none.networks.clear();
        assert!(matches!(admit(&mut s, "t", 1, none), CommandResult::Rejected(Rejection::InvalidNode { .. })));
        let long = node("l", &format!("{}:1", "a".repeat(MAX_ADDRESS_LEN)));
        assert!(matches!(admit(&mut s, "t", 1, long), CommandResult::Rejected(Rejection::InvalidNode { .. })));
        assert_eq!(s.nodes.len(), 1);
        assert!(s.join_tokens["t"].used_by.is_none());
        // The leader's question gives the state machine's answer, and changes nothing.
        let before = s.clone();
        assert_eq!(s.check_admission("t", "wrong", 1, &node("b", "127.0.0.2")), Err(Rejection::UnknownToken));
        assert_eq!(s.check_admission("t", "h", 1, &node("b", "127.0.0.2")), Ok(()));
        assert_eq!(s, before);
    }

    #[test]
    fn voters_are_capped_and_ids_never_reused() {
        let mut s = created();
        s.settings.max_voters = 2;
        for (i, name) in ["b", "c"].iter().enumerate() {
            let t = format!("t{i}");
            token(&mut s, &t, 100);
            let _ = admit(&mut s, &t, 1, node(name, &format!("127.0.1.{i}")));
        }
        assert!(s.node_by_name("b").is_some_and(|n| n.voter));
        assert!(s.node_by_name("c").is_some_and(|n| !n.voter));
        assert_eq!(s.apply(&Command::RemoveNode { node: 3, heartbeat_key_hex: None, now_ms: 1 }), CommandResult::Done);
        token(&mut s, "t9", 100);
        assert_eq!(admit(&mut s, "t9", 1, node("d", "127.0.2.1")), CommandResult::NodeAdmitted { id: 4, voter: false });
    }

    #[test]
    fn a_removed_node_s_certificates_are_revoked_until_they_expire_and_the_heartbeat_key_changes() {
        let mut s = created();
        token(&mut s, "t", 100);
        assert_eq!(admit(&mut s, "t", 1, node("b", "127.0.0.2")), CommandResult::NodeAdmitted { id: 2, voter: true });
        assert_eq!(
            s.certificates[&2],
            vec![CertificateRecord { serial: "b1".into(), not_after_ms: 1_000, ca_sha256: String::new() }]
        );
        let remove = Command::RemoveNode { node: 2, heartbeat_key_hex: Some("fresh".into()), now_ms: 10 };
        assert_eq!(s.apply(&remove), CommandResult::Done);
        assert!(!s.certificates.contains_key(&2));
        assert_eq!(s.revoked["b1"], RevokedCertificate { node: "b".into(), not_after_ms: 1_000, revoked_at_ms: 10 });
        assert_eq!(s.cluster.as_ref().map(|c| c.heartbeat_key_hex.as_str()), Some("fresh"));
        // Once it has expired, no TLS check accepts it: the entry goes at the next removal.
        token(&mut s, "t2", 2_000);
        let _ = admit(&mut s, "t2", 1_500, node("c", "127.0.0.3"));
        assert_eq!(
            s.apply(&Command::RemoveNode { node: 3, heartbeat_key_hex: None, now_ms: 1_500 }),
            CommandResult::Done
        );
        assert!(s.revoked.is_empty(), "both had expired: {:?}", s.revoked);
        assert_eq!(s.cluster.as_ref().map(|c| c.heartbeat_key_hex.as_str()), Some("fresh"), "kept without a new one");
    }

    #[test]
    fn properties_are_validated_as_a_whole() {
        let mut s = created();
        let bad = Command::SetProperties {
            properties: vec![("label.site".into(), "dc1".into()), ("bogus".into(), "1".into())],
        };
        assert!(matches!(s.apply(&bad), CommandResult::Rejected(Rejection::InvalidProperty { .. })));
        assert!(s.properties.is_empty());
        let too_fast = Command::SetProperties { properties: vec![("node_timeout_ms".into(), "10".into())] };
        assert!(matches!(s.apply(&too_fast), CommandResult::Rejected(_)));
        let good = Command::SetProperties {
            properties: vec![("label.site".into(), "dc1".into()), ("node_timeout_ms".into(), "2000".into())],
        };
        assert_eq!(s.apply(&good), CommandResult::Done);
        assert_eq!(s.properties["label.site"], "dc1");
        assert_eq!(s.settings.node_timeout_ms, 2000);
    }

    #[test]
    fn timing_that_breaks_the_lease_argument_is_refused() {
        let mut s = created();
        let set = |s: &mut ClusterState, pairs: &[(&str, &str)]| {
            let properties = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            s.apply(&Command::SetProperties { properties })
        };
        let reason = |r: CommandResult| match r {
            CommandResult::Rejected(Rejection::InvalidProperty { key, reason }) => format!("{key}: {reason}"),
            other => panic!("accepted: {other:?}"),
        };
        // The leader's own lease (half a lease) must outlast the grant window (3 x 150 ms).
        let r = reason(set(&mut s, &[("node_timeout_ms", "300"), ("lease_ms", "900"), ("lease_margin_ms", "50")]));
        assert!(r.contains("lease_ms: must be more than twice the grant window (450 ms"), "{r}");
        assert!(reason(set(&mut s, &[("node_timeout_ms", "300"), ("lease_ms", "901")])).contains("at least 902 ms"));
        assert_eq!(set(&mut s, &[("node_timeout_ms", "300"), ("lease_ms", "902")]), CommandResult::Done);
        // The margin covers clock rates: at least 1 % of the lease.
        let r = reason(set(&mut s, &[("node_timeout_ms", "1000"), ("lease_ms", "20000"), ("lease_margin_ms", "100")]));
        assert!(r.contains("lease_margin_ms: must be at least 50 and 1 % of the lease (200 ms"), "{r}");
        // A timeout of more heartbeats than a node remembers sends for.
        let r = reason(set(
            &mut s,
            &[
                ("heartbeat_interval_ms", "10"),
                ("node_timeout_ms", "20000"),
                ("lease_ms", "20000"),
                ("lease_margin_ms", "200"),
            ],
        ));
        assert!(r.contains("at most 1000 heartbeats"), "{r}");
        // Raft timing is the cluster's, fixed at creation.
        let r = reason(set(&mut s, &[("raft_heartbeat_ms", "50")]));
        assert!(r.contains("fixed when the cluster is created"), "{r}");
        // Every profile is safe with the default Raft timing.
        for p in crate::timing::Profile::ALL {
            assert_eq!(set(&mut s, &[("profile", p.name())]), CommandResult::Done, "{p}");
        }
        assert!(reason(set(&mut s, &[("profile", "turbo")])).contains("unknown profile 'turbo'"));
    }

    #[test]
    fn a_decision_never_takes_a_generation_back() {
        let mut s = created();
        let spec: crate::role::RoleSpec = serde_json::from_str(
            r#"{"name":"web","resources":[{"name":"main","type":"process","params":{"command":"sleep 1"}}]}"#,
        )
        .expect("spec");
        assert_eq!(s.apply(&Command::CreateRole { spec, now_ms: 1 }), CommandResult::Done);
        let record = s.roles["web"].clone();
        let mut next = crate::command::RoleDecision::from_record(&record, 2);
        next.bump();
        assert_eq!(s.apply(&Command::DecideRole(next)), CommandResult::Done);
        let record = s.roles["web"].clone();
        let mut back = crate::command::RoleDecision::from_record(&record, 3);
        back.generation = record.generation - 1;
        assert!(matches!(s.apply(&Command::DecideRole(back)), CommandResult::Rejected(Rejection::StaleDecision(_))));
        assert_eq!(s.roles["web"].generation, record.generation);
    }

    #[test]
    fn a_floating_address_belongs_to_one_role() {
        let mut s = created();
        let vip = |role: &str, params: &str| -> crate::role::RoleSpec {
            serde_json::from_str(&format!(
                r#"{{"name":"{role}","resources":[{{"name":"vip","type":"ip","params":{params}}}]}}"#
            ))
            .expect("spec")
        };
        let spec = vip("web", r#"{"address":"10.0.0.5/24","interface":"eth0"}"#);
        assert_eq!(s.apply(&Command::CreateRole { spec, now_ms: 1 }), CommandResult::Done);
        let spec = vip("db", r#"{"address":"10.0.0.5/32","interface":"eth1"}"#);
        let CommandResult::Rejected(r) = s.apply(&Command::CreateRole { spec, now_ms: 2 }) else {
            panic!("taken twice")
        };
        assert!(r.to_string().contains("already held by role 'web'"), "{r}");
        let spec = vip("db", r#"{"address":"fd00::5/64","interface":"eth0"}"#);
        let CommandResult::Rejected(r) = s.apply(&Command::CreateRole { spec, now_ms: 2 }) else { panic!("IPv6") };
        assert!(r.to_string().contains("IPv4 addresses only"), "{r}");
        assert_eq!(s.roles.len(), 1);
    }
}
