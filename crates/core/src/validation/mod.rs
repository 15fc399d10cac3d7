//! Cluster validation (`halo validate`): checks with stable ids, each with a result, a
//! plain-words explanation and a suggested fix. Judging is pure: quorum and roles from the
//! cluster database; inventory, network and storage from a [`Survey`], the facts the agents
//! gathered about their own nodes, links and shared storage. Validation never changes anything.

mod inventory;
mod network;
mod quorum;
mod roles;
mod storage;
pub mod survey;

use crate::command::{CommandResult, Rejection};
use serde::{Deserialize, Serialize};

use crate::plan::PlanTiming;
use crate::state::{ClusterState, NodeRecord, NodeState};
pub use survey::Survey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    // Ordered by weight: a report's result is its worst check, and a skipped check weighs least.
    Skipped,
    Pass,
    Warning,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Inventory,
    Network,
    Storage,
    Quorum,
    Roles,
}

impl Category {
    pub const ALL: [Category; 5] =
        [Category::Inventory, Category::Network, Category::Storage, Category::Quorum, Category::Roles];

    pub fn title(self) -> &'static str {
        match self {
            Category::Inventory => "Inventory",
            Category::Network => "Network",
            Category::Storage => "Storage",
            Category::Quorum => "Quorum",
            Category::Roles => "Roles",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// Stable across releases: scripts and reports refer to it.
    pub id: String,
    pub category: Category,
    pub title: String,
    pub outcome: Outcome,
    /// What was found, in plain words.
    pub explanation: String,
    /// What to do about it; empty when nothing needs doing.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(id: &str, category: Category, title: &str, outcome: Outcome, explanation: String, fix: &str) -> Check {
    Check { id: id.into(), category, title: title.into(), outcome, explanation, fix: fix.into() }
}

/// A check that passes when nothing was found, and otherwise has outcome `bad`, describes what
/// was found and suggests `fix`.
#[allow(clippy::too_many_arguments)]
fn findings(
    category: Category,
    id: &str,
    title: &str,
    found: &[String],
    bad: Outcome,
    fine: String,
    describe: impl FnOnce(&[String]) -> String,
    fix: &str,
) -> Check {
    if found.is_empty() {
        check(id, category, title, Outcome::Pass, fine, "")
    } else {
        check(id, category, title, bad, describe(found), fix)
    }
}

/// "a", "a and b", "a, b and c".
fn listing(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// A validation report kept in the cluster database (the latest periodic run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidationRecord {
    /// Wall-clock milliseconds when the report was made.
    pub at_ms: u64,
    /// The node that ran it (the leader then).
    pub by: String,
    pub result: Outcome,
    /// The nodes the cluster had then: a change of membership calls for a new run.
    pub nodes: Vec<String>,
    pub checks: Vec<Check>,
}

impl ValidationRecord {
    /// "warning (inventory.kvm, network.redundancy)": the result and the checks that made it.
    pub fn summary(&self) -> String {
        summary(self.result, &self.ids(Outcome::Fail), &self.ids(Outcome::Warning))
    }

    /// The ids of the checks with this outcome, in report order.
    pub fn ids(&self, outcome: Outcome) -> Vec<String> {
        self.checks.iter().filter(|c| c.outcome == outcome).map(|c| c.id.clone()).collect()
    }
}

/// "warning (inventory.kvm, network.redundancy)": a result and the checks that made it.
pub fn summary(result: Outcome, failed: &[String], warnings: &[String]) -> String {
    let word = outcome_word(result);
    let worst = match result {
        Outcome::Fail => failed,
        Outcome::Warning => warnings,
        _ => return word.to_string(),
    };
    if worst.is_empty() { word.to_string() } else { format!("{word} ({})", worst.join(", ")) }
}

/// Whether the leader should validate now: never yet, the nodes changed since the last
/// report, or the last is older than the cluster's interval (0: periodic validation is off).
pub fn due(state: &ClusterState, now_ms: u64) -> bool {
    let interval = state.settings.validation_interval_ms;
    if interval == 0 || state.cluster.is_none() {
        return false;
    }
    match &state.last_validation {
        None => true,
        Some(last) => {
            let nodes: Vec<&String> = state.nodes.values().map(|n| &n.name).collect();
            last.nodes.iter().collect::<Vec<_>>() != nodes || now_ms.saturating_sub(last.at_ms) >= interval
        }
    }
}

/// How an outcome is written (as in the JSON).
pub fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Skipped => "skipped",
        Outcome::Pass => "pass",
        Outcome::Warning => "warning",
        Outcome::Fail => "fail",
    }
}

/// The worst outcome of `checks` (Pass when there are none; skipped checks do not count
/// against a pass).
pub fn worst(checks: &[Check]) -> Outcome {
    checks.iter().map(|c| c.outcome).max().unwrap_or(Outcome::Pass)
}

/// Every check, for a running cluster: its database and what its nodes found.
pub fn judge(state: &ClusterState, timing: PlanTiming, survey: &Survey) -> Vec<Check> {
    let mut out = inventory::checks(survey, Some(state));
    out.extend(network::checks(survey, Some(state)));
    out.extend(storage::checks(survey));
    out.extend(quorum::checks(state));
    out.extend(roles::checks(state, timing, survey));
    out
}

/// Every check that applies before a cluster exists: the nodes' facts, and the quorum a
/// cluster of exactly these nodes would have.
pub fn judge_nodes(survey: &Survey) -> Vec<Check> {
    let mut out = inventory::checks(survey, None);
    out.extend(network::checks(survey, None));
    out.extend(storage::checks(survey));
    out.extend(quorum::checks(&prospective_cluster(survey)));
    out.push(check(
        "roles.placeable",
        Category::Roles,
        "Every role can run somewhere",
        Outcome::Skipped,
        "No cluster yet, so no roles.".into(),
        "",
    ));
    out
}

/// The membership a cluster of the surveyed nodes would start with: every node a voter, up
/// if it answered.
fn prospective_cluster(survey: &Survey) -> ClusterState {
    let mut state = ClusterState::default();
    for (i, n) in survey.nodes.iter().enumerate() {
        let id = i as u64 + 1;
        state.nodes.insert(
            id,
            NodeRecord {
                id,
                name: n.name.clone(),
                api: String::new(),
                networks: Vec::new(),
                state: if n.facts.is_some() { NodeState::Up } else { NodeState::Down },
                witness: n.witness,
                voter: true,
                joined_at_ms: 0,
                state_since_ms: 0,
                drain: false,
                capacity: None,
                fence_request: None,
                data_disk_low: None,
            },
        );
    }
    state
}

impl ClusterState {
    pub(crate) fn record_validation(&mut self, record: &ValidationRecord) -> Result<CommandResult, Rejection> {
        self.last_validation = Some(record.clone());
        Ok(CommandResult::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::cluster;

    #[test]
    fn validation_is_due_first_on_new_nodes_and_after_the_interval() {
        let mut s = cluster();
        s.cluster = Some(crate::state::ClusterInfo {
            name: "c".into(),
            id: "id".into(),
            created_at_ms: 0,
            ca_cert_pem: String::new(),
            ca_key_pem: String::new(),
            admin_token_sha256: String::new(),
            heartbeat_key_hex: String::new(),
            ca_rotation: None,
        });
        assert!(due(&s, 1_000));
        let nodes = s.nodes.values().map(|n| n.name.clone()).collect();
        let record =
            ValidationRecord { at_ms: 1_000, by: "a".into(), result: Outcome::Pass, nodes, checks: Vec::new() };
        s.last_validation = Some(record);
        assert!(!due(&s, 1_000 + s.settings.validation_interval_ms - 1));
        assert!(due(&s, 1_000 + s.settings.validation_interval_ms));
        s.nodes.remove(&3);
        assert!(due(&s, 2_000), "a node left");
        s.settings.validation_interval_ms = 0;
        assert!(!due(&s, 2_000), "periodic validation is off");
    }

    #[test]
    fn a_summary_names_the_checks_behind_the_result() {
        let c = |id: &str, outcome| check(id, Category::Network, id, outcome, String::new(), "");
        let mut r = ValidationRecord {
            at_ms: 0,
            by: "a".into(),
            result: Outcome::Warning,
            nodes: Vec::new(),
            checks: vec![c("network.redundancy", Outcome::Warning), c("network.clock", Outcome::Pass)],
        };
        assert_eq!(r.summary(), "warning (network.redundancy)");
        r.result = Outcome::Pass;
        assert_eq!(r.summary(), "pass");
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub const T: PlanTiming = PlanTiming { election_ms: 1800, grant_window_ms: 450 };

    pub fn outcome(checks: &[Check], id: &str) -> Outcome {
        checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id} in {checks:#?}")).outcome
    }

    pub fn text(checks: &[Check], id: &str) -> String {
        checks.iter().find(|c| c.id == id).map(|c| c.explanation.clone()).unwrap_or_default()
    }
}
