//! Quorum: how many votes there are, whether a tie can happen, and what failures the cluster
//! survives, computed from the membership in the cluster database.

use super::{Category, Check, Outcome, check};
use crate::quorum;
use crate::state::{ClusterState, NodeState};

pub fn checks(state: &ClusterState) -> Vec<Check> {
    use Category::Quorum;
    let voters: Vec<_> = state.nodes.values().filter(|n| n.voter).collect();
    let witnesses = voters.iter().filter(|n| n.witness).count();
    let n = voters.len();
    let majority = quorum::majority(n);
    let survives = n.saturating_sub(majority);
    let mut out = vec![check(
        "quorum.votes",
        Quorum,
        "Votes and majority",
        if n == 0 { Outcome::Fail } else { Outcome::Pass },
        format!(
            "{n} vote{} ({} node{}{}); a majority is {majority}.",
            if n == 1 { "" } else { "s" },
            n - witnesses,
            if n - witnesses == 1 { "" } else { "s" },
            if witnesses > 0 { format!(" and {witnesses} witness") } else { String::new() },
        ),
        "",
    )];
    let even_without_witness = n > 0 && n % 2 == 0 && witnesses == 0;
    let (outcome, fix) = if even_without_witness {
        let outcome = if survives == 0 { Outcome::Fail } else { Outcome::Warning };
        (outcome, "Add a witness (`halo agent --witness` on a small third machine, then join it): it breaks the tie.")
    } else {
        (Outcome::Pass, "")
    };
    out.push(check(
        "quorum.witness",
        Quorum,
        "A witness for an even number of voters",
        outcome,
        if even_without_witness {
            format!("{n} voters and no witness: a split down the middle leaves no side with a majority.")
        } else if witnesses > 0 {
            format!("{n} votes including the witness: an odd count, a split always leaves one side a majority.")
        } else {
            format!("{n} voter{}: an odd count, no witness needed.", if n == 1 { "" } else { "s" })
        },
        fix,
    ));
    let (outcome, fix) = match (n, survives) {
        (0, _) => (Outcome::Fail, "Create the cluster first."),
        (1, _) => (Outcome::Warning, "Join at least two more nodes (or one and a witness)."),
        (_, 0) => (Outcome::Fail, "Add a voter or a witness so that one failure leaves a majority."),
        _ => (Outcome::Pass, ""),
    };
    out.push(check(
        "quorum.tolerance",
        Quorum,
        "Failures the cluster survives",
        outcome,
        match n {
            0 => "The cluster has no voters.".into(),
            1 => "A single voter: the cluster keeps running only while that node does; there is no failover.".into(),
            _ => format!(
                "The cluster keeps quorum through the loss of any {survives} of its {n} votes{}; one more and it stops \
                 placing roles until a majority is back.",
                if witnesses > 0 { " (the witness counts)" } else { "" }
            ),
        },
        fix,
    ));
    let up = voters.iter().filter(|v| v.state == NodeState::Up).count();
    let (outcome, fix) = if up < majority {
        (Outcome::Fail, "Bring voters back: without a majority nothing is placed or recovered.")
    } else if n > 1 && up == majority {
        (Outcome::Warning, "Bring the down voters back: one more failure would stop the cluster.")
    } else {
        (Outcome::Pass, "")
    };
    out.push(check(
        "quorum.up",
        Quorum,
        "Voters up now",
        outcome,
        format!("{up} of {n} votes are up; a majority is {majority}."),
        fix,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::cluster;
    use crate::validation::test_support::{outcome, text};
    use crate::validation::worst;

    #[test]
    fn three_voters_pass_and_say_what_they_survive() {
        let s = cluster();
        let found = checks(&s);
        assert_eq!(worst(&found), Outcome::Pass, "{found:#?}");
        let skipped = check("x", Category::Roles, "x", Outcome::Skipped, String::new(), "");
        assert_eq!(worst(&[found[0].clone(), skipped]), Outcome::Pass);
        assert!(text(&found, "quorum.tolerance").contains("any 1 of its 3 votes"), "{found:#?}");
    }

    #[test]
    fn two_voters_without_a_witness_fail_and_with_one_pass() {
        let mut s = cluster();
        s.nodes.remove(&3);
        let found = checks(&s);
        assert_eq!(outcome(&found, "quorum.witness"), Outcome::Fail);
        assert_eq!(outcome(&found, "quorum.tolerance"), Outcome::Fail);
        assert!(found.iter().find(|c| c.id == "quorum.witness").is_some_and(|c| c.fix.contains("witness")));
        let mut w = crate::placement::tests_support::node(3, "w", NodeState::Up);
        w.witness = true;
        s.nodes.insert(3, w);
        assert_eq!(worst(&checks(&s)), Outcome::Pass);
    }

    #[test]
    fn a_voter_down_leaves_no_margin() {
        let mut s = cluster();
        s.nodes.get_mut(&2).expect("b").state = NodeState::Down;
        assert_eq!(outcome(&checks(&s), "quorum.up"), Outcome::Warning);
        s.nodes.get_mut(&3).expect("c").state = NodeState::Down;
        assert_eq!(outcome(&checks(&s), "quorum.up"), Outcome::Fail);
    }
}
