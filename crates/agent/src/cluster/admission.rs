//! The admitting side of a join (the joining side is `join`): the leader checks the join token
//! and the node's record against its copy of the state before it signs a certificate or
//! proposes anything, so a refused join costs neither a log entry nor a signature. The state
//! machine checks the same rule again when the entry applies (two joins may race for a token).

use std::sync::Arc;

use halo_api::membership::AdmissionRequest;
use halo_api::membership::AdmissionResponse;
use halo_core::command::{Command, CommandResult};
use halo_core::state::{NetworkRecord, NetworkState, NodeRecord, NodeState};
use halo_security::ca;
use halo_store::PeerNode;

use crate::clock;
use crate::cluster::agent::{Agent, Member, describe, rejection_error};
use crate::error::AgentError;

/// Largest join request body: a CSR, a name and a few addresses fit in a few KiB.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

impl Agent {
    pub(crate) async fn admit(
        &self,
        member: &Arc<Member>,
        request: AdmissionRequest,
    ) -> Result<AdmissionResponse, AgentError> {
        let state = member.reader.state();
        let cluster = state.cluster.clone().ok_or_else(|| AgentError::conflict("no cluster"))?;
        let now = clock::wall_ms();
        let node = NodeRecord {
            id: 0,
            name: request.name.clone(),
            api: request.api.clone(),
            networks: request
                .networks
                .iter()
                .map(|a| NetworkRecord { address: a.clone(), state: NetworkState::Up })
                .collect(),
            state: NodeState::Joining,
            witness: request.witness,
            voter: false,
            joined_at_ms: now,
            state_since_ms: now,
            drain: false,
            capacity: request.capacity,
            fence_request: None,
            data_disk_low: None,
        };
        let token_secret_sha256 = halo_security::sha256_hex(&request.token_secret);
        state.check_admission(&request.token_id, &token_secret_sha256, now, &node).map_err(|r| rejection_error(&r))?;
        // Only an admissible request may find out whether the cluster is quorate.
        self.require_quorum(member)?;
        if let Some(theirs) = request.raft
            && theirs != state.settings.raft
        {
            return Err(AgentError::bad_request(format!(
                "agent '{}' is configured with Raft timing {}, but this cluster runs {}; every node runs the same: \
                 remove [timing] from its configuration (it then takes the cluster's)",
                request.name,
                describe(&theirs),
                describe(&state.settings.raft)
            )));
        }
        let mut addresses = vec![request.api.as_str()];
        addresses.extend(request.networks.iter().map(String::as_str));
        for address in &addresses {
            address
                .parse::<std::net::SocketAddr>()
                .map_err(|_| AgentError::bad_request(format!("invalid address '{address}' in join request")))?;
        }
        // Sign before committing anything, so a bad CSR changes nothing.
        let (cert, certificate) = crate::cluster::renewal::issue(
            &cluster,
            &request.csr_pem,
            &request.name,
            &ca::hosts_of(addresses),
            now,
            state.settings.certificate_lifetime_ms,
        )
        .map_err(|e| AgentError::bad_request(format!("invalid certificate request: {e}")))?;
        let command = Command::AdmitNode {
            token_id: request.token_id.clone(),
            token_secret_sha256,
            now_ms: now,
            node,
            certificate: Some(certificate),
        };
        let (id, voter) = match self.write_as_leader(member, command).await? {
            CommandResult::NodeAdmitted { id, voter } => (id, voter),
            CommandResult::Rejected(r) => return Err(rejection_error(&r)),
            _ => return Err(AgentError::internal("admission returned no node id")),
        };
        let peer =
            PeerNode { name: request.name.clone(), api: request.api.clone(), networks: request.networks.clone() };
        // Non-blocking: the new node starts Raft only after it gets this answer. The manager
        // promotes it to voter once it has caught up (and retries this if we crash now).
        if let Err(e) = member.consensus.add_learner(id, peer).await {
            tracing::warn!("adding learner {id} failed, the manager will retry: {e}");
        }
        // Mid-rotation, both CAs: the new node trusts what the others do.
        let ca_cert_pem = cluster.trust_bundle();
        Ok(AdmissionResponse {
            id,
            voter,
            cluster: cluster.name,
            cluster_id: cluster.id,
            cert_pem: cert.pem,
            ca_cert_pem,
            raft: state.settings.raft,
            revoked: state.revoked.keys().cloned().collect(),
        })
    }
}
