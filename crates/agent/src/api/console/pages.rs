//! The console's pages as HTML. Pure: views in, markup out. maud escapes every interpolated
//! string; nothing here writes raw HTML. States are words with a symbol, so a page reads the
//! same without colour (the stylesheet only adds it).

use halo_api::cluster::ClusterView;
use halo_api::cluster::NodeView;
use halo_api::cluster::StatusView;
use halo_api::roles::RoleDetailView;
use halo_api::roles::RoleView;
use halo_core::events::Event;
use halo_core::role::RoleState;
use halo_core::state::{NetworkState, NodeState};
use maud::{DOCTYPE, Markup, html};

use super::{Context, segment};

fn node_href(name: &str) -> String {
    format!("/console/nodes/{}", segment(name))
}

fn role_href(name: &str) -> String {
    format!("/console/roles/{}", segment(name))
}

/// The `<head>`: the page's title, the stylesheet, and on live pages the script.
fn head(title: &str, live: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · halo" }
            link rel="stylesheet" href="/console/assets/console.css";
            @if live { script src="/console/assets/console.js" defer {} }
        }
    }
}

/// The frame of every page behind the login.
fn frame(ctx: &Context, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · {}", ctx.cluster), true))
            body {
                header {
                    a.brand href="/console/" { "halo" }
                    span.cluster { "cluster " strong { (ctx.cluster) } " · served by " (ctx.node) }
                    nav {
                        a href="/console/" { "Overview" }
                        a href="/console/events" { "Events" }
                    }
                    span #live role="status" { "live updates: connecting" }
                    form method="post" action="/console/logout" { button type="submit" { "Log out" } }
                }
                main {
                    @if let Some(done) = ctx.done.as_deref().and_then(done_message) {
                        p.notice role="status" { (done) }
                    }
                    (content)
                }
            }
        }
    }
}

fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "start" => "Start requested.",
        "stop" => "Stop requested.",
        "move" => "Move requested; the owner below changes when it is done.",
        "pause" => "Node paused.",
        "drain" => "Drain requested: its roles are moving off.",
        "resume" => "Node resumed.",
        "failback" => "Node resumed with failback.",
        _ => return None,
    })
}

/// A page outside the frame (login, errors, confirmation).
fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, false))
            body.bare { main { (content) } }
        }
    }
}

pub fn login(member: bool, error: Option<&str>) -> Markup {
    bare(
        "Log in",
        html! {
            h1 { "halo console" }
            @if !member {
                p.problem { "This agent is not part of a cluster yet: create or join one first (halo cluster create)." }
            }
            @if let Some(error) = error { p.problem role="alert" { (error) } }
            form.login method="post" action="/console/login" {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
            p.hint { "The admin token is the " code { "token" } " in the client config that " code { "halo cluster create" } " wrote." }
        },
    )
}

pub fn problem(message: &str) -> Markup {
    bare(
        "Problem",
        html! {
            h1 { "That did not work" }
            p.problem role="alert" { (message) }
            p { a href="/console/" { "Back to the overview" } }
        },
    )
}

/// What a confirmation page asks and re-posts.
pub struct Confirm<'a> {
    pub title: &'a str,
    pub consequence: &'a str,
    /// The page to go back to; the action posts to `{back}/{action}`.
    pub back: &'a str,
    pub action: &'a str,
    pub to: &'a str,
    pub mode: &'a str,
    pub button: &'a str,
}

pub fn confirm(c: &Confirm) -> Markup {
    bare(
        c.title,
        html! {
            h1 { (c.title) }
            @if !c.consequence.is_empty() { p { (c.consequence) } }
            form.confirm method="post" action={ (c.back) "/" (c.action) } {
                input type="hidden" name="confirm" value="yes";
                input type="hidden" name="to" value=(c.to);
                input type="hidden" name="mode" value=(c.mode);
                button #confirm.danger type="submit" { (c.button) }
                " "
                a href=(c.back) { "Cancel" }
            }
        },
    )
}

fn node_state(state: NodeState) -> Markup {
    let (symbol, word) = match state {
        NodeState::Up => ("●", "up"),
        NodeState::Down => ("○", "down"),
        NodeState::Paused => ("‖", "paused"),
        NodeState::Joining => ("◌", "joining"),
    };
    html! { span class={ "state " (word) } { (symbol) " " (word) } }
}

fn network_state(state: NetworkState) -> Markup {
    let (symbol, word) = match state {
        NetworkState::Up => ("●", "up"),
        NetworkState::Degraded => ("◐", "degraded"),
        NetworkState::Down => ("○", "down"),
    };
    html! { span class={ "state " (word) } { (symbol) " " (word) } }
}

fn role_state(state: RoleState) -> Markup {
    let symbol = match state {
        RoleState::Online => "✔",
        RoleState::Offline => "■",
        RoleState::Pending => "…",
        RoleState::Failed => "✖",
    };
    let word = state.as_str();
    html! { span class={ "state " (word) } { (symbol) " " (word) } }
}

fn owner_link(owner: Option<&str>) -> Markup {
    html! {
        @match owner {
            Some(owner) => a.owner href=(node_href(owner)) { (owner) },
            None => span.owner { "none" },
        }
    }
}

fn ago(at_ms: u64) -> String {
    let now = crate::clock::wall_ms();
    let s = now.saturating_sub(at_ms) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// UTC time of day of a wall-clock time (the console does not know the reader's zone).
fn clock(at_ms: u64) -> String {
    let s = at_ms / 1000;
    format!("{:02}:{:02}:{:02}Z", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

pub fn overview(ctx: &Context, status: &StatusView, cluster: &ClusterView) -> Markup {
    let content = html! {
        section #summary data-live {
            h1 { "Cluster " (status.cluster) }
            @if let Some(description) = cluster.properties.get("description") { p.description { (description) } }
            dl.facts {
                dt { "Quorum" }
                dd { @if status.quorum { "✔ yes" } @else { strong.bad { "✖ no: changes are refused" } } }
                dt { "Leader" }
                dd { @match &status.leader { Some(l) => a href=(node_href(l)) { (l) }, None => "none" } }
                dt { "Voters" } dd { (status.voters) }
                dt { "Last validation" }
                dd {
                    @match &status.validation {
                        Some(v) => { (v.summary()) " · " (ago(v.at_ms)) " by " (v.by) },
                        None => "not yet",
                    }
                }
                @for (key, value) in cluster.properties.iter().filter(|(k, _)| k.starts_with("label.")) {
                    dt { (key) } dd { (value) }
                }
            }
        }
        section #nodes data-live {
            h2 { "Nodes" }
            table {
                thead { tr { th { "Node" } th { "State" } th { "Networks" } th { "Roles" } th { "Role" } } }
                tbody {
                    @for node in &status.nodes {
                        tr data-node=(node.name) {
                            td { a href=(node_href(&node.name)) { (node.name) } @if node.leader { " (leader)" } }
                            td { (node_state(node.state)) }
                            td { @for n in &node.networks { span.network { (n.index) ": " (network_state(n.state)) } " " } }
                            td { (status.roles.iter().filter(|r| r.owner.as_deref() == Some(&node.name)).count()) }
                            td { @if node.witness { "witness" } @else if node.voter { "voter" } @else { "member" } }
                        }
                    }
                }
            }
        }
        section #roles data-live {
            h2 { "Roles" }
            (roles_table(&status.roles))
        }
    };
    frame(ctx, "Overview", content)
}

fn roles_table(roles: &[RoleView]) -> Markup {
    html! {
        @if roles.is_empty() {
            p { "No roles." }
        } @else {
            table {
                thead { tr { th { "Role" } th { "State" } th { "Owner" } th { "Why" } } }
                tbody {
                    @for role in roles {
                        tr data-role=(role.name) {
                            td { a href=(role_href(&role.name)) { (role.name) } }
                            td { (role_state(role.state)) }
                            td { (owner_link(role.owner.as_deref())) }
                            td.detail { (role.detail) }
                        }
                    }
                }
            }
        }
    }
}

pub fn node(ctx: &Context, status: &StatusView, node: &NodeView, round_trips: &[Option<u64>]) -> Markup {
    let roles: Vec<RoleView> =
        status.roles.iter().filter(|r| r.owner.as_deref() == Some(&node.name)).cloned().collect();
    let content = html! {
        section #node data-live {
            h1 { "Node " (node.name) }
            dl.facts {
                dt { "State" } dd { (node_state(node.state)) " since " (ago(node.state_since_ms)) }
                dt { "Role" } dd { @if node.witness { "witness (runs no roles)" } @else if node.voter { "voter" } @else { "member" } @if node.leader { ", leader" } }
                dt { "API" } dd { (node.api) }
                @if let Some(why) = &node.fence_request { dt { "Fencing" } dd.bad { (why) } }
                dt { "Capacity" }
                dd {
                    @match &node.capacity {
                        Some(c) => { (node.used.cpu_milli as f64 / 1000.0) " of " (c.cpu_milli as f64 / 1000.0) " cores, "
                            (node.used.memory_mb) " of " (c.memory_mb) " MiB memory used by roles" },
                        None => "not limited",
                    }
                }
            }
            h2 { "Networks" }
            table {
                thead { tr { th { "#" } th { "Address" } th { "State" } th { "Round trip from " (ctx.node) } } }
                tbody {
                    @for n in &node.networks {
                        tr {
                            td { (n.index) }
                            td { (n.address) }
                            td { (network_state(n.state)) }
                            td { @match round_trips.get(n.index).copied().flatten() {
                                Some(us) => { (format!("{:.2}", us as f64 / 1000.0)) " ms" },
                                None => @if node.name == ctx.node { "this node" } @else { "not measured" },
                            } }
                        }
                    }
                }
            }
            h2 { "Roles on " (node.name) }
            (roles_table(&roles))
        }
        @if !node.witness && ctx.can_act {
            section.actions {
                h2 { "Actions" }
                form method="post" action={ (node_href(&node.name)) "/pause" } { button type="submit" { "Pause" } }
                form method="post" action={ (node_href(&node.name)) "/drain" } { button type="submit" { "Drain" } }
                form method="post" action={ (node_href(&node.name)) "/resume" } { button type="submit" { "Resume" } }
                form method="post" action={ (node_href(&node.name)) "/failback" } { button type="submit" { "Resume with failback" } }
            }
        }
    };
    frame(ctx, &format!("Node {}", node.name), content)
}

pub fn role(ctx: &Context, status: &StatusView, role: &RoleDetailView, history: &[Event]) -> Markup {
    let spec = &role.spec;
    let is_vm = spec.resources.iter().any(|r| r.kind == halo_core::resource_kind::ResourceKind::Vm);
    let owner = role.role.owner.as_deref();
    let targets: Vec<&NodeView> = status
        .nodes
        .iter()
        .filter(|n| !n.witness && Some(n.name.as_str()) != owner)
        .filter(|n| spec.possible.is_empty() || spec.possible.contains(&n.name))
        .collect();
    let content = html! {
        section #role data-live {
            h1 { "Role " (role.role.name) }
            dl.facts {
                dt { "State" } dd #role-state { (role_state(role.role.state)) }
                dt { "Owner" } dd #role-owner { (owner_link(owner)) }
                dt { "Why" } dd { (role.role.detail) }
                @if let Some(r) = &role.releasing { dt { "Releasing" } dd { (r) " has yet to confirm it stopped" } }
                @if let Some(m) = &role.migration {
                    dt { "Migration" } dd { (format!("{:?}", m.mode).to_lowercase()) " to " (m.to) " under way" }
                }
                dt { "Desired" } dd { (format!("{:?}", spec.desired).to_lowercase()) }
                dt { "Priority" } dd { (format!("{:?}", spec.priority).to_lowercase()) }
                dt { "Preferred owners" } dd { @if spec.preferred.is_empty() { "none" } @else { (spec.preferred.join(", ")) } }
                dt { "Possible owners" } dd { @if spec.possible.is_empty() { "every node" } @else { (spec.possible.join(", ")) } }
                dt { "Anti-affinity" }
                dd {
                    @if spec.anti_affinity.is_empty() { "none" } @else {
                        (spec.anti_affinity.join(", ")) @if spec.anti_affinity_soft { " (soft)" } @else { " (hard)" }
                    }
                }
                dt { "Failovers" } dd { (role.failovers) }
                dt { "Migrations" } dd { (role.migrations) }
                @if let Some(m) = &role.last_migration {
                    dt { "Last migration" }
                    dd { (m.from) " → " (m.to) ": " @if m.ok { "done" } @else { "failed" } ", " (m.detail)
                        @if let Some(d) = m.downtime_ms { " (downtime " (d) " ms)" } }
                }
            }
            h2 { "Resources" }
            table {
                thead { tr { th { "Resource" } th { "Type" } th { "State" } th { "Parameters" } } }
                tbody {
                    @for r in &spec.resources {
                        tr {
                            td { (r.name) }
                            td { (r.kind) }
                            td { (role_state(role.role.state)) @if let Some(o) = owner { " on " (o) } }
                            td.params {
                                @for (k, v) in &r.params { code { (k) "=" (v) } " " }
                                @for k in r.secret_params.keys() { code { (k) "=" (halo_core::role::SECRET_SHOWN) } " " }
                            }
                        }
                    }
                }
            }
            h2 { "Why: the decisions" }
            ol.decisions {
                @for d in role.decisions.iter().rev() {
                    li {
                        strong { (d.summary) } " · generation " (d.generation) " · " (clock(d.at_ms))
                        @if !d.reasons.is_empty() { ul { @for r in &d.reasons { li { (r) } } } }
                    }
                }
            }
            h2 { "History" }
            (event_list(history))
        }
        @if ctx.can_act { section.actions {
            h2 { "Actions" }
            form method="post" action={ (role_href(&role.role.name)) "/start" } { button type="submit" { "Start" } }
            form method="post" action={ (role_href(&role.role.name)) "/stop" } { button type="submit" { "Stop" } }
            form #move method="post" action={ (role_href(&role.role.name)) "/move" } {
                label for="move-to" { "Move to" }
                select #move-to name="to" {
                    option value="" { "the best other node" }
                    @for n in &targets { option value=(n.name) { (n.name) " (" (n.state.as_str()) ")" } }
                }
                label for="move-mode" { "as" }
                select #move-mode name="mode" {
                    @if is_vm {
                        option value="live" { "live migration" }
                        option value="quick" { "quick migration" }
                    }
                    option value="cold" { "cold move (stop, then start)" }
                }
                button type="submit" { "Move" }
            }
        } }
    };
    frame(ctx, &format!("Role {}", role.role.name), content)
}

fn event_list(events: &[Event]) -> Markup {
    html! {
        @if events.is_empty() {
            p { "Nothing yet." }
        } @else {
            table.events {
                thead { tr { th { "#" } th { "Time (UTC)" } th { "Kind" } th { "What happened" } } }
                tbody {
                    @for e in events {
                        tr data-seq=(e.seq) {
                            td { (e.seq) }
                            td { (clock(e.at_ms)) }
                            td { (e.kind) }
                            td {
                                (e.message)
                                @if let Some(by) = &e.by { " (by " (by) ")" }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn events(ctx: &Context, events: &[Event], kind: &str, q: &str) -> Markup {
    let content = html! {
        h1 { "Events" }
        form.filter method="get" action="/console/events" {
            label for="kind" { "Kind" }
            select #kind name="kind" {
                option value="" selected[kind.is_empty()] { "all" }
                @for value in halo_core::events::EventKind::ALL.map(|k| k.as_str()) {
                    option value=(value) selected[kind == value] { (value) }
                }
            }
            label for="q" { "Containing" }
            input #q type="search" name="q" value=(q);
            button type="submit" { "Filter" }
        }
        section #events data-live {
            p.hint { "Newest first; " (events.len()) " shown." }
            (event_list(events))
        }
    };
    frame(ctx, "Events", content)
}
