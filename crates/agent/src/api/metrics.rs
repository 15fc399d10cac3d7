//! `/metrics`: the agent in Prometheus's text format (OpenMetrics flavour).
//!
//! Two kinds of series. What the cluster database says (node, network and role states,
//! failover and migration counts) is read from this node's own copy at scrape time, so every
//! agent can be scraped, with or without quorum, and each answers for the whole cluster like
//! Pacemaker's exporter does. What only this node knows (its lease, its heartbeat round trips,
//! its Raft log, how long its agent actions took) is its own.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::clock;
use crate::cluster::agent::Agent;
use crate::observe::metrics::Labels;

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything, encoded for one scrape.
pub fn render(agent: &Agent) -> String {
    let mut registry = Registry::with_prefix("halo");
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![("node", agent.config.name.clone()), ("version", env!("CARGO_PKG_VERSION").to_string())])
        .set(1);
    registry.register("agent", "This agent: its node name and halo version", info);
    let member = agent.member();
    registry.register("cluster_member", "Whether this node belongs to a cluster", gauge(member.is_some() as i64));
    if let Some(space) = agent.data_disk.space() {
        let bytes = |b: u64| gauge(i64::try_from(b).unwrap_or(i64::MAX));
        registry.register_with_unit(
            "data_disk_free",
            "Free space for the agent's data directory (its reserve counted as free)",
            Unit::Bytes,
            bytes(space.free_bytes),
        );
        registry.register_with_unit(
            "data_disk_size",
            "Size of the data directory's file system",
            Unit::Bytes,
            bytes(space.total_bytes),
        );
        registry.register(
            "data_disk_low",
            "Whether the data directory's disk is nearly full",
            gauge(agent.data_disk.low() as i64),
        );
    }
    if let Some(member) = member {
        let state = member.reader.state();
        cluster_series(&mut registry, &state);
        local_series(&mut registry, agent, member, &state);
    }
    registry.register_with_unit(
        "action_duration",
        "How long resource actions on this node took, by resource kind, action and result",
        Unit::Seconds,
        agent.metrics.actions.clone(),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A state set: one series per possible state, 1 for the current one (Prometheus's idiom for
/// enums, so an alert can say `== 1` without knowing every state name).
fn state_set(family: &Family<Labels, Gauge>, labels: &Labels, states: &[&str], current: &str) {
    for state in states {
        let mut labels = labels.clone();
        labels.push(("state", state.to_string()));
        family.get_or_create(&labels).set((*state == current) as i64);
    }
}

/// What the cluster database says, from this node's copy.
fn cluster_series(registry: &mut Registry, state: &halo_core::state::ClusterState) {
    let nodes = Family::<Labels, Gauge>::default();
    let networks = Family::<Labels, Gauge>::default();
    for node in state.nodes.values() {
        let labels = vec![("node", node.name.clone())];
        state_set(&nodes, &labels, &["up", "down", "paused", "joining"], node.state.as_str());
        for (index, network) in node.networks.iter().enumerate() {
            let labels =
                vec![("node", node.name.clone()), ("network", index.to_string()), ("address", network.address.clone())];
            state_set(&networks, &labels, &["up", "degraded", "down"], network.state.as_str());
        }
    }
    registry.register("node_state", "Each node's state in the cluster database", nodes);
    registry.register("network_state", "Each node's heartbeat networks as the cluster judges them", networks);

    let roles = Family::<Labels, Gauge>::default();
    let owners = Family::<Labels, Gauge>::default();
    let failovers = Family::<Labels, Counter>::default();
    let migrations = Family::<Labels, Counter>::default();
    for role in state.roles.values() {
        let labels = vec![("role", role.spec.name.clone())];
        state_set(&roles, &labels, &["online", "offline", "pending", "failed"], role.state.as_str());
        if let Some(owner) = role.owner.and_then(|id| state.nodes.get(&id)) {
            owners.get_or_create(&vec![("role", role.spec.name.clone()), ("node", owner.name.clone())]).set(1);
        }
        failovers.get_or_create(&labels).inc_by(role.failovers);
        migrations.get_or_create(&labels).inc_by(role.migrations);
    }
    registry.register("role_state", "Each role's state", roles);
    registry.register("role_owner", "The node each role is placed on", owners);
    registry.register("role_failovers", "Failovers of each role since it was created", failovers);
    registry.register(
        "role_migrations",
        "Live and quick migrations begun for each role since it was created",
        migrations,
    );

    if let Some(validation) = &state.last_validation {
        let results = Family::<Labels, Gauge>::default();
        state_set(
            &results,
            &vec![("by", validation.by.clone())],
            &["pass", "warning", "fail"],
            halo_core::validation::outcome_word(validation.result),
        );
        registry.register("validation_result", "The result of the latest cluster validation", results);
        let age = FloatGauge::default();
        age.set(seconds(clock::wall_ms().saturating_sub(validation.at_ms)));
        registry.register_with_unit("validation_age", "Time since the latest cluster validation", Unit::Seconds, age);
    }
}

/// What only this node knows.
fn local_series(
    registry: &mut Registry,
    agent: &Agent,
    member: &crate::cluster::agent::Member,
    state: &halo_core::state::ClusterState,
) {
    let now_ms = clock::monotonic_ms();
    if agent.guard.is_some() {
        let remaining = FloatGauge::default();
        remaining.set(seconds(agent.lease_remaining_ms(now_ms)));
        registry.register_with_unit(
            "lease_remaining",
            "How much longer this node may run roles without hearing from the leader",
            Unit::Seconds,
            remaining,
        );
        if let Some(age) = agent.lease_age_ms(now_ms) {
            let g = FloatGauge::default();
            g.set(seconds(age));
            registry.register_with_unit("lease_age", "Time since this node's lease was last renewed", Unit::Seconds, g);
        }
        registry.register(
            "lease_lapses",
            "Times this node's lease ran out while it held one (a partition, a lost quorum, or a stall)",
            agent.metrics.lease_lapses.clone(),
        );
    }

    let round_trips = Family::<Labels, FloatGauge>::default();
    let paths = Family::<Labels, Gauge>::default();
    for peer in state.nodes.values().filter(|n| n.id != member.id) {
        for index in 0..peer.networks.len() {
            let labels = vec![("peer", peer.name.clone()), ("network", index.to_string())];
            let alive = agent.heartbeats().network_alive(peer.id, index, now_ms);
            paths.get_or_create(&labels).set(alive as i64);
            if let Some(us) = agent.round_trip_us(peer.id, index) {
                round_trips.get_or_create(&labels).set(us as f64 / 1e6);
            }
        }
    }
    registry.register("heartbeat_path_up", "Whether this node hears each peer on each network", paths);
    registry.register_with_unit(
        "heartbeat_round_trip",
        "Smoothed heartbeat round trip from this node to each peer on each network",
        Unit::Seconds,
        round_trips,
    );

    let raft = member.consensus.status();
    let committed = raft.committed_index;
    let applied = member.reader.applied_index();
    registry.register("raft_term", "This node's Raft term", gauge(raft.term as i64));
    registry.register(
        "raft_last_log_index",
        "Index of the last entry in this node's log",
        gauge(raft.last_log_index as i64),
    );
    registry.register("raft_commit_index", "Highest log index this node knows is committed", gauge(committed as i64));
    registry.register("raft_applied_index", "Highest log index applied to this node's database", gauge(applied as i64));
    registry.register(
        "raft_apply_lag",
        "Committed entries not yet applied here",
        gauge(committed.saturating_sub(applied) as i64),
    );
    registry.register("raft_leader", "Whether this node is the Raft leader", gauge(raft.leading as i64));
    if let Some(replication) = &raft.replication {
        let lag = Family::<Labels, Gauge>::default();
        let last = raft.last_log_index;
        for (id, matched) in replication.iter().filter(|(id, _)| **id != member.id) {
            let name = state.nodes.get(id).map_or_else(|| id.to_string(), |n| n.name.clone());
            lag.get_or_create(&vec![("peer", name)]).set(last.saturating_sub(matched.unwrap_or(0)) as i64);
        }
        registry.register("raft_replication_lag", "On the leader: log entries each peer has yet to receive", lag);
    }
    let last_event = member.reader.events(None, 1).ok().and_then(|e| e.last().map(|e| e.seq)).unwrap_or(0);
    registry.register("events_last_sequence", "Sequence number of the newest cluster event", gauge(last_event as i64));
}
