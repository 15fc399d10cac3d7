//! The cluster's nodes, as commands change them: creating the cluster, join tokens and
//! admission, node states, pause and resume, removal, capacity, the data disk's mark, fence
//! devices and requests.

use crate::NodeId;
use crate::command::{CommandResult, NodeStateUpdate, Rejection};
use crate::settings::{ClusterSettings, validate_settings};
use crate::state::*;

impl ClusterState {
    pub(crate) fn create_cluster(
        &mut self,
        cluster: &ClusterInfo,
        first_node: &NodeRecord,
        settings: &ClusterSettings,
        first_certificate: &Option<CertificateRecord>,
    ) -> Result<CommandResult, Rejection> {
        if let Some(existing) = &self.cluster {
            return Err(Rejection::AlreadyCreated(existing.name.clone()));
        }
        validate_settings(settings)?;
        self.version = crate::FORMAT_VERSION;
        self.cluster = Some(cluster.clone());
        self.settings = settings.clone();
        self.next_node_id = first_node.id + 1;
        self.nodes.insert(first_node.id, first_node.clone());
        if let Some(certificate) = first_certificate {
            self.certificates.insert(first_node.id, vec![certificate.clone()]);
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn issue_join_token(
        &mut self,
        id: &str,
        secret_sha256: &str,
        expires_at_ms: u64,
    ) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        self.join_tokens.insert(
            id.to_string(),
            JoinTokenRecord { secret_sha256: secret_sha256.to_string(), expires_at_ms, used_by: None },
        );
        Ok(CommandResult::Done)
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

    pub(crate) fn admit_node(
        &mut self,
        token_id: &str,
        token_secret_sha256: &str,
        now_ms: u64,
        node: &NodeRecord,
        certificate: &Option<CertificateRecord>,
    ) -> Result<CommandResult, Rejection> {
        self.check_admission(token_id, token_secret_sha256, now_ms, node)?;
        let id = self.next_node_id;
        self.next_node_id += 1;
        // A witness must vote: it exists to break ties. Others vote while there is room.
        let voter = node.witness || self.voter_count() < self.settings.max_voters;
        let record = NodeRecord {
            id,
            voter,
            state: NodeState::Joining,
            joined_at_ms: now_ms,
            state_since_ms: now_ms,
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
        self.join_tokens.retain(|_, t| t.used_by.is_some() || t.expires_at_ms > now_ms);
        Ok(CommandResult::NodeAdmitted { id, voter })
    }

    pub(crate) fn set_node_states(
        &mut self,
        now_ms: u64,
        updates: &[NodeStateUpdate],
    ) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        for NodeStateUpdate { node, state, networks } in updates {
            let record = self.nodes.get_mut(node).ok_or(Rejection::UnknownNodeId(*node))?;
            if record.state != *state {
                record.state = *state;
                record.state_since_ms = now_ms;
            }
            for (net, new) in record.networks.iter_mut().zip(networks) {
                net.state = *new;
            }
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn remove_node(
        &mut self,
        node: NodeId,
        heartbeat_key_hex: &Option<String>,
        now_ms: u64,
    ) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        let record = self.nodes.get(&node).ok_or(Rejection::UnknownNodeId(node))?;
        if self.roles.values().any(|r| r.owner == Some(node)) {
            return Err(Rejection::NodeOwnsRoles(record.name.clone()));
        }
        let name = record.name.clone();
        self.nodes.remove(&node);
        for certificate in self.certificates.remove(&node).unwrap_or_default() {
            let revoked = RevokedCertificate {
                node: name.clone(),
                not_after_ms: certificate.not_after_ms,
                revoked_at_ms: now_ms,
            };
            self.revoked.insert(certificate.serial, revoked);
        }
        // An expired certificate fails the TLS check on its own.
        self.revoked.retain(|_, r| r.not_after_ms > now_ms);
        if let (Some(key), Some(cluster)) = (heartbeat_key_hex, self.cluster.as_mut()) {
            cluster.heartbeat_key_hex = key.clone();
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn pause_node(&mut self, node: NodeId, drain: bool, now_ms: u64) -> Result<CommandResult, Rejection> {
        let record = self.nodes.get_mut(&node).ok_or(Rejection::UnknownNodeId(node))?;
        if record.witness {
            return Err(Rejection::WitnessRunsNoRoles(record.name.clone()));
        }
        if record.state != NodeState::Paused {
            record.state = NodeState::Paused;
            record.state_since_ms = now_ms;
        }
        record.drain = drain;
        Ok(CommandResult::Done)
    }

    pub(crate) fn resume_node(
        &mut self,
        node: NodeId,
        failback: bool,
        now_ms: u64,
    ) -> Result<CommandResult, Rejection> {
        let record = self.nodes.get_mut(&node).ok_or(Rejection::UnknownNodeId(node))?;
        if record.state == NodeState::Paused {
            record.state = NodeState::Up;
            record.state_since_ms = now_ms;
        }
        record.drain = false;
        if failback {
            for (name, request) in crate::failback::on_resume(self, node) {
                if let Some(role) = self.roles.get_mut(&name) {
                    role.move_request = Some(request);
                    role.touched();
                }
            }
        }
        Ok(CommandResult::Done)
    }

    pub(crate) fn set_node_capacity(
        &mut self,
        node: NodeId,
        capacity: Option<crate::capacity::Capacity>,
    ) -> Result<CommandResult, Rejection> {
        let record = self.nodes.get_mut(&node).ok_or(Rejection::UnknownNodeId(node))?;
        record.capacity = capacity;
        Ok(CommandResult::Done)
    }

    pub(crate) fn report_data_disk(
        &mut self,
        node: NodeId,
        low: Option<DiskSpace>,
    ) -> Result<CommandResult, Rejection> {
        let record = self.nodes.get_mut(&node).ok_or(Rejection::UnknownNodeId(node))?;
        record.data_disk_low = low;
        Ok(CommandResult::Done)
    }

    pub(crate) fn clear_fence_request(&mut self, node: NodeId) -> Result<CommandResult, Rejection> {
        let record = self.nodes.get_mut(&node).ok_or(Rejection::UnknownNodeId(node))?;
        record.fence_request = None;
        Ok(CommandResult::Done)
    }

    pub(crate) fn set_fence_device(
        &mut self,
        node: NodeId,
        device: &Option<FenceDevice>,
    ) -> Result<CommandResult, Rejection> {
        let record = self.nodes.get(&node).ok_or(Rejection::UnknownNodeId(node))?;
        match device {
            Some(device) => {
                device.check().map_err(|reason| Rejection::InvalidFenceDevice { node: record.name.clone(), reason })?;
                self.fence_devices.insert(node, device.clone());
            }
            None => {
                self.fence_devices.remove(&node);
            }
        }
        Ok(CommandResult::Done)
    }
}
