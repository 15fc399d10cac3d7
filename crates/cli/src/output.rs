//! Rendering for people. Scripts use `--json`, which prints the API's shapes unchanged.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use halo_core::view::{ClusterView, NodeView, StatusView};

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
impl StateStr for halo_core::view::NetworkView {
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
    out.push_str(&nodes_table(&s.nodes));
    out.push('\n');
    if s.roles.is_empty() {
        out.push_str("roles    none\n");
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
    out
}

pub fn cluster_text(c: &ClusterView) -> String {
    let mut out = format!(
        "cluster                {}\nid                     {}\nmax_voters             {}\nheartbeat_interval_ms  {}\nnode_timeout_ms        {}\n",
        c.name, c.id, c.max_voters, c.heartbeat_interval_ms, c.node_timeout_ms
    );
    for (k, v) in &c.properties {
        out.push_str(&format!("{k:<22} {v}\n"));
    }
    out
}
