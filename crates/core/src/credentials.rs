//! The credentials the cluster database holds, as commands rotate them: node certificates,
//! the heartbeat key and the admin token (the CA's rotation is `ca_rotation`, named API
//! tokens are `access`).

use crate::NodeId;
use crate::command::{CommandResult, Rejection};
use crate::state::*;

impl ClusterState {
    pub(crate) fn renew_certificate(
        &mut self,
        node: NodeId,
        certificate: &CertificateRecord,
        now_ms: u64,
    ) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        self.nodes.get(&node).ok_or(Rejection::UnknownNodeId(node))?;
        let issued = self.certificates.entry(node).or_default();
        // The certificate being replaced stays valid until it expires: the node may
        // still be using it on connections opened before.
        issued.retain(|c| c.not_after_ms > now_ms);
        issued.push(certificate.clone());
        Ok(CommandResult::Done)
    }

    pub(crate) fn rotate_heartbeat_key(&mut self, heartbeat_key_hex: &str) -> Result<CommandResult, Rejection> {
        let cluster = self.cluster.as_mut().ok_or(Rejection::NoCluster)?;
        if heartbeat_key_hex.len() < 32 || !heartbeat_key_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Rejection::InvalidProperty {
                key: "heartbeat key".into(),
                reason: "at least 16 bytes, in hex".into(),
            });
        }
        cluster.heartbeat_key_hex = heartbeat_key_hex.to_string();
        Ok(CommandResult::Done)
    }

    pub(crate) fn rotate_admin_token(&mut self, secret_sha256: &str) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.admin_token_sha256 = secret_sha256.to_string();
        }
        Ok(CommandResult::Done)
    }
}
