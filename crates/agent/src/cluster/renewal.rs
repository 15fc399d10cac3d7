//! Node certificates expire (`certificate_lifetime_ms`, 90 days by default), so every member
//! renews its own once two thirds of its lifetime have passed: a new key and a CSR, signed by
//! the leader (which checks that the request comes from the node it names), recorded in the
//! cluster database, then saved and put in use on both listeners and the peer clients. The
//! old certificate stays valid until it expires, for connections opened with it.
//!
//! The same loop carries this node's part of a CA rotation (`halo_core::ca_rotation`): it
//! trusts what the cluster trusts (saved, then in use), says so, renews from the new CA as
//! soon as that issues, and, on the leader, takes the rotation's next step once it may.

use std::sync::Arc;
use std::time::Duration;

use halo_core::command::{Command, CommandResult};
use halo_core::state::{CertificateRecord, ClusterInfo};
use halo_security::ca::{self, ClusterCa};
use halo_security::revocation;

use crate::clock;
use crate::cluster::agent::{Agent, LeaderReply, LeaderRequest, Member, rejection_error};
use crate::error::AgentError;
use crate::transport::identity::NodeTls;

/// How often a member looks at its certificate's age.
const CHECK: Duration = Duration::from_secs(1);
/// After a failed renewal (no leader, no quorum), the next try.
const RETRY: Duration = Duration::from_secs(10);

/// The member's renewal loop; runs for the life of the agent.
pub async fn run(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(CHECK).await;
        let Some(member) = agent.member().cloned() else { continue };
        if let Err(e) = follow_ca_rotation(&agent, &member).await {
            tracing::warn!("CA rotation: {}; retrying", e);
            tokio::time::sleep(RETRY).await;
            continue;
        }
        let current = member.node_tls();
        let identity = match revocation::identity_of_pem(&current.cert_pem) {
            Ok(identity) => identity,
            Err(e) => {
                tracing::error!("cannot read this node's certificate: {e}");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let from_old_ca = issued_by_old_ca(&member, &identity.serial);
        if clock::wall_ms() < identity.renew_at_ms() && !from_old_ca {
            continue;
        }
        if from_old_ca {
            tracing::info!("renewing this node's certificate from the new CA");
        }
        match renew_own(&agent, &member, &current).await {
            Ok(not_after_ms) => tracing::info!(
                "renewed this node's certificate (the old one would have expired in {} s); the new one is valid for {} s",
                identity.not_after_ms.saturating_sub(clock::wall_ms()) / 1000,
                not_after_ms.saturating_sub(clock::wall_ms()) / 1000
            ),
            Err(e) => {
                tracing::warn!(
                    "could not renew this node's certificate ({}; it expires in {} s), retrying: {}",
                    identity.serial,
                    identity.not_after_ms.saturating_sub(clock::wall_ms()) / 1000,
                    e
                );
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// This node's part of a CA rotation, one step per call.
async fn follow_ca_rotation(agent: &Agent, member: &Arc<Member>) -> Result<(), AgentError> {
    let state = member.reader.state();
    let Some(cluster) = &state.cluster else { return Ok(()) };
    let current = member.node_tls();
    let trusted = cluster.trust_bundle();
    if current.ca_pem != trusted {
        let tls = NodeTls { ca_pem: trusted, ..current };
        agent.data.save_node_tls(&tls)?;
        agent.use_node_tls(member, tls)?;
        let how = if cluster.ca_rotation.is_some() { "the new CA beside the old" } else { "the new CA only" };
        tracing::info!("this node now trusts {how}");
        return Ok(());
    }
    let Some(rotation) = &cluster.ca_rotation else { return Ok(()) };
    if !rotation.trusted_by.contains(&member.id) {
        let command = Command::AcknowledgeCa { node: member.id, ca_sha256: rotation.ca_sha256.clone() };
        agent.on_leader(LeaderRequest::Write(command)).await?;
        return Ok(());
    }
    if member.consensus.is_leader()
        && let Some(step) = halo_core::ca_rotation::next_step(&state)
    {
        match agent.write_as_leader(member, step).await? {
            CommandResult::Rejected(r) => return Err(rejection_error(&r)),
            _ => tracing::info!("CA rotation: next step taken"),
        }
    }
    Ok(())
}

/// A rotation's new CA issues now, and this node's certificate (`serial`) is not from it.
fn issued_by_old_ca(member: &Member, serial: &str) -> bool {
    let state = member.reader.state();
    let Some(rotation) = state.cluster.as_ref().and_then(|c| c.ca_rotation.as_ref()) else { return false };
    if rotation.stage != halo_core::ca_rotation::CaStage::Issuing {
        return false;
    }
    let record = state.certificates.get(&member.id).and_then(|c| c.iter().find(|c| c.serial == serial));
    record.is_none_or(|c| c.ca_sha256 != rotation.ca_sha256)
}

/// A new key, signed by the leader, saved, then in use. Returns its expiry.
async fn renew_own(agent: &Agent, member: &Member, current: &NodeTls) -> Result<u64, AgentError> {
    let name = agent.config.name.clone();
    let key = ca::generate_node_key().map_err(|e| AgentError::internal(e.to_string()))?;
    let csr_pem = ca::certificate_request(&key, &name).map_err(|e| AgentError::internal(e.to_string()))?;
    let cert_pem = match agent.on_leader(LeaderRequest::Renew { node: name, csr_pem }).await? {
        LeaderReply::Renewed { cert_pem } => cert_pem,
        other => return Err(AgentError::internal(format!("unexpected leader reply {other:?}"))),
    };
    let identity = revocation::identity_of_pem(&cert_pem).map_err(|e| AgentError::internal(e.to_string()))?;
    let tls = NodeTls { cert_pem, key_pem: key, ca_pem: current.ca_pem.clone() };
    agent.data.save_node_tls(&tls)?;
    agent.use_node_tls(member, tls)?;
    Ok(identity.not_after_ms)
}

/// Sign `csr_pem` for node `name` with the CA that issues now (a rotation's new one once
/// every node trusts it), and the record of it.
pub(crate) fn issue(
    cluster: &ClusterInfo,
    csr_pem: &str,
    name: &str,
    hosts: &[String],
    now_ms: u64,
    lifetime_ms: u64,
) -> Result<(ca::IssuedCertificate, CertificateRecord), halo_security::SecurityError> {
    let (cert_pem, key_pem, ca_sha256) = cluster.issuing_ca();
    let ca = ClusterCa { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() };
    let cert = ca.issue_node_certificate(csr_pem, name, hosts, now_ms, lifetime_ms)?;
    let record = CertificateRecord {
        serial: cert.serial.clone(),
        not_after_ms: cert.not_after_ms,
        ca_sha256: ca_sha256.unwrap_or_default().to_string(),
    };
    Ok((cert, record))
}

impl Agent {
    /// Leader side: sign a new certificate for member `node` and record it.
    pub(crate) async fn renew(&self, member: &Arc<Member>, node: &str, csr_pem: &str) -> Result<String, AgentError> {
        self.require_quorum(member)?;
        let state = member.reader.state();
        let cluster = state.cluster.clone().ok_or_else(|| AgentError::conflict("no cluster"))?;
        let record =
            state.node_by_name(node).ok_or_else(|| AgentError::not_found(format!("no node named '{node}'")))?;
        let mut addresses = vec![record.api.as_str()];
        addresses.extend(record.networks.iter().map(|n| n.address.as_str()));
        let now = clock::wall_ms();
        let (cert, certificate) =
            issue(&cluster, csr_pem, node, &ca::hosts_of(addresses), now, state.settings.certificate_lifetime_ms)
                .map_err(|e| AgentError::bad_request(format!("invalid certificate request: {e}")))?;
        match self
            .write_as_leader(member, Command::RenewCertificate { node: record.id, certificate, now_ms: now })
            .await?
        {
            CommandResult::Rejected(r) => Err(rejection_error(&r)),
            _ => Ok(cert.pem),
        }
    }
}
