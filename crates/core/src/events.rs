//! Events: every visible state change, in words, derived from the state before and after a
//! committed command. Pure and deterministic, so every node records the same events.

use serde::{Deserialize, Serialize};

use crate::ca_rotation::CaStage;
use crate::role::{DecisionKind, Desired, RoleState};
use crate::state::{ClusterState, NetworkState, NodeState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Event {
    /// Position in the cluster's event history (increasing; from the Raft log index).
    pub seq: u64,
    pub at_ms: u64,
    /// What it is about (the node, network, role... named by `subject`).
    pub kind: EventKind,
    /// The node or role it is about.
    pub subject: String,
    /// The change, in words.
    pub message: String,
    /// The change, typed: what tools count and filter on. Absent on events recorded before
    /// events had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// The API token whose request made the change (`access`); none for the cluster's own
    /// decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Node,
    Network,
    Role,
    Validation,
    Token,
    Cluster,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Node,
        EventKind::Network,
        EventKind::Role,
        EventKind::Validation,
        EventKind::Token,
        EventKind::Cluster,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Node => "node",
            EventKind::Network => "network",
            EventKind::Role => "role",
            EventKind::Validation => "validation",
            EventKind::Token => "token",
            EventKind::Cluster => "cluster",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A visible change, typed (`change` in the JSON names the variant).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    NodeJoined,
    NodeRemoved,
    NodeState { from: NodeState, to: NodeState },
    NodeFencing,
    NodeFenced,
    DataDiskLow,
    DataDiskRoom,
    NetworkState { network: usize, address: String, from: NetworkState, to: NetworkState },
    RoleCreated,
    RoleDeleted,
    RoleDesired { desired: Desired },
    RoleDecision { kind: DecisionKind, generation: u64 },
    RoleState { from: RoleState, to: RoleState },
    Validation { outcome: crate::validation::Outcome },
    TokenCreated { role: crate::access::AccessRole },
    TokenRevoked,
    AdminTokenRotated,
    HeartbeatKeyRotated,
    CaRotation { stage: Option<CaStage> },
}

impl Change {
    pub fn kind(&self) -> EventKind {
        match self {
            Change::NodeJoined
            | Change::NodeRemoved
            | Change::NodeState { .. }
            | Change::NodeFencing
            | Change::NodeFenced
            | Change::DataDiskLow
            | Change::DataDiskRoom => EventKind::Node,
            Change::NetworkState { .. } => EventKind::Network,
            Change::RoleCreated
            | Change::RoleDeleted
            | Change::RoleDesired { .. }
            | Change::RoleDecision { .. }
            | Change::RoleState { .. } => EventKind::Role,
            Change::Validation { .. } => EventKind::Validation,
            Change::TokenCreated { .. } | Change::TokenRevoked | Change::AdminTokenRotated => EventKind::Token,
            Change::HeartbeatKeyRotated | Change::CaRotation { .. } => EventKind::Cluster,
        }
    }
}

/// The events between `before` and `after`, stamped `at_ms`, numbered from `first_seq`.
pub fn diff(before: &ClusterState, after: &ClusterState, at_ms: u64, first_seq: u64) -> Vec<Event> {
    let mut out: Vec<(Change, String, String)> = Vec::new();
    for node in after.nodes.values() {
        let name = &node.name;
        match before.nodes.get(&node.id) {
            None => out.push((Change::NodeJoined, name.clone(), format!("{name} joined the cluster"))),
            Some(old) => {
                if old.state != node.state {
                    let message = format!("{name}: {} -> {}", old.state.as_str(), node.state.as_str());
                    out.push((Change::NodeState { from: old.state, to: node.state }, name.clone(), message));
                }
                match (&old.fence_request, &node.fence_request) {
                    (None, Some(why)) => {
                        out.push((Change::NodeFencing, name.clone(), format!("{name} is being fenced: {why}")))
                    }
                    (Some(_), None) => out.push((
                        Change::NodeFenced,
                        name.clone(),
                        format!("{name} was fenced; it runs nothing of its former roles"),
                    )),
                    _ => {}
                }
                match (&old.data_disk_low, &node.data_disk_low) {
                    (None, Some(space)) => out.push((
                        Change::DataDiskLow,
                        name.clone(),
                        format!("{name}'s data disk is nearly full ({space})"),
                    )),
                    (Some(_), None) => {
                        out.push((Change::DataDiskRoom, name.clone(), format!("{name}'s data disk has room again")))
                    }
                    _ => {}
                }
                for (i, (a, b)) in old.networks.iter().zip(&node.networks).enumerate() {
                    if a.state != b.state {
                        let message =
                            format!("{name} network {i} ({}): {} -> {}", b.address, a.state.as_str(), b.state.as_str());
                        let change =
                            Change::NetworkState { network: i, address: b.address.clone(), from: a.state, to: b.state };
                        out.push((change, name.clone(), message));
                    }
                }
            }
        }
    }
    for old in before.nodes.values().filter(|n| !after.nodes.contains_key(&n.id)) {
        out.push((Change::NodeRemoved, old.name.clone(), format!("{} was removed from the cluster", old.name)));
    }
    for role in after.roles.values() {
        let name = &role.spec.name;
        let Some(old) = before.roles.get(name) else {
            out.push((Change::RoleCreated, name.clone(), format!("role {name} created")));
            continue;
        };
        if old.spec.desired != role.spec.desired {
            let desired = role.spec.desired;
            out.push((Change::RoleDesired { desired }, name.clone(), format!("role {name}: asked to be {desired:?}")));
        }
        if (old.decisions.len() != role.decisions.len() || old.decisions.last() != role.decisions.last())
            && let Some(decision) = role.decisions.last()
        {
            let message = format!("role {name}: {} (generation {})", decision.summary, decision.generation);
            let change = Change::RoleDecision { kind: decision.kind, generation: decision.generation };
            out.push((change, name.clone(), message));
        }
        if old.state != role.state {
            let message = format!("role {name}: {} -> {} ({})", old.state.as_str(), role.state.as_str(), role.detail);
            out.push((Change::RoleState { from: old.state, to: role.state }, name.clone(), message));
        }
    }
    // A validation result is news when it changes (a steady result is not repeated).
    if let Some(record) = &after.last_validation
        && before.last_validation.as_ref().is_none_or(|b| b.result != record.result)
    {
        let change = Change::Validation { outcome: record.result };
        out.push((change, record.by.clone(), format!("validation: {}", record.summary())));
    }
    for old in before.roles.values().filter(|r| !after.roles.contains_key(&r.spec.name)) {
        out.push((Change::RoleDeleted, old.spec.name.clone(), format!("role {} deleted", old.spec.name)));
    }
    for (name, token) in after.api_tokens.iter().filter(|(n, _)| !before.api_tokens.contains_key(*n)) {
        let change = Change::TokenCreated { role: token.role };
        out.push((change, name.clone(), format!("{} token {name} created", token.role)));
    }
    for name in before.api_tokens.keys().filter(|n| !after.api_tokens.contains_key(*n)) {
        out.push((Change::TokenRevoked, name.clone(), format!("token {name} revoked or expired")));
    }
    if let (Some(old), Some(new)) = (&before.cluster, &after.cluster) {
        if old.admin_token_sha256 != new.admin_token_sha256 {
            let admin = crate::access::ADMIN.to_string();
            out.push((Change::AdminTokenRotated, admin, "the admin token was rotated".into()));
        }
        if old.heartbeat_key_hex != new.heartbeat_key_hex {
            out.push((Change::HeartbeatKeyRotated, new.name.clone(), "the heartbeat key was rotated".into()));
        }
        let (was, is) = (old.ca_rotation.as_ref().map(|r| r.stage), new.ca_rotation.as_ref().map(|r| r.stage));
        let message = match (was, is) {
            (None, Some(_)) => Some("CA rotation started: every node is to trust the new CA beside the old"),
            (Some(CaStage::Trusting), Some(CaStage::Issuing)) => {
                Some("CA rotation: every node trusts the new CA; nodes renew their certificates from it")
            }
            (Some(_), None) => Some("CA rotation finished: the old CA is trusted no more"),
            _ => None,
        };
        if let Some(message) = message {
            out.push((Change::CaRotation { stage: is }, new.name.clone(), message.into()));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (change, subject, message))| Event {
            seq: first_seq + i as u64,
            at_ms,
            kind: change.kind(),
            subject,
            message,
            change: Some(change),
            by: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};

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
        let changes: Vec<(EventKind, Option<Change>)> = events.iter().map(|e| (e.kind, e.change.clone())).collect();
        assert_eq!(
            changes,
            [
                (EventKind::Node, Some(Change::NodeState { from: NodeState::Up, to: NodeState::Down })),
                (
                    EventKind::Network,
                    Some(Change::NetworkState {
                        network: 0,
                        address: "127.0.0.2:7401".into(),
                        from: NetworkState::Up,
                        to: NetworkState::Down
                    })
                ),
                (EventKind::Role, Some(Change::RoleCreated)),
            ]
        );
        // The JSON names the kind and the change as words, the change's fields beside them.
        let json = serde_json::to_value(&events[0]).expect("json");
        assert_eq!((json["kind"].as_str(), json["change"]["change"].as_str()), (Some("node"), Some("node_state")));
        assert_eq!(json["change"]["to"], "down");
        assert!(diff(&after, &after, 6, 0).is_empty());
    }
}
