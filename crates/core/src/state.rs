//! The replicated cluster state: what every node agrees on through Raft.
//!
//! Only [`ClusterState::apply`] changes it, and `apply` is deterministic: any time it needs
//! ("is this token expired?") comes inside the command, stamped by the leader that proposed it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::command::{Command, CommandResult, Rejection};
use crate::role::RoleRecord;
use crate::settings::ClusterSettings;

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
                self.create_cluster(cluster, first_node, settings, first_certificate)
            }
            Command::IssueJoinToken { id, secret_sha256, expires_at_ms } => {
                self.issue_join_token(id, secret_sha256, *expires_at_ms)
            }
            Command::AdmitNode { token_id, token_secret_sha256, now_ms, node, certificate } => {
                self.admit_node(token_id, token_secret_sha256, *now_ms, node, certificate)
            }
            Command::SetNodeStates { now_ms, updates } => self.set_node_states(*now_ms, updates),
            Command::RemoveNode { node, heartbeat_key_hex, now_ms } => {
                self.remove_node(*node, heartbeat_key_hex, *now_ms)
            }
            Command::CreateApiToken { name, token } => self.create_api_token(name, token),
            Command::RevokeApiToken { name } => self.revoke_api_token(name),
            Command::RotateAdminToken { secret_sha256 } => self.rotate_admin_token(secret_sha256),
            Command::Attributed { inner, .. } => self.try_apply(inner),
            Command::RenewCertificate { node, certificate, now_ms } => {
                self.renew_certificate(*node, certificate, *now_ms)
            }
            Command::StartCaRotation { cert_pem, key_pem, ca_sha256, now_ms } => {
                self.start_ca_rotation(cert_pem, key_pem, ca_sha256, *now_ms).map(|()| CommandResult::Done)
            }
            Command::AcknowledgeCa { node, ca_sha256 } => {
                self.acknowledge_ca(*node, ca_sha256).map(|()| CommandResult::Done)
            }
            Command::AdvanceCaRotation => self.advance_ca_rotation().map(|()| CommandResult::Done),
            Command::RotateHeartbeatKey { heartbeat_key_hex } => self.rotate_heartbeat_key(heartbeat_key_hex),
            Command::SetFenceDevice { node, device } => self.set_fence_device(*node, device),
            Command::CreateRole { spec, now_ms } => self.create_role(spec, *now_ms),
            Command::ApplyRoles { specs, now_ms } => self.apply_roles(specs, *now_ms),
            Command::DeleteRole { role } => self.delete_role(role),
            Command::SetRoleDesired { role, desired, now_ms } => self.set_role_desired(role, *desired, *now_ms),
            Command::MoveRole { role, to, mode } => self.move_role(role, *to, *mode),
            Command::PauseNode { node, drain, now_ms } => self.pause_node(*node, *drain, *now_ms),
            Command::ResumeNode { node, failback, now_ms } => self.resume_node(*node, *failback, *now_ms),
            Command::SetNodeCapacity { node, capacity } => self.set_node_capacity(*node, *capacity),
            Command::ReportDataDisk { node, low } => self.report_data_disk(*node, *low),
            Command::ClearFenceRequest { node } => self.clear_fence_request(*node),
            Command::RecordValidation(record) => self.record_validation(record),
            Command::DecideRole(d) => self.decide_role(d),
            Command::ReportRole(report) => self.report_role(report),
            Command::ReportMigration(report) => crate::migration::apply_report(self, report),
            Command::SetProperties { properties } => self.set_properties(properties),
        }
    }

    pub(crate) fn require_cluster(&self) -> Result<&ClusterInfo, Rejection> {
        self.cluster.as_ref().ok_or(Rejection::NoCluster)
    }
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
