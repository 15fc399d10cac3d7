//! How the leader judges whether a node may still run roles: the lease rule applied to what
//! its failure detector observed. Pure: the daemon's manager and the simulator both call it.

use crate::NodeId;
use crate::lease::{Former, LeaseTiming};
use crate::policy::Liveness;
use crate::state::NodeRecord;

/// When this node became leader, and the leader it replaced if the lease rule lets it recover
/// that one's roles early ([`LeaseTiming::lost_at_former_leader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    pub at_ms: u64,
    pub former: Option<Former>,
}

/// What the leader observed of one node, on its own monotonic clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// Heard on some network within the node timeout.
    pub alive: bool,
    pub ever_heard: bool,
    pub last_heard_ms: Option<u64>,
    /// When this leader last granted it a lease.
    pub last_granted_ms: Option<u64>,
}

/// The verdict on `node` as seen by leader `me`. `fence` is asked (and may start a power-off
/// through the node's fence device) only when fencing is warranted; `Some(why)` means the
/// power-off is confirmed. Without a device, pass a closure that returns `None`.
pub fn verdict(
    node: &NodeRecord,
    me: NodeId,
    seen: &Observed,
    timing: &LeaseTiming,
    takeover: Takeover,
    now_ms: u64,
    mut fence: impl FnMut() -> Option<String>,
) -> Liveness {
    let since = takeover.at_ms;
    if node.fence_request.is_some() {
        // It could not stop a role, so it gets no lease any more: it is safe once its device
        // confirmed the power-off, or once the last lease it was granted has run out (its
        // fence guard kills everything then), however well it answers.
        let last = seen.last_granted_ms.unwrap_or(since);
        return if let Some(why) = fence() {
            Liveness::Lost(why)
        } else if now_ms >= timing.lost_at(last, since) {
            Liveness::Lost("was fenced: it got no lease since it could not stop a role".into())
        } else {
            Liveness::Suspect
        };
    }
    if node.id == me || (seen.alive && seen.ever_heard) {
        return Liveness::Alive;
    }
    // The fast path: a fence agent confirmed the power-off. A new leader that never heard the
    // node waits a lease first: it may simply not have heard it yet.
    if (seen.ever_heard || now_ms >= since + timing.lease_ms)
        && let Some(why) = fence()
    {
        return Liveness::Lost(why);
    }
    // A grant is made on receipt of a heartbeat, after the holder dated its lease: whichever
    // came later bounds the lease.
    let last_heard = seen.last_heard_ms.max(seen.last_granted_ms).unwrap_or(since);
    let lost_at = if let Some(former) = takeover.former.filter(|f| f.id == node.id) {
        timing.lost_at_former_leader(&former, since, seen.last_granted_ms)
    } else {
        timing.lost_at(last_heard, since)
    };
    if now_ms >= lost_at {
        Liveness::Lost("stopped answering and its lease has run out".into())
    } else {
        Liveness::Suspect
    }
}

/// Nodes that were to be fenced, are now provably lost, and hold no role any more (all were
/// recovered elsewhere): they may have leases again.
pub fn fenced_and_recovered(
    state: &crate::state::ClusterState,
    liveness: &std::collections::BTreeMap<NodeId, Liveness>,
) -> Vec<NodeId> {
    state
        .nodes
        .values()
        .filter(|n| n.fence_request.is_some())
        .filter(|n| matches!(liveness.get(&n.id), Some(Liveness::Lost(_))))
        .filter(|n| !state.roles.values().any(|r| r.owner == Some(n.id) || r.releasing == Some(n.id)))
        .map(|n| n.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::node;
    use crate::state::NodeState;

    const T: LeaseTiming = LeaseTiming { lease_ms: 2000, margin_ms: 200, grant_window_ms: 450 };
    const AT: Takeover = Takeover { at_ms: 0, former: None };
    fn no_fence() -> Option<String> {
        None
    }

    #[test]
    fn silent_nodes_are_lost_only_after_their_lease_and_margin() {
        let n = node(2, "b", NodeState::Up);
        let heard = Observed { alive: false, ever_heard: true, last_heard_ms: Some(10_000), last_granted_ms: None };
        assert_eq!(verdict(&n, 1, &heard, &T, AT, 12_199, no_fence), Liveness::Suspect);
        assert!(matches!(verdict(&n, 1, &heard, &T, AT, 12_200, no_fence), Liveness::Lost(_)));
        let alive = Observed { alive: true, ..heard };
        assert_eq!(verdict(&n, 1, &alive, &T, AT, 99_000, no_fence), Liveness::Alive);
        // A confirmed power-off needs no lease to run out.
        let off = verdict(&n, 1, &heard, &T, AT, 10_100, || Some("was powered off".into()));
        assert_eq!(off, Liveness::Lost("was powered off".into()));
    }

    #[test]
    fn a_node_to_fence_is_lost_once_its_last_grant_ran_out_however_well_it_answers() {
        let mut n = node(2, "b", NodeState::Up);
        n.fence_request = Some("could not stop role x".into());
        let seen =
            Observed { alive: true, ever_heard: true, last_heard_ms: Some(20_000), last_granted_ms: Some(5_000) };
        assert_eq!(verdict(&n, 1, &seen, &T, AT, 7_199, no_fence), Liveness::Suspect);
        assert!(matches!(verdict(&n, 1, &seen, &T, AT, 7_200, no_fence), Liveness::Lost(_)));
        // The leader itself too.
        n.id = 1;
        assert!(matches!(verdict(&n, 1, &seen, &T, AT, 7_200, no_fence), Liveness::Lost(_)));
    }

    #[test]
    fn the_former_leader_is_lost_once_its_own_lease_ended_as_the_voters_bound_it() {
        let n = node(2, "b", NodeState::Up);
        let seen = Observed { alive: false, ever_heard: true, last_heard_ms: Some(9_900), last_granted_ms: None };
        let former = Former { id: 2, seen_leading_ms: 0, acked_by_ms: 9_300 };
        let takeover = Takeover { at_ms: 10_000, former: Some(former) };
        // Heard before the takeover, it got no grant from us; the voters' word is enough.
        assert_eq!(verdict(&n, 1, &seen, &T, takeover, 10_499, no_fence), Liveness::Suspect);
        assert!(matches!(verdict(&n, 1, &seen, &T, takeover, 10_500, no_fence), Liveness::Lost(_)));
        // Any other node, or the former leader before the voters said: the full wait.
        let other = Takeover { former: Some(Former { id: 3, ..former }), ..takeover };
        assert_eq!(verdict(&n, 1, &seen, &T, other, 12_649, no_fence), Liveness::Suspect);
        assert!(matches!(verdict(&n, 1, &seen, &T, other, 12_650, no_fence), Liveness::Lost(_)));
        // Granted a lease by us after the takeover: it may run on for a full lease.
        let granted = Observed { last_granted_ms: Some(10_050), ..seen };
        assert_eq!(verdict(&n, 1, &granted, &T, takeover, 12_249, no_fence), Liveness::Suspect);
    }
}
