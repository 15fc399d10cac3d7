//! One node's end of the heartbeat protocol, without I/O: what it sends, what it makes of what
//! it hears, the leases it grants while it leads and the lease it holds. The agent drives it
//! with UDP sockets and the boot-time clock, the simulator with its virtual network and
//! clocks: both run this code.
//!
//! Freshness. A datagram proves something only if it could not have been made earlier:
//! - Sequences only grow, across restarts too: the high 32 bits are the node's incarnation (a
//!   counter the agent keeps on disk), the low 32 a count. From each peer on each network only
//!   a sequence above the last one accepted counts, so a captured heartbeat replayed later is
//!   dropped.
//! - A heartbeat counts as heard only if it echoes one of *our* heartbeats that left within
//!   the node timeout: it was made after that. A receiver that restarted (and forgot what it
//!   accepted) has new sequences, so an old heartbeat echoes nothing it knows. It also means a
//!   path that works one way only counts as silent: a peer that cannot hear us cannot hear the
//!   leader's grants either.
//! - A grant counts only if it answers a heartbeat we sent, named by sequence and send time
//!   (so never one from before a restart, when the boot-time clock started again), and the
//!   lease runs from when *we* sent that heartbeat.

use std::collections::BTreeMap;

use super::{Datagram, Heartbeat, LeaseGrant};
use crate::NodeId;
use crate::former_leader::VoterReport;
use crate::lease::{Lease, LeaseTiming};
use crate::liveness::Observed;
use crate::membership::{Assessment, FailureDetector};
use crate::round_trip::{RoundTrip, RoundTrips};
use crate::state::ClusterState;

/// The first sequence of incarnation `incarnation` (see the module doc).
pub fn first_sequence(incarnation: u32) -> u64 {
    (u64::from(incarnation) << 32) + 1
}

/// While this node leads: how long ago a quorum last acknowledged it, and the commit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub acked_ago_ms: u64,
    pub committed_index: u64,
}

/// What the endpoint needs to know of the cluster at each step.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub state: &'a ClusterState,
    pub timing: LeaseTiming,
    /// Some while this node is the Raft leader.
    pub leadership: Option<Leadership>,
    /// This node's voter report, sent on its heartbeats ([`crate::former_leader`]).
    pub report: Option<VoterReport>,
}

/// A datagram to send to `to` on network `network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub to: NodeId,
    pub network: usize,
    pub datagram: Datagram,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    me: NodeId,
    next_sequence: u64,
    detector: FailureDetector,
    round_trips: RoundTrips,
    /// Per (peer, network): the last sequence accepted from it.
    accepted: BTreeMap<(NodeId, usize), u64>,
    /// The lease this node holds, and the highest commit index its grants carried.
    lease: Lease,
    lease_index: u64,
    /// While leading: when this node last granted each node a lease (its own clock; for
    /// another node, when the heartbeat it answered arrived, which is after the node dates the
    /// lease from).
    last_grant: BTreeMap<NodeId, u64>,
    /// Each peer's latest voter report, and when it arrived (this node's clock).
    reports: BTreeMap<NodeId, (u64, VoterReport)>,
}

impl Endpoint {
    /// A node's endpoint; its first heartbeat carries `first_sequence` (see [`first_sequence`]).
    pub fn new(me: NodeId, first_sequence: u64, node_timeout_ms: u64) -> Self {
        Self {
            me,
            next_sequence: first_sequence.max(1),
            detector: FailureDetector::new(node_timeout_ms),
            round_trips: RoundTrips::default(),
            accepted: BTreeMap::new(),
            lease: Lease::default(),
            lease_index: 0,
            last_grant: BTreeMap::new(),
            reports: BTreeMap::new(),
        }
    }

    /// Time to send: one heartbeat to every peer on every network of its record (each echoing
    /// the last heartbeat heard from that peer there). A leader also renews its own lease here.
    pub fn beat(&mut self, view: &View, now_us: u64) -> Vec<Outgoing> {
        let now = now_us / 1000;
        self.follow_members(view.state, now);
        self.renew_own_lease(view, now);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.round_trips.sent(sequence, now_us);
        let mut out = Vec::new();
        for node in view.state.nodes.values().filter(|n| n.id != self.me) {
            for network in 0..node.networks.len() {
                let echo = self.round_trips.echo_for(node.id, network, now_us);
                let heartbeat = Heartbeat {
                    from: self.me,
                    network: network as u8,
                    sequence,
                    sent_at_ms: now,
                    echo,
                    report: view.report,
                };
                out.push(Outgoing { to: node.id, network, datagram: Datagram::Heartbeat(heartbeat) });
            }
        }
        out
    }

    /// A datagram arrived on `network`. Returns the grant to send back, if this node leads
    /// and the heartbeat earns one.
    pub fn receive(&mut self, datagram: Datagram, network: usize, view: &View, now_us: u64) -> Option<Outgoing> {
        match datagram {
            Datagram::Heartbeat(hb) => self.heard(hb, network, view, now_us),
            Datagram::LeaseGrant(grant) => {
                self.granted(grant, network, now_us);
                None
            }
        }
    }

    fn heard(&mut self, hb: Heartbeat, network: usize, view: &View, now_us: u64) -> Option<Outgoing> {
        let now = now_us / 1000;
        if hb.from == self.me || usize::from(hb.network) != network {
            return None;
        }
        let last = self.accepted.entry((hb.from, network)).or_default();
        if hb.sequence <= *last {
            // A replay, a duplicate or a late straggler: it says nothing new.
            return None;
        }
        *last = hb.sequence;
        // Authentic and new: a report says what it says whenever it was made (it is final
        // once made), and it arrived after it was made.
        if let Some(report) = hb.report {
            self.reports.insert(hb.from, (now, report));
        }
        self.round_trips.heard(hb.from, network, hb.sequence, hb.echo, now_us);
        let fresh = self
            .round_trips
            .sent_at_us(hb.echo.sequence)
            .filter(|_| hb.echo.sequence != 0)
            .is_some_and(|sent_us| now_us.saturating_sub(sent_us) <= self.detector.timeout_ms() * 1000);
        if !fresh {
            return None;
        }
        self.detector.heard(hb.from, network, now);
        self.grant_for(&hb, view, now)
    }

    /// The leader's answer to a fresh heartbeat: a lease, while a quorum recently confirmed it
    /// leads, unless the node runs nothing (a witness) or is to be fenced.
    fn grant_for(&mut self, hb: &Heartbeat, view: &View, now: u64) -> Option<Outgoing> {
        let leadership = view.leadership?;
        if !view.timing.may_grant(Some(leadership.acked_ago_ms)) {
            return None;
        }
        view.state.nodes.get(&hb.from).filter(|n| !n.witness && n.fence_request.is_none())?;
        let last = self.last_grant.entry(hb.from).or_default();
        *last = (*last).max(now);
        let grant = LeaseGrant {
            from: self.me,
            to: hb.from,
            network: hb.network,
            sequence: hb.sequence,
            sent_at_ms: hb.sent_at_ms,
            lease_ms: view.timing.lease_ms,
            committed_index: leadership.committed_index,
        };
        Some(Outgoing { to: hb.from, network: usize::from(hb.network), datagram: Datagram::LeaseGrant(grant) })
    }

    /// A grant: it counts only if it answers a heartbeat this node sent, as sent.
    fn granted(&mut self, grant: LeaseGrant, network: usize, now_us: u64) {
        let now = now_us / 1000;
        if grant.to != self.me || usize::from(grant.network) != network {
            return;
        }
        let Some(sent_us) = self.round_trips.sent_at_us(grant.sequence) else { return };
        let sent_at = sent_us / 1000;
        if sent_at != grant.sent_at_ms {
            return;
        }
        // The leader answered after we sent: it was alive then, at least.
        self.detector.heard(grant.from, network, sent_at);
        let before = self.lease.deadline_ms();
        if self.lease.granted(sent_at, grant.lease_ms, now) {
            self.lease_index = self.lease_index.max(grant.committed_index);
        }
        debug_assert!(self.lease.deadline_ms() >= before, "a lease never shrinks");
    }

    /// The leader's own (shorter) lease runs from the last time a quorum confirmed its
    /// leadership; a leader that must be fenced stops renewing it.
    fn renew_own_lease(&mut self, view: &View, now: u64) {
        let Some(leadership) = view.leadership else { return };
        if !view.timing.may_grant(Some(leadership.acked_ago_ms))
            || view.state.nodes.get(&self.me).is_none_or(|n| n.fence_request.is_some())
        {
            return;
        }
        let acked_at = now.saturating_sub(leadership.acked_ago_ms);
        if self.lease.granted(acked_at, view.timing.leader_lease_ms(), now) {
            self.lease_index = self.lease_index.max(leadership.committed_index);
        }
        let last = self.last_grant.entry(self.me).or_default();
        *last = (*last).max(acked_at);
    }

    /// Keep the detector's watch list and the round trips equal to the current members.
    fn follow_members(&mut self, state: &ClusterState, now: u64) {
        self.detector.set_timeout_ms(state.settings.node_timeout_ms);
        self.round_trips.keep_sends_for_us(state.settings.node_timeout_ms.saturating_mul(1000));
        for node in state.nodes.values().filter(|n| n.id != self.me) {
            self.detector.watch(node.id, node.networks.len(), now);
        }
        self.detector.retain(|id| state.nodes.contains_key(&id));
        self.round_trips.retain(|id| state.nodes.contains_key(&id));
        self.accepted.retain(|(id, _), _| state.nodes.contains_key(id));
        self.reports.retain(|id, _| state.nodes.contains_key(id));
    }

    /// Each peer's latest voter report, with when it arrived.
    pub fn voter_reports(&self) -> impl Iterator<Item = (NodeId, u64, VoterReport)> + '_ {
        self.reports.iter().map(|(&id, &(arrived_ms, report))| (id, arrived_ms, report))
    }

    /// Whether this node may start roles: it holds a lease, and its copy of the database has
    /// applied what the leader had committed when it granted (a node waking from a freeze
    /// must not act on decisions that were replaced meanwhile).
    pub fn may_start(&self, applied_index: u64, now_ms: u64) -> bool {
        self.lease.valid(now_ms) && applied_index >= self.lease_index
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn assess(&self, node: NodeId, now_ms: u64) -> Assessment {
        self.detector.assess(node, now_ms)
    }

    pub fn network_alive(&self, node: NodeId, network: usize, now_ms: u64) -> bool {
        self.detector.network_alive(node, network, now_ms)
    }

    /// What the leader observed of `node`, for the lease rule ([`crate::liveness::verdict`]).
    pub fn observed(&self, node: NodeId, now_ms: u64) -> Observed {
        let assessment = self.detector.assess(node, now_ms);
        Observed {
            alive: assessment.alive,
            ever_heard: assessment.ever_heard,
            last_heard_ms: assessment.last_heard_ms,
            last_granted_ms: self.last_grant.get(&node).copied(),
        }
    }

    /// The measured round trip to `peer` on `network`, unless older than `max_age_us`.
    pub fn round_trip(&self, peer: NodeId, network: usize, now_us: u64, max_age_us: u64) -> Option<RoundTrip> {
        self.round_trips.get(peer, network, now_us, max_age_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::Echo;
    use crate::placement::tests_support::node;
    use crate::settings::ClusterSettings;
    use crate::state::NodeState;

    const TIMING: LeaseTiming = LeaseTiming { lease_ms: 2000, margin_ms: 200, grant_window_ms: 450 };

    fn cluster() -> ClusterState {
        let mut state = ClusterState { settings: ClusterSettings::default(), ..ClusterState::default() };
        for id in 1..=3 {
            state.nodes.insert(id, node(id, &format!("n{id}"), NodeState::Up));
        }
        state
    }

    fn leading(state: &ClusterState) -> View<'_> {
        View {
            state,
            timing: TIMING,
            leadership: Some(Leadership { acked_ago_ms: 10, committed_index: 7 }),
            report: None,
        }
    }

    fn following(state: &ClusterState) -> View<'_> {
        View { state, timing: TIMING, leadership: None, report: None }
    }

    /// Node 2's heartbeat to node 1 on network 0, from one round of `beat`.
    fn heartbeat_to(out: &[Outgoing], to: NodeId) -> Datagram {
        out.iter().find(|o| o.to == to && o.network == 0).map(|o| o.datagram).expect("a heartbeat")
    }

    #[test]
    fn a_fresh_heartbeat_is_heard_and_granted_and_the_grant_dates_the_lease_from_the_send() {
        let state = cluster();
        let mut leader = Endpoint::new(1, first_sequence(1), 1000);
        let mut node2 = Endpoint::new(2, first_sequence(1), 1000);
        // Node 2 has not heard the leader yet: its heartbeat echoes nothing, and proves nothing.
        let hb = heartbeat_to(&node2.beat(&following(&state), 1_000_000), 1);
        assert_eq!(leader.receive(hb, 0, &leading(&state), 1_001_000), None);
        assert!(!leader.assess(2, 1_001).ever_heard);
        // Once the leader's heartbeat reached it, its next one echoes it: heard, and granted.
        let from_leader = heartbeat_to(&leader.beat(&leading(&state), 1_002_000), 2);
        assert_eq!(node2.receive(from_leader, 0, &following(&state), 1_003_000), None);
        let hb = heartbeat_to(&node2.beat(&following(&state), 1_100_000), 1);
        let grant = leader.receive(hb, 0, &leading(&state), 1_101_000).expect("a grant");
        assert!(leader.assess(2, 1_101).alive);
        assert_eq!(leader.observed(2, 1_101).last_granted_ms, Some(1_101));
        node2.receive(grant.datagram, 0, &following(&state), 1_102_000);
        // Dated from node 2's own send at 1 100 ms, not from the grant's arrival.
        assert_eq!(node2.lease().deadline_ms(), Some(1_100 + 2000));
        assert!(node2.may_start(7, 1_200));
        assert!(!node2.may_start(6, 1_200), "the log the leader had committed is not applied yet");
    }

    #[test]
    fn a_heartbeat_carries_its_senders_voter_report_to_every_peer() {
        use crate::former_leader::{LastAppend, LeaderId};
        let state = cluster();
        let mut leader = Endpoint::new(1, first_sequence(1), 1000);
        let mut node2 = Endpoint::new(2, first_sequence(1), 1000);
        let report = VoterReport {
            vote: LeaderId { term: 5, node: 1 },
            last: LastAppend { leader: LeaderId { term: 4, node: 3 }, age_ms: 700 },
        };
        let view = View { report: Some(report), ..following(&state) };
        let hb = heartbeat_to(&node2.beat(&view, 1_000_000), 1);
        // Not fresh (it echoes nothing), but authentic and new: the report is kept.
        assert_eq!(leader.receive(hb, 0, &leading(&state), 1_001_000), None);
        assert_eq!(leader.voter_reports().collect::<Vec<_>>(), vec![(2, 1_001, report)]);
        // A replay is not a new arrival.
        leader.receive(hb, 0, &leading(&state), 1_500_000);
        assert_eq!(leader.voter_reports().collect::<Vec<_>>(), vec![(2, 1_001, report)]);
    }

    #[test]
    fn replays_and_old_incarnations_are_ignored() {
        let state = cluster();
        let mut leader = Endpoint::new(1, first_sequence(1), 1000);
        let mut node2 = Endpoint::new(2, first_sequence(4), 1000);
        let from_leader = heartbeat_to(&leader.beat(&leading(&state), 1_000_000), 2);
        node2.receive(from_leader, 0, &following(&state), 1_000_500);
        let hb = heartbeat_to(&node2.beat(&following(&state), 1_001_000), 1);
        assert!(leader.receive(hb, 0, &leading(&state), 1_002_000).is_some());
        // The same datagram again, at once or later: dropped, no second grant.
        assert_eq!(leader.receive(hb, 0, &leading(&state), 1_003_000), None);
        assert_eq!(leader.observed(2, 1_003).last_granted_ms, Some(1_002));
        // On another network it would have to say so (the network is signed into it).
        assert_eq!(leader.receive(hb, 1, &leading(&state), 1_003_000), None);
        // Node 2 restarts with an older incarnation counter (say, a restored data dir): its
        // heartbeats are older than what was accepted, so they count for nothing.
        let mut old = Endpoint::new(2, first_sequence(3), 1000);
        old.receive(heartbeat_to(&leader.beat(&leading(&state), 1_004_000), 2), 0, &following(&state), 1_004_100);
        let stale = heartbeat_to(&old.beat(&following(&state), 1_005_000), 1);
        assert_eq!(leader.receive(stale, 0, &leading(&state), 1_005_100), None);
    }

    #[test]
    fn an_echo_of_nothing_recent_proves_nothing() {
        let state = cluster();
        let mut leader = Endpoint::new(1, first_sequence(1), 1000);
        leader.beat(&leading(&state), 1_000_000);
        // A heartbeat echoing our first send, arriving 1.5 s later (the timeout is 1 s): made
        // by a node that has heard nothing from us since, or held back by someone.
        let late = Datagram::Heartbeat(Heartbeat {
            from: 2,
            network: 0,
            sequence: first_sequence(9),
            sent_at_ms: 5,
            echo: Echo { sequence: first_sequence(1), held_us: 10 },
            report: None,
        });
        assert_eq!(leader.receive(late, 0, &leading(&state), 2_500_000), None);
        assert!(!leader.assess(2, 2_500).ever_heard);
        // A restarted leader never sent that sequence at all.
        let mut restarted = Endpoint::new(1, first_sequence(2), 1000);
        restarted.beat(&leading(&state), 10_000);
        assert_eq!(restarted.receive(late, 0, &leading(&state), 10_100), None);
    }

    #[test]
    fn a_grant_counts_only_for_a_heartbeat_sent_as_sent() {
        let state = cluster();
        let mut node2 = Endpoint::new(2, first_sequence(5), 1000);
        node2.beat(&following(&state), 50_000_000);
        let grant = |sequence, sent_at_ms| {
            Datagram::LeaseGrant(LeaseGrant {
                from: 1,
                to: 2,
                network: 0,
                sequence,
                sent_at_ms,
                lease_ms: 2000,
                committed_index: 1,
            })
        };
        // From before a restart: a sequence this incarnation never sent (and, after a reboot,
        // a send time the boot-time clock has not reached yet).
        node2.receive(grant(first_sequence(4), 90_000), 0, &following(&state), 50_001_000);
        assert_eq!(node2.lease().deadline_ms(), None);
        // The right sequence with another send time: forged or confused.
        node2.receive(grant(first_sequence(5), 49_000), 0, &following(&state), 50_001_000);
        assert_eq!(node2.lease().deadline_ms(), None);
        // Addressed to another node.
        let mut other = grant(first_sequence(5), 50_000);
        if let Datagram::LeaseGrant(g) = &mut other {
            g.to = 3;
        }
        node2.receive(other, 0, &following(&state), 50_001_000);
        assert_eq!(node2.lease().deadline_ms(), None);
        node2.receive(grant(first_sequence(5), 50_000), 0, &following(&state), 50_001_000);
        assert_eq!(node2.lease().deadline_ms(), Some(52_000));
    }

    #[test]
    fn no_grant_without_recent_quorum_to_a_witness_or_to_a_node_to_fence() {
        let mut state = cluster();
        let mut leader = Endpoint::new(1, first_sequence(1), 1000);
        let mut node2 = Endpoint::new(2, first_sequence(1), 1000);
        let mut exchange = |leader: &mut Endpoint, view: &View, at_us: u64| {
            let from_leader = heartbeat_to(&leader.beat(view, at_us), 2);
            node2.receive(from_leader, 0, &following(view.state), at_us + 100);
            let hb = heartbeat_to(&node2.beat(&following(view.state), at_us + 200), 1);
            leader.receive(hb, 0, view, at_us + 300)
        };
        let stale = View {
            state: &state,
            timing: TIMING,
            leadership: Some(Leadership { acked_ago_ms: 451, committed_index: 7 }),
            report: None,
        };
        assert_eq!(exchange(&mut leader, &stale, 1_000_000), None);
        assert_eq!(leader.lease().deadline_ms(), None, "nor does it renew its own");
        state.nodes.get_mut(&2).expect("n2").fence_request = Some("could not stop x".into());
        assert_eq!(exchange(&mut leader, &leading(&state), 2_000_000), None);
        state.nodes.get_mut(&2).expect("n2").fence_request = None;
        state.nodes.get_mut(&2).expect("n2").witness = true;
        assert_eq!(exchange(&mut leader, &leading(&state), 3_000_000), None);
        state.nodes.get_mut(&2).expect("n2").witness = false;
        assert!(exchange(&mut leader, &leading(&state), 4_000_000).is_some());
        // Its own lease: half a lease from the last quorum acknowledgement.
        assert_eq!(leader.lease().deadline_ms(), Some(4_000 - 10 + 1000));
    }
}
