//! Rendering for people. Scripts use `--json`, which prints the API's shapes unchanged.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use halo_api::cluster::ClusterView;
use halo_api::cluster::NodeView;
use halo_api::cluster::StatusView;
use halo_api::roles::RoleDetailView;
use halo_api::roles::RoleView;
use halo_core::role::RoleState;

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

fn networks(n: &NodeView) -> String {
    n.networks.iter().map(|net| format!("{} {}", net.address, net.state_str())).collect::<Vec<_>>().join(", ")
}

trait StateStr {
    fn state_str(&self) -> &'static str;
}
impl StateStr for halo_api::cluster::NetworkView {
    fn state_str(&self) -> &'static str {
        self.state.as_str()
    }
}

pub fn nodes_table(nodes: &[NodeView]) -> String {
    let mut t = table(&["NODE", "STATE", "ROLE", "API", "NETWORKS"]);
    for n in nodes {
        let role = match (n.leader, n.witness, n.voter) {
            (true, _, _) => "leader",
            (false, true, _) => "witness",
            (false, false, true) => "voter",
            _ => "learner",
        };
        t.add_row(vec![n.name.clone(), n.state.as_str().to_string(), role.to_string(), n.api.clone(), networks(n)]);
    }
    t.to_string()
}

pub fn status_text(s: &StatusView) -> String {
    let quorum = if s.quorum { "yes".to_string() } else { "NO (changes are refused)".to_string() };
    let up = s.nodes.iter().filter(|n| n.state == halo_core::state::NodeState::Up).count();
    let mut out = format!(
        "cluster  {}\nleader   {}\nquorum   {}\nnodes    {} of {} up ({} voters, term {})\n",
        s.cluster,
        s.leader.as_deref().unwrap_or("none"),
        quorum,
        up,
        s.nodes.len(),
        s.voters,
        s.term
    );
    out.push_str(&match &s.validation {
        Some(v) => format!("validated {} ago by {}: {}\n", age(v.at_ms), v.by, v.summary()),
        None => "validated never (the leader validates soon after the cluster forms)\n".into(),
    });
    out.push_str(&nodes_table(&s.nodes));
    out.push('\n');
    for n in &s.nodes {
        if let Some(space) = &n.data_disk_low {
            out.push_str(&format!("warning  {}'s data disk is nearly full ({space}): free space there\n", n.name));
        }
    }
    if s.roles.is_empty() {
        out.push_str("roles    none\n");
    } else {
        out.push_str(&roles_table(&s.roles));
        out.push('\n');
    }
    out
}

/// How long ago a wall-clock time was, rounded to what a person needs ("42s", "5m", "3h", "2d").
pub fn age(at_ms: u64) -> String {
    let now = crate::wall_ms();
    let s = now.saturating_sub(at_ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn roles_table(roles: &[RoleView]) -> String {
    let mut t = table(&["ROLE", "STATE", "OWNER", "GEN", "DETAIL"]);
    for r in roles {
        t.add_row(vec![
            r.name.clone(),
            r.state.to_string(),
            r.owner.clone().unwrap_or_else(|| "-".into()),
            r.generation.to_string(),
            r.detail.clone(),
        ]);
    }
    t.to_string()
}

pub fn role_text(r: &RoleDetailView) -> String {
    let spec = &r.spec;
    let list = |v: &[String]| if v.is_empty() { "any".to_string() } else { v.join(", ") };
    let mut out = format!(
        "role        {}\nstate       {} ({})\nowner       {}\ngeneration  {}\ndesired     {:?}\npriority    {:?}\n\
         preferred   {}\npossible    {}\nanti-aff.   {}{}\nfailover    at most {} within {} s\nfailback    {:?}\n",
        r.role.name,
        r.role.state,
        r.role.detail,
        r.role.owner.as_deref().unwrap_or("-"),
        r.role.generation,
        spec.desired,
        spec.priority,
        list(&spec.preferred),
        list(&spec.possible),
        if spec.anti_affinity.is_empty() { "none".to_string() } else { spec.anti_affinity.join(", ") },
        if spec.anti_affinity_soft { " (soft)" } else { "" },
        spec.failover.max_failovers,
        spec.failover.period_s,
        spec.failback,
    );
    if !spec.needs().is_zero() {
        out.push_str(&format!("needs       {}\n", spec.needs()));
    }
    if let Some(node) = &r.releasing {
        out.push_str(&format!("releasing   {node} (must confirm it stopped the role)\n"));
    }
    if let Some(m) = &r.migration {
        let ready = if m.target_ready { "target ready" } else { "target getting ready" };
        out.push_str(&format!("migrating   {} to {} ({ready})\n", m.mode.as_str(), m.to));
    }
    if let Some(m) = &r.last_migration {
        let how = if m.ok {
            format!(
                "{} ms, guest paused {} ms (QEMU {} ms, {} ms paused)",
                m.total_ms.unwrap_or(0),
                m.downtime_ms.unwrap_or(0),
                m.qemu_total_ms.unwrap_or(0),
                m.qemu_downtime_ms.unwrap_or(0)
            )
        } else {
            format!("failed: {}", m.detail)
        };
        out.push_str(&format!("last move   {} migration {} -> {}: {how}\n", m.mode.as_str(), m.from, m.to));
    }
    for res in &spec.resources {
        let mut params: Vec<String> = res.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        params.extend(res.secret_params.iter().map(|(k, v)| format!("{k}={v}")));
        out.push_str(&format!(
            "resource    {} ({}) restart {}x/{} s  {}\n",
            res.name,
            res.kind,
            res.restart.max_restarts,
            res.restart.period_s,
            params.join(" ")
        ));
    }
    out
}

/// The role's story in words: where it is and why, then the recent decisions, newest first.
pub fn role_why(r: &RoleDetailView) -> String {
    let mut out = match (&r.role.owner, r.role.state) {
        (Some(owner), RoleState::Online) => format!("{} runs on {owner}: {}.\n", r.role.name, r.role.detail),
        (_, state) => format!("{} is {state}: {}.\n", r.role.name, r.role.detail),
    };
    if r.decisions.is_empty() {
        out.push_str("No decision has been made about it yet.\n");
    }
    for d in r.decisions.iter().rev() {
        out.push_str(&format!("\n[generation {}] {}\n", d.generation, d.summary));
        for reason in &d.reasons {
            out.push_str(&format!("  - {reason}\n"));
        }
    }
    out
}

pub fn node_text(n: &NodeView) -> String {
    let mut out = format!(
        "node     {}\nid       {}\nstate    {}\nvoter    {}\nwitness  {}\nleader   {}\napi      {}\n",
        n.name,
        n.id,
        n.state.as_str(),
        n.voter,
        n.witness,
        n.leader,
        n.api
    );
    for net in &n.networks {
        out.push_str(&format!("network  {}  {}  {}\n", net.index, net.address, net.state.as_str()));
    }
    match &n.capacity {
        Some(total) => out.push_str(&format!("capacity {total}; roles use {}\n", n.used)),
        None => out.push_str(&format!("capacity not limited; roles use {}\n", n.used)),
    }
    if let Some(why) = &n.fence_request {
        out.push_str(&format!("fencing  {why}\n"));
    }
    if let Some(space) = &n.data_disk_low {
        out.push_str(&format!("disk     data disk NEARLY FULL ({space})\n"));
    }
    if let Some(ms) = n.certificate_expires_ms {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        out.push_str(&format!("cert     expires {} (renewed before)\n", humantime::format_rfc3339_seconds(at)));
    }
    out
}

pub fn cluster_text(c: &ClusterView) -> String {
    let mut out = format!(
        "cluster                {}\nid                     {}\nmax_voters             {}\nheartbeat_interval_ms  {}\nnode_timeout_ms        {}\n",
        c.name, c.id, c.max_voters, c.heartbeat_interval_ms, c.node_timeout_ms
    );
    out.push_str(&format!(
        "lease_ms               {}\nlease_margin_ms        {}\nraft_heartbeat_ms      {}\nelection_timeout_ms    {}-{}\n",
        c.lease_ms,
        c.lease_margin_ms,
        c.raft.raft_heartbeat_ms,
        c.raft.election_timeout_min_ms,
        c.raft.election_timeout_max_ms
    ));
    for (k, v) in &c.properties {
        out.push_str(&format!("{k:<22} {v}\n"));
    }
    out
}

/// `HH:MM:SS.mmm` (UTC) of a wall-clock timestamp, for event lines.
pub fn time_of_day(at_ms: u64) -> String {
    let ms = at_ms % 1000;
    let s = at_ms / 1000;
    format!("{:02}:{:02}:{:02}.{ms:03}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// `halo plan --fail N` for people.
pub fn plan_text(plan: &serde_json::Value) -> String {
    let node = plan["node"].as_str().unwrap_or("?");
    let recoveries = plan["recoveries"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "if {node} failed now{}:\n",
        if plan["leader"] == true { " (it is the leader: an election comes first)" } else { "" }
    );
    if recoveries.is_empty() {
        out.push_str("  it runs no roles; nothing would move\n");
        return out;
    }
    let mut t = table(&["ROLE", "TO", "WORST CASE", "WHY"]);
    for r in &recoveries {
        let to = r["to"].as_str().unwrap_or("nowhere");
        let worst = r["worst_case_ms"].as_u64().map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        let reasons: Vec<&str> =
            r["reasons"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
        let why = if r["to"].is_null() {
            reasons.join("; ")
        } else {
            reasons.iter().find(|x| x.contains("chosen")).copied().unwrap_or("").to_string()
        };
        t.add_row(vec![r["role"].as_str().unwrap_or("?").to_string(), to.to_string(), worst, why]);
    }
    out.push_str(&t.to_string());
    out.push('\n');
    out
}

/// `halo validate`: the checks grouped by category in the cluster's order, each fix under its
/// check, and a one-line verdict.
pub fn validation_text(report: &halo_api::validation::ValidationView) -> String {
    use halo_core::validation::Outcome;
    let mut out = String::new();
    let mut category = None;
    for c in &report.checks {
        if category != Some(c.category) {
            category = Some(c.category);
            out.push_str(&format!("{}{}\n", if out.is_empty() { "" } else { "\n" }, c.category.title()));
        }
        let outcome = halo_core::validation::outcome_word(c.outcome).to_uppercase();
        out.push_str(&format!("  {outcome:<8} {:<26} {}\n", c.id, c.explanation));
        if !c.fix.is_empty() {
            out.push_str(&format!("  {:<8} {:<26} fix: {}\n", "", "", c.fix));
        }
    }
    let count = |o: Outcome| report.checks.iter().filter(|c| c.outcome == o).count();
    out.push_str(&format!(
        "\nvalidation of {}: {} ({} passed, {} warnings, {} failed, {} skipped)\n",
        if report.cluster.is_empty() { "the nodes".to_string() } else { report.cluster.clone() },
        halo_core::validation::outcome_word(report.result),
        count(Outcome::Pass),
        count(Outcome::Warning),
        count(Outcome::Fail),
        count(Outcome::Skipped)
    ));
    out
}

pub fn tokens_table(tokens: &[halo_api::access::ApiTokenView]) -> String {
    let when =
        |ms: u64| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    let mut out = format!("{:<24} {:<9} {:<21} {}\n", "NAME", "ROLE", "CREATED", "EXPIRES");
    for t in tokens {
        let expires = t.expires_at_ms.map_or("never".to_string(), |ms| when(ms).to_string());
        out.push_str(&format!("{:<24} {:<9} {:<21} {expires}\n", t.name, t.role.as_str(), when(t.created_at_ms)));
    }
    out.trim_end().to_string()
}
