//! The heartbeat failure detector: who is alive, on which networks.
//!
//! Every node sends a heartbeat to every other node on each network it shares with it. The
//! detector only remembers when each (node, network) was last heard; the leader turns that into
//! committed node states with [`assess`](FailureDetector::assess). A node is down only when it is
//! silent on *every* network: a single silent network makes that network `degraded`, never a
//! failover.

use std::collections::BTreeMap;

use crate::NodeId;
use crate::state::{NetworkState, NodeRecord, NodeState};

#[derive(Debug, Clone)]
pub struct FailureDetector {
    timeout_ms: u64,
    peers: BTreeMap<NodeId, PeerLiveness>,
}

#[derive(Debug, Clone)]
struct PeerLiveness {
    /// When we started watching: silence is only counted from here (a fresh agent or a new
    /// member must not be declared down before it had a chance to speak).
    watched_since_ms: u64,
    /// Last time heard on each network index.
    last_heard_ms: Vec<Option<u64>>,
}

/// What the detector concludes about one node at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Heard on at least one network within the timeout.
    pub alive: bool,
    /// Ever heard at all since we started watching.
    pub ever_heard: bool,
    /// Per network: heard within the timeout.
    pub networks: Vec<bool>,
    /// The last time heard on any network.
    pub last_heard_ms: Option<u64>,
}

impl FailureDetector {
    pub fn new(timeout_ms: u64) -> Self {
        Self { timeout_ms, peers: BTreeMap::new() }
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    pub fn set_timeout_ms(&mut self, timeout_ms: u64) {
        self.timeout_ms = timeout_ms;
    }

    /// Start (or keep) watching `node` with `networks` heartbeat paths.
    pub fn watch(&mut self, node: NodeId, networks: usize, now_ms: u64) {
        let peer = self
            .peers
            .entry(node)
            .or_insert_with(|| PeerLiveness { watched_since_ms: now_ms, last_heard_ms: Vec::new() });
        peer.last_heard_ms.resize(networks, None);
    }

    /// Stop watching nodes not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(NodeId) -> bool) {
        self.peers.retain(|id, _| keep(*id));
    }

    /// A heartbeat from `node` arrived on `network` at `now_ms`.
    pub fn heard(&mut self, node: NodeId, network: usize, now_ms: u64) {
        if let Some(peer) = self.peers.get_mut(&node)
            && let Some(slot) = peer.last_heard_ms.get_mut(network)
        {
            // Clocks passed in are monotonic, but never let a late packet move time back.
            *slot = Some(slot.map_or(now_ms, |t| t.max(now_ms)));
        }
    }

    /// Whether `node` was heard on `network` within the timeout.
    pub fn network_alive(&self, node: NodeId, network: usize, now_ms: u64) -> bool {
        self.peers
            .get(&node)
            .and_then(|p| p.last_heard_ms.get(network).copied().flatten())
            .is_some_and(|t| now_ms.saturating_sub(t) <= self.timeout_ms)
    }

    pub fn assess(&self, node: NodeId, now_ms: u64) -> Assessment {
        let Some(peer) = self.peers.get(&node) else {
            return Assessment { alive: false, ever_heard: false, networks: Vec::new(), last_heard_ms: None };
        };
        let networks: Vec<bool> = (0..peer.last_heard_ms.len()).map(|i| self.network_alive(node, i, now_ms)).collect();
        let ever_heard = peer.last_heard_ms.iter().any(Option::is_some);
        // Within the grace period after we started watching, a node is given the benefit of
        // the doubt: a new leader must not fail over nodes it simply has not heard yet.
        let in_grace = now_ms.saturating_sub(peer.watched_since_ms) <= self.timeout_ms;
        let alive = networks.iter().any(|&a| a) || (in_grace && !ever_heard);
        let last_heard_ms = peer.last_heard_ms.iter().flatten().copied().max();
        Assessment { alive, ever_heard, networks, last_heard_ms }
    }
}

/// The committed state a node should have, given what the leader's detector sees.
///
/// Returns `None` when nothing needs to change. The leader itself is never judged by its own
/// detector: it is alive by definition, and its networks are reported as up.
pub fn judge(record: &NodeRecord, assessment: &Assessment, is_self: bool) -> (NodeState, Vec<NetworkState>) {
    let net_count = record.networks.len();
    if is_self {
        let state = if record.state == NodeState::Paused { NodeState::Paused } else { NodeState::Up };
        return (state, vec![NetworkState::Up; net_count]);
    }
    let networks: Vec<NetworkState> = (0..net_count)
        .map(|i| {
            if !assessment.alive {
                NetworkState::Down
            } else if assessment.networks.get(i).copied().unwrap_or(false) || !assessment.ever_heard {
                NetworkState::Up
            } else {
                NetworkState::Degraded
            }
        })
        .collect();
    let state = match (record.state, assessment.alive) {
        (NodeState::Paused, true) => NodeState::Paused,
        // A joining node stays joining until the leader promotes it (see the agent's manager).
        (NodeState::Joining, _) => NodeState::Joining,
        (_, true) => NodeState::Up,
        (_, false) => NodeState::Down,
    };
    (state, networks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NetworkRecord;

    fn record(state: NodeState) -> NodeRecord {
        NodeRecord {
            id: 2,
            name: "b".into(),
            api: "127.0.0.2:1".into(),
            networks: vec![
                NetworkRecord { address: "127.0.0.2:2".into(), state: NetworkState::Up },
                NetworkRecord { address: "127.0.1.2:2".into(), state: NetworkState::Up },
            ],
            state,
            witness: false,
            voter: true,
            joined_at_ms: 0,
            state_since_ms: 0,
            drain: false,
            capacity: None,
            fence_request: None,
            data_disk_low: None,
        }
    }

    #[test]
    fn silent_on_one_network_is_degraded_not_down() {
        let mut d = FailureDetector::new(1000);
        d.watch(2, 2, 0);
        for t in (0..=5000).step_by(100) {
            d.heard(2, 0, t);
            if t < 2000 {
                d.heard(2, 1, t);
            }
        }
        let a = d.assess(2, 5000);
        assert!(a.alive);
        assert_eq!(a.networks, vec![true, false]);
        let (state, nets) = judge(&record(NodeState::Up), &a, false);
        assert_eq!(state, NodeState::Up);
        assert_eq!(nets, vec![NetworkState::Up, NetworkState::Degraded]);
    }

    #[test]
    fn silent_on_all_networks_is_down_after_the_timeout_only() {
        let mut d = FailureDetector::new(1000);
        d.watch(2, 2, 0);
        d.heard(2, 0, 500);
        d.heard(2, 1, 500);
        assert!(d.assess(2, 1500).alive, "exactly at the timeout it is still alive");
        let a = d.assess(2, 1501);
        assert!(!a.alive);
        let (state, nets) = judge(&record(NodeState::Up), &a, false);
        assert_eq!(state, NodeState::Down);
        assert_eq!(nets, vec![NetworkState::Down, NetworkState::Down]);
    }

    #[test]
    fn a_node_never_heard_gets_a_grace_period() {
        let mut d = FailureDetector::new(1000);
        d.watch(2, 1, 10_000);
        assert!(d.assess(2, 10_900).alive);
        assert!(!d.assess(2, 11_001).alive);
    }

    #[test]
    fn late_packets_do_not_move_time_back() {
        let mut d = FailureDetector::new(1000);
        d.watch(2, 1, 0);
        d.heard(2, 0, 3000);
        d.heard(2, 0, 100);
        assert!(d.assess(2, 3900).alive);
    }

    #[test]
    fn paused_and_joining_are_sticky_while_alive() {
        let alive = Assessment { alive: true, ever_heard: true, networks: vec![true, true], last_heard_ms: Some(1) };
        let dead = Assessment { alive: false, ever_heard: true, networks: vec![false, false], last_heard_ms: Some(1) };
        assert_eq!(judge(&record(NodeState::Paused), &alive, false).0, NodeState::Paused);
        assert_eq!(judge(&record(NodeState::Paused), &dead, false).0, NodeState::Down);
        assert_eq!(judge(&record(NodeState::Joining), &alive, false).0, NodeState::Joining);
        assert_eq!(judge(&record(NodeState::Down), &dead, true).0, NodeState::Up);
    }
}
