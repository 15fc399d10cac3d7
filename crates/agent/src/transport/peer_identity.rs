//! Who is on the other end of a node-to-node request, and what it may speak for.
//!
//! The TLS handshake already refused a certificate the cluster CA did not issue or that the
//! cluster revoked. Here every request is checked again, because a connection can outlive a
//! revocation, and its certificate is bound to the node it names: a node may claim only its
//! own Raft id (as leader in an append, as candidate in a vote), and only a member may forward
//! requests, probe or read logs.

use std::collections::BTreeSet;

use halo_core::NodeId;
use halo_core::state::ClusterState;
use halo_security::revocation::{CertIdentity, Revoked};
use halo_store::StateReader;

use crate::error::AgentError;

/// The certificate a node-to-node connection presented (set by `serve`).
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub CertIdentity);

/// Whether `identity` may make a request that speaks for Raft node `claimed` (`None`: a
/// request that speaks for no node, which only members may make).
pub fn check(
    state: &ClusterState,
    revoked: &Revoked,
    identity: Option<&PeerIdentity>,
    claimed: Option<NodeId>,
    now_ms: u64,
) -> Result<(), AgentError> {
    let forbidden = |why: String| AgentError::forbidden(why);
    let Some(PeerIdentity(identity)) = identity else {
        return Err(AgentError::Unauthenticated("no node certificate on this connection".into()));
    };
    if revoked.contains(&identity.serial) {
        return Err(forbidden(format!("the certificate of '{}' was revoked", identity.name)));
    }
    // The handshake checked validity; a connection can outlive it.
    if identity.not_after_ms <= now_ms {
        return Err(forbidden(format!("the certificate of '{}' has expired", identity.name)));
    }
    let known = state.node_by_name(&identity.name).map(|n| n.id);
    if let Some(id) = known
        && let Some(issued) = state.certificates.get(&id)
        && !issued.iter().any(|c| c.serial == identity.serial)
    {
        return Err(forbidden(format!("this certificate is not one the cluster issued to node '{}'", identity.name)));
    }
    match (known, claimed) {
        (Some(id), Some(claimed)) if id != claimed => {
            Err(forbidden(format!("node '{}' (id {id}) cannot speak for node id {claimed}", identity.name)))
        }
        (None, Some(claimed)) if state.nodes.contains_key(&claimed) => {
            Err(forbidden(format!("'{}' is not a member, and node id {claimed} is another node's", identity.name)))
        }
        // A node that has not caught up yet knows nobody: Raft must reach it to change that.
        (None, None) if state.cluster.is_some() => {
            Err(forbidden(format!("'{}' is not a member of this cluster", identity.name)))
        }
        _ => Ok(()),
    }
}

/// Keep `revoked` equal to the cluster database's list: `seed` (what the leader said at
/// admission) until this node has the cluster's state, then the state's, at every change.
pub async fn follow_revocations(mut reader: StateReader, revoked: Revoked, seed: BTreeSet<String>) {
    loop {
        let state = reader.state();
        let serials: BTreeSet<String> =
            if state.cluster.is_some() { state.revoked.keys().cloned().collect() } else { seed.clone() };
        if revoked.replace(serials) {
            tracing::info!("revoked certificates: {}", state.revoked.len());
        }
        if !reader.changed().await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use halo_core::state::{CertificateRecord, NodeRecord, NodeState, RevokedCertificate};

    use super::*;

    fn state() -> ClusterState {
        let mut state = ClusterState::default();
        state.cluster = Some(halo_core::state::ClusterInfo {
            name: "c".into(),
            id: "x".into(),
            created_at_ms: 0,
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            admin_token_sha256: String::new(),
            heartbeat_key_hex: String::new(),
            ca_rotation: None,
        });
        for (id, name) in [(1, "a"), (2, "b")] {
            state.nodes.insert(
                id,
                NodeRecord {
                    id,
                    name: name.into(),
                    api: String::new(),
                    networks: Vec::new(),
                    state: NodeState::Up,
                    witness: false,
                    voter: true,
                    joined_at_ms: 0,
                    state_since_ms: 0,
                    drain: false,
                    capacity: None,
                    fence_request: None,
                    data_disk_low: None,
                },
            );
            state.certificates.insert(
                id,
                vec![CertificateRecord { serial: format!("{name}1"), not_after_ms: 9, ca_sha256: String::new() }],
            );
        }
        state.revoked.insert("z1".into(), RevokedCertificate { node: "z".into(), not_after_ms: 9, revoked_at_ms: 1 });
        state
    }

    fn peer(name: &str, serial: &str) -> PeerIdentity {
        PeerIdentity(CertIdentity { name: name.into(), serial: serial.into(), not_before_ms: 0, not_after_ms: 9 })
    }

    #[test]
    fn a_certificate_speaks_only_for_its_own_node_and_a_revoked_one_for_none() {
        let state = state();
        let revoked = Revoked::default();
        revoked.replace(state.revoked.keys().cloned().collect());
        let ok = |p: &PeerIdentity, claimed| check(&state, &revoked, Some(p), claimed, 5).is_ok();
        assert!(ok(&peer("a", "a1"), Some(1)));
        assert!(ok(&peer("a", "a1"), None));
        assert!(!ok(&peer("a", "a1"), Some(2)), "a speaks for b");
        assert!(!ok(&peer("a", "b1"), Some(1)), "b's certificate under a's name");
        assert!(!ok(&peer("z", "z1"), Some(9)), "revoked");
        assert!(!ok(&peer("y", "y1"), Some(2)), "a stranger speaks for b");
        assert!(!ok(&peer("y", "y1"), None), "a stranger forwards");
        assert!(ok(&peer("y", "y1"), Some(9)), "a node this one does not know yet may reach Raft");
        assert_eq!(check(&state, &revoked, None, None, 5).map_err(|e| e.status().as_u16()), Err(401));
        assert!(check(&state, &revoked, Some(&peer("a", "a1")), Some(1), 9).is_err(), "expired");
        // A node without the cluster's state yet lets Raft bring it.
        let fresh = ClusterState::default();
        assert!(check(&fresh, &revoked, Some(&peer("a", "a1")), Some(1), 5).is_ok());
        assert!(check(&fresh, &revoked, Some(&peer("z", "z1")), Some(1), 5).is_err(), "the seed still counts");
    }
}
