//! Node certificates expire (`certificate_lifetime_ms`, 90 days by default), so every member
//! renews its own once two thirds of its lifetime have passed: a new key and a CSR, signed by
//! the leader (which checks that the request comes from the node it names), recorded in the
//! cluster database, then saved and put in use on both listeners and the peer clients. The
//! old certificate stays valid until it expires, for connections opened with it.

use std::sync::Arc;
use std::time::Duration;

use halo_core::command::{Command, CommandResult};
use halo_core::state::CertificateRecord;
use halo_security::ca::{self, ClusterCa};
use halo_security::revocation;

use crate::clock;
use crate::error::ApiError;
use crate::identity::NodeTls;
use crate::runtime::{Agent, LeaderReply, LeaderRequest, Member, rejection_error};

/// How often a member looks at its certificate's age.
const CHECK: Duration = Duration::from_secs(1);
/// After a failed renewal (no leader, no quorum), the next try.
const RETRY: Duration = Duration::from_secs(10);

/// The member's renewal loop; runs for the life of the agent.
pub async fn run(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(CHECK).await;
        let Some(member) = agent.member().cloned() else { continue };
        let current = member.node_tls();
        let identity = match revocation::identity_of_pem(&current.cert_pem) {
            Ok(identity) => identity,
            Err(e) => {
                tracing::error!("cannot read this node's certificate: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if clock::wall_ms() < identity.renew_at_ms() {
            continue;
        }
        match renew_own(&agent, &member, &current).await {
            Ok(not_after_ms) => tracing::info!(
                "renewed this node's certificate (the old one expired in {} s); the new one is valid for {} s",
                identity.not_after_ms.saturating_sub(clock::wall_ms()) / 1000,
                not_after_ms.saturating_sub(clock::wall_ms()) / 1000
            ),
            Err(e) => {
                tracing::warn!(
                    "could not renew this node's certificate ({}; it expires in {} s), retrying: {}",
                    identity.serial,
                    identity.not_after_ms.saturating_sub(clock::wall_ms()) / 1000,
                    e.message
                );
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// A new key, signed by the leader, saved, then in use. Returns its expiry.
async fn renew_own(agent: &Agent, member: &Member, current: &NodeTls) -> Result<u64, ApiError> {
    let name = agent.config.name.clone();
    let key = ca::generate_node_key().map_err(|e| ApiError::internal(e.to_string()))?;
    let csr_pem = ca::certificate_request(&key, &name).map_err(|e| ApiError::internal(e.to_string()))?;
    let cert_pem = match agent.on_leader(LeaderRequest::Renew { node: name, csr_pem }).await? {
        LeaderReply::Renewed { cert_pem } => cert_pem,
        other => return Err(ApiError::internal(format!("unexpected leader reply {other:?}"))),
    };
    let identity = revocation::identity_of_pem(&cert_pem).map_err(|e| ApiError::internal(e.to_string()))?;
    let tls = NodeTls { cert_pem, key_pem: key, ca_pem: current.ca_pem.clone() };
    agent.data.save_node_tls(&tls)?;
    agent.use_node_tls(member, tls)?;
    Ok(identity.not_after_ms)
}

impl Agent {
    /// Leader side: sign a new certificate for member `node` and record it.
    pub(crate) async fn renew(&self, member: &Arc<Member>, node: &str, csr_pem: &str) -> Result<String, ApiError> {
        self.require_quorum(member)?;
        let state = member.reader.state();
        let cluster = state.cluster.clone().ok_or_else(|| ApiError::conflict("no cluster"))?;
        let record = state.node_by_name(node).ok_or_else(|| ApiError::not_found(format!("no node named '{node}'")))?;
        let mut addresses = vec![record.api.as_str()];
        addresses.extend(record.networks.iter().map(|n| n.address.as_str()));
        let now = clock::wall_ms();
        let ca = ClusterCa { cert_pem: cluster.ca_cert_pem, key_pem: cluster.ca_key_pem };
        let cert = ca
            .issue_node_certificate(
                csr_pem,
                node,
                &ca::hosts_of(addresses),
                now,
                state.settings.certificate_lifetime_ms,
            )
            .map_err(|e| ApiError::bad_request(format!("invalid certificate request: {e}")))?;
        let certificate = CertificateRecord { serial: cert.serial, not_after_ms: cert.not_after_ms };
        match self
            .write_as_leader(member, Command::RenewCertificate { node: record.id, certificate, now_ms: now })
            .await?
        {
            CommandResult::Rejected(r) => Err(rejection_error(&r)),
            _ => Ok(cert.pem),
        }
    }
}
