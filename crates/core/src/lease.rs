//! Lease arithmetic: when a node may run roles, and when the leader may assume it no longer
//! does. Pure; all times are milliseconds on each host's own monotonic clock, passed in.
//!
//! The holder dates its lease from when it *sent* the heartbeat the leader answered; the leader
//! dates a node's loss from when it last *received* anything from it, plus a margin. The send
//! precedes the receipt, so the holder's lease always ends before the leader acts.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Lease durations; part of the cluster settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long one grant lets a node run roles.
    pub lease_ms: u64,
    /// Added on the leader's side for clock rate differences and a late fence guard.
    pub margin_ms: u64,
    /// A leader grants only while Raft confirmed its leadership (a quorum acked) this recently.
    pub grant_window_ms: u64,
}

impl LeaseTiming {
    /// The leader may grant a lease now if a quorum acknowledged it `quorum_acked_ago_ms` ago.
    pub fn may_grant(&self, quorum_acked_ago_ms: Option<u64>) -> bool {
        quorum_acked_ago_ms.is_some_and(|ago| ago <= self.grant_window_ms)
    }

    /// When the leader may treat a silent node as no longer running anything: a lease after the
    /// last time it heard the node, and, for a new leader, a grant window plus a lease after it
    /// took over (a grant from the previous leader can be that late).
    pub fn lost_at(&self, last_heard_ms: u64, leader_since_ms: u64) -> u64 {
        let after_heard = last_heard_ms + self.lease_ms + self.margin_ms;
        let after_takeover = leader_since_ms + self.grant_window_ms + self.lease_ms + self.margin_ms;
        after_heard.max(after_takeover)
    }

    /// How long before its lease ends a node's fence guard begins to fence while it holds
    /// state that a kill does not remove (a floating address, what an OCF stop undoes): the
    /// undo then has this long to finish, so the state is gone before the lease ends, and so
    /// before any leader may place the role elsewhere. A quarter of the lease: longer than
    /// removing an address takes by far, and short enough that a node keeps most of its lease
    /// (grants come every heartbeat).
    pub fn cleanup_ms(&self) -> u64 {
        self.lease_ms / 4
    }

    /// How long a leader's own lease lasts from the last append a quorum acknowledged. It is
    /// renewed with every acknowledgement (not carried by datagrams that may be lost), so half
    /// the lease leaves ample slack, and a crashed leader's roles come back sooner.
    pub fn leader_lease_ms(&self) -> u64 {
        self.lease_ms / 2
    }

    /// When a new leader may treat the leader it replaced (`former`: a majority of voters
    /// named it the last leader before this one that a quorum acknowledged, so no leader in
    /// between granted it anything) as running nothing. It may hold three kinds of lease,
    /// and each has ended by then:
    /// - its own, dated from the send time of an append a quorum acknowledged: by the voters'
    ///   reports, no later than `acked_by_ms`; and some voter of that quorum voted for us and
    ///   took no append from it since, so no later than our takeover either;
    /// - grants of earlier leaders: made within the grant window after their last quorum
    ///   acknowledgement, which came before its term began, and so before we first saw it lead;
    /// - ours, if it was heard after we took over: dated from a send before we granted.
    pub fn lost_at_former_leader(&self, former: &Former, took_over_ms: u64, last_granted_ms: Option<u64>) -> u64 {
        let own_lease = former.acked_by_ms.min(took_over_ms) + self.leader_lease_ms();
        let earlier_grants = former.seen_leading_ms + self.grant_window_ms + self.lease_ms;
        let our_grant = last_granted_ms.map_or(0, |at| at + self.lease_ms);
        own_lease.max(earlier_grants).max(our_grant) + self.margin_ms
    }
}

/// The leader a new leader replaced, as the voters' reports established it
/// ([`crate::former_leader::bound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Former {
    pub id: NodeId,
    /// When the new leader first saw it lead (its own clock).
    pub seen_leading_ms: u64,
    /// The latest instant (the new leader's clock) at which it can have sent an append a
    /// quorum acknowledged.
    pub acked_by_ms: u64,
}

/// The holder's side: the latest deadline any grant gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lease {
    deadline_ms: Option<u64>,
    /// The send time of the newest heartbeat a grant answered: the lease's age runs from it.
    renewed_at_ms: Option<u64>,
}

impl Lease {
    /// A grant for a heartbeat sent at `sent_at_ms`. Grants that claim a future send time are
    /// forged or confused and ignored.
    pub fn granted(&mut self, sent_at_ms: u64, lease_ms: u64, now_ms: u64) -> bool {
        if sent_at_ms > now_ms {
            return false;
        }
        let deadline = sent_at_ms + lease_ms;
        let before = self.deadline_ms;
        if self.deadline_ms.is_none_or(|d| deadline > d) {
            self.deadline_ms = Some(deadline);
        }
        debug_assert!(self.deadline_ms >= before, "a grant never shortens a lease");
        self.renewed_at_ms = self.renewed_at_ms.max(Some(sent_at_ms));
        true
    }

    /// How long ago the lease was last renewed (none: never granted).
    pub fn age_ms(&self, now_ms: u64) -> Option<u64> {
        self.renewed_at_ms.map(|at| now_ms.saturating_sub(at))
    }

    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms
    }

    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.deadline_ms.map_or(0, |d| d.saturating_sub(now_ms))
    }

    pub fn valid(&self, now_ms: u64) -> bool {
        self.remaining_ms(now_ms) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: LeaseTiming = LeaseTiming { lease_ms: 2000, margin_ms: 200, grant_window_ms: 450 };

    #[test]
    fn holder_lease_runs_from_the_send_time() {
        let mut lease = Lease::default();
        assert!(!lease.valid(0));
        assert_eq!(lease.age_ms(0), None);
        assert!(lease.granted(1000, 2000, 1010));
        assert_eq!(lease.age_ms(1500), Some(500));
        assert!(lease.valid(2999));
        assert!(!lease.valid(3000));
        // An older grant arriving late never shortens it.
        assert!(lease.granted(900, 2000, 1020));
        assert_eq!(lease.deadline_ms(), Some(3000));
        assert_eq!(lease.age_ms(1500), Some(500));
        assert!(!lease.granted(5000, 2000, 1030));
    }

    #[test]
    fn the_leader_acts_only_after_any_possible_lease_ended() {
        // Heard at 1000: the holder sent before 1000, so its lease ends before 3000 < 3200.
        assert_eq!(T.lost_at(1000, 0), 3200);
        // A leader that took over at 5000 waits for grants the old leader may still have made.
        assert_eq!(T.lost_at(1000, 5000), 5000 + 450 + 2000 + 200);
        // The leader it replaced held only its own lease, from before the voters' receipts...
        let former = Former { id: 2, seen_leading_ms: 0, acked_by_ms: 4100 };
        assert_eq!(T.lost_at_former_leader(&former, 5000, None), 4100 + 1000 + 200);
        // ... and from before some voter voted for us.
        assert_eq!(T.lost_at_former_leader(&Former { acked_by_ms: 7000, ..former }, 5000, None), 5000 + 1000 + 200);
        // Granted by us after we took over, it holds a full lease from us like any node.
        assert_eq!(T.lost_at_former_leader(&former, 5000, Some(6000)), 6000 + 2000 + 200);
        // Seen leading only briefly: an earlier leader's grant may still run.
        let brief = Former { seen_leading_ms: 4000, ..former };
        assert_eq!(T.lost_at_former_leader(&brief, 5000, None), 4000 + 450 + 2000 + 200);
        assert!(T.may_grant(Some(300)));
        assert!(!T.may_grant(Some(451)));
        assert!(!T.may_grant(None));
    }
}
