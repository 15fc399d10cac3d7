//! Events: every visible state change, in words, derived from the state before and after a
//! committed command. Pure and deterministic, so every node records the same events.

use serde::{Deserialize, Serialize};

use crate::state::ClusterState;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Event {
    /// Position in the cluster's event history (increasing; from the Raft log index).
    pub seq: u64,
    pub at_ms: u64,
    /// `node`, `network`, `role`, `validation`, `token` or `cluster`.
    pub kind: String,
    /// The node or role it is about.
    pub subject: String,
    pub message: String,
    /// The API token whose request made the change (`access`); none for the cluster's own
    /// decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// The events between `before` and `after`, stamped `at_ms`, numbered from `first_seq`.
pub fn diff(before: &ClusterState, after: &ClusterState, at_ms: u64, first_seq: u64) -> Vec<Event> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for node in after.nodes.values() {
        match before.nodes.get(&node.id) {
            None => out.push(("node".into(), node.name.clone(), format!("{} joined the cluster", node.name))),
            Some(old) => {
                if old.state != node.state {
                    let message = format!("{}: {} -> {}", node.name, old.state.as_str(), node.state.as_str());
                    out.push(("node".into(), node.name.clone(), message));
                }
                match (&old.fence_request, &node.fence_request) {
                    (None, Some(why)) => {
                        out.push(("node".into(), node.name.clone(), format!("{} is being fenced: {why}", node.name)))
                    }
                    (Some(_), None) => out.push((
                        "node".into(),
                        node.name.clone(),
                        format!("{} was fenced; it runs nothing of its former roles", node.name),
                    )),
                    _ => {}
                }
                match (&old.data_disk_low, &node.data_disk_low) {
                    (None, Some(space)) => out.push((
                        "node".into(),
                        node.name.clone(),
                        format!("{}'s data disk is nearly full ({space})", node.name),
                    )),
                    (Some(_), None) => out.push((
                        "node".into(),
                        node.name.clone(),
                        format!("{}'s data disk has room again", node.name),
                    )),
                    _ => {}
                }
                for (i, (a, b)) in old.networks.iter().zip(&node.networks).enumerate() {
                    if a.state != b.state {
                        let message = format!(
                            "{} network {i} ({}): {} -> {}",
                            node.name,
                            b.address,
                            a.state.as_str(),
                            b.state.as_str()
                        );
                        out.push(("network".into(), node.name.clone(), message));
                    }
                }
            }
        }
    }
    for old in before.nodes.values().filter(|n| !after.nodes.contains_key(&n.id)) {
        out.push(("node".into(), old.name.clone(), format!("{} was removed from the cluster", old.name)));
    }
    for role in after.roles.values() {
        let name = &role.spec.name;
        let Some(old) = before.roles.get(name) else {
            out.push(("role".into(), name.clone(), format!("role {name} created")));
            continue;
        };
        if old.spec.desired != role.spec.desired {
            out.push(("role".into(), name.clone(), format!("role {name}: asked to be {:?}", role.spec.desired)));
        }
        if (old.decisions.len() != role.decisions.len() || old.decisions.last() != role.decisions.last())
            && let Some(decision) = role.decisions.last()
        {
            let message = format!("role {name}: {} (generation {})", decision.summary, decision.generation);
            out.push(("role".into(), name.clone(), message));
        }
        if old.state != role.state {
            let message = format!("role {name}: {} -> {} ({})", old.state.as_str(), role.state.as_str(), role.detail);
            out.push(("role".into(), name.clone(), message));
        }
    }
    // A validation result is news when it changes (a steady result is not repeated).
    if let Some(record) = &after.last_validation
        && before.last_validation.as_ref().is_none_or(|b| b.result != record.result)
    {
        out.push(("validation".into(), record.by.clone(), format!("validation: {}", record.summary())));
    }
    for old in before.roles.values().filter(|r| !after.roles.contains_key(&r.spec.name)) {
        out.push(("role".into(), old.spec.name.clone(), format!("role {} deleted", old.spec.name)));
    }
    for (name, token) in after.api_tokens.iter().filter(|(n, _)| !before.api_tokens.contains_key(*n)) {
        out.push(("token".into(), name.clone(), format!("{} token {name} created", token.role)));
    }
    for name in before.api_tokens.keys().filter(|n| !after.api_tokens.contains_key(*n)) {
        out.push(("token".into(), name.clone(), format!("token {name} revoked or expired")));
    }
    if let (Some(old), Some(new)) = (&before.cluster, &after.cluster) {
        if old.admin_token_sha256 != new.admin_token_sha256 {
            out.push(("token".into(), crate::access::ADMIN.into(), "the admin token was rotated".into()));
        }
        if old.heartbeat_key_hex != new.heartbeat_key_hex {
            out.push(("cluster".into(), new.name.clone(), "the heartbeat key was rotated".into()));
        }
        use crate::ca_rotation::CaStage;
        let message = match (old.ca_rotation.as_ref().map(|r| r.stage), new.ca_rotation.as_ref().map(|r| r.stage)) {
            (None, Some(_)) => Some("CA rotation started: every node is to trust the new CA beside the old"),
            (Some(CaStage::Trusting), Some(CaStage::Issuing)) => {
                Some("CA rotation: every node trusts the new CA; nodes renew their certificates from it")
            }
            (Some(_), None) => Some("CA rotation finished: the old CA is trusted no more"),
            _ => None,
        };
        if let Some(message) = message {
            out.push(("cluster".into(), new.name.clone(), message.into()));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (kind, subject, message))| Event {
            seq: first_seq + i as u64,
            at_ms,
            kind,
            subject,
            message,
            by: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};
    use crate::state::{NetworkState, NodeState};

    #[test]
    fn node_network_and_role_changes_become_events() {
        let before = cluster();
        let mut after = before.clone();
        if let Some(b) = after.nodes.get_mut(&2) {
            b.state = NodeState::Down;
            b.networks[0].state = NetworkState::Down;
        }
        after.roles.insert("web".into(), role("web"));
        let events = diff(&before, &after, 5, 100);
        let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            ["b: up -> down", "b network 0 (127.0.0.2:7401): up -> down", "role web created"],
            "{events:?}"
        );
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [100, 101, 102]);
        assert!(diff(&after, &after, 6, 0).is_empty());
    }
}
