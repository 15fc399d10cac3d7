//! How soon a new leader may recover the roles of the leader it replaced: the voters' reports.
//!
//! A leader is named by its *leader id*, its term and node ([`LeaderId`]); Raft (openraft's
//! default) may elect more than one leader in a term, the higher node id superseding, so a
//! term alone does not say who led before whom. A voter takes appends only from leader ids
//! at least as high as its vote, and its vote only grows.
//!
//! A leader's own lease runs for a leader lease from the *send* time of an append a quorum of
//! voters acknowledged, and it grants leases to others only within the grant window after such
//! an acknowledgement. Every voter reports, on its heartbeats ([`VoterReport`]), its current
//! vote and the last leader before it whose appends it took, with how long ago the last one
//! arrived. Once a majority of the voters have voted for the new leader and reported, these
//! facts are final (they take nothing from a lower leader id any more), and every quorum of
//! every earlier leader shares a voter with that majority. So ([`bound`]):
//! - the highest leader id they name is the last leader before this one that any quorum
//!   acknowledged: no leader in between ever held a lease or granted one;
//! - leaving that leader's own report out, a majority still remains, and the former leader
//!   cannot have sent an acknowledged append after the latest receipt within it: its own
//!   lease ends a leader lease after that.
//!
//! The count holds only for the voters the former leader counted: the membership must be one
//! set of voters (not a joint change) logged before the new leader's term, so that any change
//! the former leader may have begun (an uncommitted joint change) still needed a majority of
//! these. A voter that restarted does not remember what its earlier incarnation took: it
//! counts the vote it started with as a leader whose appends it took until it started
//! (appends come only from leaders up to the vote, and all of them before the restart).

use std::collections::{BTreeMap, BTreeSet};

use crate::NodeId;

/// A leader's identity: its term and node, ordered by term, then node (as openraft orders
/// leader ids that allow several leaders per term).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct LeaderId {
    pub term: u64,
    pub node: NodeId,
}

/// A voter's word, sent on every heartbeat: its current vote, and the last leader before that
/// whose appends it took, with how long before sending this the last one arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterReport {
    pub vote: LeaderId,
    pub last: LastAppend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastAppend {
    pub leader: LeaderId,
    pub age_ms: u64,
}

/// How many leaders (and own leaderships) a voter remembers; the ones that count are the
/// last two.
const LEADERS_KEPT: usize = 4;

/// A voter's record of the appends it took: per leader, when the last one arrived (its own
/// clock). The Raft append handler records each one *before* Raft takes it, so no append it
/// acknowledged is ever missing from a report. It also records its own leaderships (Raft
/// persists a node's committed vote for itself before it sends any append under it): a node
/// that led sends appends rather than taking them, and its report must still name its own
/// leadership, or a quorum that counted it could go unseen.
#[derive(Debug, Clone, Default)]
pub struct AppendReceipts {
    me: NodeId,
    by_leader: BTreeMap<LeaderId, u64>,
    led: BTreeSet<LeaderId>,
}

impl AppendReceipts {
    /// Node `me`'s record, starting at `now_ms` with `vote` (its persisted vote). An earlier
    /// incarnation may have taken appends from that leader (or led under it, if it is `me`),
    /// all before now: that is what it counts as.
    pub fn new(me: NodeId, vote: LeaderId, now_ms: u64) -> Self {
        let mut receipts = Self { me, by_leader: BTreeMap::new(), led: BTreeSet::new() };
        if vote != LeaderId::default() {
            receipts.took(vote, now_ms);
            receipts.committed(vote);
        }
        receipts
    }

    /// An append (or a snapshot) from `leader` arrived at `now_ms`.
    pub fn took(&mut self, leader: LeaderId, now_ms: u64) {
        let at = self.by_leader.entry(leader).or_insert(now_ms);
        *at = (*at).max(now_ms);
        while self.by_leader.len() > LEADERS_KEPT {
            self.by_leader.pop_first();
        }
    }

    /// Raft persisted a committed vote for `leader`: if that is this node, it leads now.
    pub fn committed(&mut self, leader: LeaderId) {
        if leader.node == self.me {
            self.led.insert(leader);
            while self.led.len() > LEADERS_KEPT {
                self.led.pop_first();
            }
        }
    }

    /// The report to send while this voter's vote is `vote`: the last leader below it whose
    /// appends it took (or itself, if it led since: then "until now").
    pub fn report(&self, vote: LeaderId, now_ms: u64) -> Option<VoterReport> {
        let took = self.by_leader.range(..vote).next_back().map(|(&leader, &at)| (leader, now_ms.saturating_sub(at)));
        let led = self.led.range(..vote).next_back().map(|&leader| (leader, 0));
        // The higher leader; on a tie its own leadership, which comes last ("until now" is
        // the later, and `max_by_key` keeps the last of equals).
        let (leader, age_ms) = took.into_iter().chain(led).max_by_key(|&(leader, _)| leader)?;
        Some(VoterReport { vote, last: LastAppend { leader, age_ms } })
    }
}

/// The voters as Raft's membership has them, and whether their count may bound the former
/// leader's lease (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voters {
    pub ids: BTreeSet<NodeId>,
    /// One set of voters, not a joint change between two.
    pub uniform: bool,
    /// The term of the log entry that made this membership.
    pub logged_in_term: u64,
}

/// What a majority of voters established about the leader before `me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The last leader before `me` that a quorum acknowledged.
    pub former: LeaderId,
    /// The latest instant (the new leader's clock) at which it can have sent an append a
    /// quorum acknowledged.
    pub acked_by_ms: u64,
}

/// The bound on the leader before `me`, if enough voters reported. `reports` are each voter's
/// latest, with when it arrived; an arrival is after the report was made, so `arrived - age`
/// is no earlier than the voter's receipt (clock rates differ by less than the lease margin
/// covers).
pub fn bound(
    voters: &Voters,
    me: LeaderId,
    reports: impl IntoIterator<Item = (NodeId, u64, VoterReport)>,
) -> Option<Bound> {
    if !voters.uniform || voters.logged_in_term >= me.term {
        return None;
    }
    // Only voters that voted for `me` have taken their last append from a lower leader.
    let mine: Vec<(NodeId, u64, LastAppend)> = reports
        .into_iter()
        .filter(|(voter, _, report)| voters.ids.contains(voter) && report.vote == me && report.last.leader < me)
        .map(|(voter, arrived, report)| (voter, arrived, report.last))
        .collect();
    let former = mine.iter().map(|(_, _, last)| last.leader).max()?;
    // The former leader's own word leaves out the appends it sent.
    let mut receipts: Vec<u64> = mine
        .iter()
        .filter(|(voter, ..)| *voter != former.node)
        .map(|&(_, arrived, last)| if last.leader == former { arrived.saturating_sub(last.age_ms) } else { 0 })
        .collect();
    let majority = voters.ids.len() / 2 + 1;
    if receipts.len() < majority {
        return None;
    }
    // Any `majority` of them is a majority: the one whose latest receipt is earliest.
    receipts.sort_unstable();
    Some(Bound { former, acked_by_ms: receipts[majority - 1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn id(term: u64, node: NodeId) -> LeaderId {
        LeaderId { term, node }
    }

    fn voters(ids: &[NodeId]) -> Voters {
        Voters { ids: ids.iter().copied().collect(), uniform: true, logged_in_term: 1 }
    }

    fn report(vote: LeaderId, leader: LeaderId, age_ms: u64) -> VoterReport {
        VoterReport { vote, last: LastAppend { leader, age_ms } }
    }

    #[test]
    fn a_voter_reports_the_last_leader_below_its_vote() {
        let mut r = AppendReceipts::new(4, LeaderId::default(), 0);
        assert_eq!(r.report(id(5, 2), 0), None, "took nothing");
        r.took(id(4, 1), 1_000);
        r.took(id(4, 1), 1_200);
        r.took(id(4, 1), 1_100);
        assert_eq!(r.report(id(5, 2), 2_000), Some(report(id(5, 2), id(4, 1), 800)));
        // Appends from the leader it follows now are not the last *before* it.
        r.took(id(5, 2), 1_900);
        assert_eq!(r.report(id(5, 2), 2_000), Some(report(id(5, 2), id(4, 1), 800)));
        // Two leaders in one term: the higher node id came later.
        r.took(id(5, 3), 2_100);
        assert_eq!(r.report(id(5, 3), 2_200), Some(report(id(5, 3), id(5, 2), 300)));
        for term in 6..12 {
            r.took(id(term, 2), 3_000);
        }
        assert_eq!(r.report(id(12, 1), 3_000).map(|r| r.last.leader), Some(id(11, 2)));
        // It led since, and says so (the appends it sent are its own; "until now"). Another
        // node's leadership is none of its own.
        r.committed(id(12, 1));
        r.committed(id(13, 4));
        assert_eq!(r.report(id(14, 2), 3_500), Some(report(id(14, 2), id(13, 4), 0)));
        assert_eq!(r.report(id(13, 4), 3_500), Some(report(id(13, 4), id(11, 2), 500)));
    }

    #[test]
    fn a_restarted_voter_counts_its_vote_as_taken_until_it_started() {
        let mut r = AppendReceipts::new(4, id(3, 1), 5_000);
        assert_eq!(r.report(id(4, 2), 5_300), Some(report(id(4, 2), id(3, 1), 300)));
        // Appends from the same leader after the restart are later than any before it.
        r.took(id(3, 1), 5_200);
        assert_eq!(r.report(id(4, 2), 5_300), Some(report(id(4, 2), id(3, 1), 100)));
        // It had voted for itself: it may have led, until now.
        let r = AppendReceipts::new(4, id(3, 4), 5_000);
        assert_eq!(r.report(id(4, 2), 5_300), Some(report(id(4, 2), id(3, 4), 0)));
    }

    #[test]
    fn a_majority_of_the_voters_names_the_former_leader_and_bounds_its_last_acknowledged_append() {
        let v = voters(&[1, 2, 3, 4, 5]);
        let me = id(8, 2);
        let f = id(7, 1);
        let r = |voter, arrived, leader, age| (voter, arrived, report(me, leader, age));
        // Two reports of five voters: not a majority.
        assert_eq!(bound(&v, me, [r(2, 10_000, f, 500), r(3, 10_000, id(6, 3), 0)]), None);
        // Three: the former leader is the highest named; the bound, the latest of the three.
        let three = [r(2, 10_000, f, 500), r(3, 10_050, f, 400), r(4, 9_900, id(6, 3), 0)];
        assert_eq!(bound(&v, me, three), Some(Bound { former: f, acked_by_ms: 9_650 }));
        let four = [r(2, 10_000, f, 500), r(3, 10_050, f, 400), r(4, 9_900, id(5, 1), 0), r(5, 10_000, f, 100)];
        assert_eq!(bound(&v, me, four).map(|b| b.acked_by_ms), Some(9_650), "any majority: the earliest");
        // The former leader's own report does not count towards the majority.
        let with_former = [r(1, 10_000, id(6, 3), 0), r(2, 10_000, f, 500), r(3, 10_050, f, 400)];
        assert_eq!(bound(&v, me, with_former), None);
        // Reports of voters that did not vote for us, or of non-voters, never count.
        let elsewhere = (3, 10_000, report(id(9, 4), f, 10));
        assert_eq!(bound(&v, me, [r(2, 10_000, f, 500), r(6, 10_000, f, 10), r(4, 10_000, f, 1), elsewhere]), None);
        // A leader in between that someone took appends from is the former one, not `f`.
        let between = [r(2, 10_000, f, 500), r(3, 10_050, id(8, 1), 400), r(4, 9_900, f, 0)];
        assert_eq!(bound(&v, me, between).map(|b| b.former), Some(id(8, 1)));
        // A membership changed in our term or later, or a joint one, bounds nothing.
        assert_eq!(bound(&Voters { logged_in_term: 8, ..v.clone() }, me, three), None);
        assert_eq!(bound(&Voters { uniform: false, ..v.clone() }, me, three), None);
    }
}
