//! The simulated world: N nodes running halo's decision code on virtual clocks, one thread,
//! driven by a seeded RNG, so a seed replays exactly.
//!
//! What is halo's own code: the cluster state and its commands (`ClusterState::apply`), the
//! failure detector and node-state judgement (`membership`), leases (`Lease`, `LeaseTiming`),
//! the leader's liveness verdict (`liveness`), the failover policy and placement (`policy`),
//! and what a node should run (`execution`). What is modelled: Raft (a committed log with
//! leader changes; a leader commits while it reaches a majority, and renews its quorum
//! acknowledgement every Raft heartbeat), the network (per-network UDP with loss, delay and
//! partitions), the executor's I/O (a role starts or stops at once on its tick), and the fence
//! guard (it kills a node's workloads the moment its lease runs out, even while the agent is
//! paused). Each node's clock runs at its own rate, within the drift the lease margin allows.

use std::collections::{BTreeMap, BTreeSet};

use halo_core::NodeId;
use halo_core::capacity::Capacity;
use halo_core::command::{Command, RoleReport};
use halo_core::former_leader::{AppendReceipts, LeaderId, Voters};
use halo_core::heartbeat::{Datagram, Endpoint, Leadership, View, first_sequence};
use halo_core::leader::{self, RaftMembers, Succession};
use halo_core::lease::LeaseTiming;
use halo_core::liveness;
use halo_core::migration::{MigrationReport, MoveMode};
use halo_core::policy::{self, Inputs};
use halo_core::reconcile::{self, Held, Plan};
use halo_core::role::Desired;
use halo_core::role::RoleSpec;
use halo_core::settings::ClusterSettings;
use halo_core::state::{ClusterInfo, ClusterState, NetworkRecord, NetworkState, NodeRecord, NodeState};
use halo_core::timing::Profile;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod migration;

pub const STEP_MS: u64 = 10;
const EXECUTOR_TICK_MS: u64 = 200;
const MANAGER_TICK_MS: u64 = 100;
const NETWORKS: usize = 2;
/// Wall clock at the start (for the policy's failover windows).
const EPOCH_MS: u64 = 1_790_000_000_000;

/// A deliberately broken part of the world, to prove the invariant checkers catch what it
/// breaks. (Bugs in halo's own rules are put back into the shared code itself:
/// `tests/mutants.rs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Fence agents report a power-off they did not do (a misconfigured device).
    LyingFenceAgent,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nodes: usize,
    pub roles: usize,
    pub profile: Profile,
    pub duration_ms: u64,
    /// Faults are injected until then; after it the network heals and everyone is restarted.
    pub faults_until_ms: u64,
    pub bug: Option<Bug>,
    pub verbose: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nodes: 3,
            roles: 4,
            profile: Profile::Default,
            duration_ms: 40_000,
            faults_until_ms: 28_000,
            bug: None,
            verbose: false,
        }
    }
}

#[derive(Debug, Clone)]
enum Msg {
    /// A heartbeat or a lease grant, exactly as the agent's endpoint makes it.
    Datagram(Datagram),
    Report(RoleReport),
    Migration(MigrationReport),
}

#[derive(Debug, Clone)]
struct Packet {
    deliver_at: u64,
    to: NodeId,
    network: usize,
    msg: Msg,
}

pub struct Node {
    pub id: NodeId,
    pub up: bool,
    pub paused: bool,
    drift_ppm: i64,
    offset_ms: u64,
    /// Its copy of the cluster database (durable across crashes) and how much of the log it
    /// has applied.
    pub state: ClusterState,
    pub applied: usize,
    /// Its end of the heartbeat protocol, the agent's own code: detector, leases, grants.
    heartbeats: Endpoint,
    /// Bumped at every restart, as the agent's counter on disk.
    incarnation: u32,
    /// Workloads alive on this node: role → generation it was started under.
    pub running: BTreeMap<String, u64>,
    /// Workloads whose stop failed: they run on until the guard kills everything.
    stuck: BTreeSet<String>,
    /// While it leads (or believes it does): its term and the local time of the last Raft
    /// heartbeat a majority acknowledged.
    leading: Option<(u64, u64)>,
    /// Whom it followed and when it took over: the leader's tick's own record (`leader`).
    succession: Succession,
    /// Its Raft vote (durable across crashes), and the appends it took and its candidacies
    /// since it last started: its voter report (`former_leader`), as the agent's.
    vote: LeaderId,
    receipts: AppendReceipts,
    next_heartbeat: u64,
    next_executor: u64,
    /// Reports sent, to avoid flooding: (role, outcome, generation) → global time.
    reported: BTreeMap<String, u64>,
    /// VM roles: QEMUs that hold a guest without running it, transfers under way, and
    /// migration reports not yet reflected in the state (see `migration`).
    copies: BTreeMap<String, migration::Copy>,
    migrating: BTreeMap<String, migration::Transfer>,
    migration_reports: BTreeMap<String, MigrationReport>,
}

impl Node {
    /// This node's monotonic clock at global time `t`.
    pub fn now(&self, t: u64) -> u64 {
        let drifted = t as i128 + (t as i128 * self.drift_ppm as i128) / 1_000_000;
        self.offset_ms + drifted.max(0) as u64
    }

    pub fn lease_valid(&self, t: u64) -> bool {
        self.heartbeats.lease().valid(self.now(t))
    }

    /// Its leadership as the Raft model has it (a leader commits what it applied at once).
    fn leadership(&self, local: u64) -> Option<Leadership> {
        self.leading.map(|(_, acked)| Leadership {
            acked_ago_ms: local.saturating_sub(acked),
            committed_index: self.applied as u64,
        })
    }

    /// What it holds of each role, as the shared plan sees it: running workloads (a stuck
    /// one is being stopped and says so), and the QEMUs that hold a guest without running it.
    fn held(&self) -> BTreeMap<String, Held> {
        let mut held = BTreeMap::new();
        for (name, &generation) in &self.running {
            let stuck = self.stuck.contains(name);
            let stop_failed = stuck.then(|| "its stop failed and it runs on".to_string());
            held.insert(
                name.clone(),
                Held { generation, running: !stuck, stopping: stuck, incoming: None, stop_failed },
            );
        }
        for (name, copy) in &self.copies {
            let copy = match *copy {
                migration::Copy::Incoming { id } => Held { incoming: Some(id), ..Held::default() },
                migration::Copy::Out { generation, .. } => Held { generation, ..Held::default() },
            };
            held.entry(name.clone()).or_insert(copy);
        }
        held
    }

    /// `rule` (the executor's plan or its reports) for this node at global time `t` (it runs
    /// no restart policy, so nothing has failed here for good).
    fn decide<R>(&self, id: NodeId, t: u64, rule: impl FnOnce(&reconcile::Inputs) -> R) -> R {
        let local = self.now(t);
        let held = self.held();
        let failed = BTreeMap::new();
        rule(&reconcile::Inputs {
            state: &self.state,
            me: id,
            lease_held: self.heartbeats.lease().valid(local),
            may_start: self.heartbeats.may_start(self.applied as u64, local),
            held: &held,
            failed: &failed,
        })
    }

    /// Everything the node's guard started dies (a lease that ran out, a crash).
    fn lose_workloads(&mut self) {
        self.running.clear();
        self.stuck.clear();
        self.copies.clear();
        self.migrating.clear();
    }
}

pub struct World {
    pub cfg: Config,
    /// ChaCha8: a stream fixed by the algorithm, so recorded seeds replay across versions.
    rng: ChaCha8Rng,
    pub time: u64,
    pub nodes: Vec<Node>,
    pub log: Vec<Command>,
    pub leader: Option<NodeId>,
    term: u64,
    leaderless_since: Option<u64>,
    election_after_ms: u64,
    /// Directed (from, to, network) pairs that cannot talk.
    blocked: BTreeSet<(NodeId, NodeId, usize)>,
    drop_rate: f64,
    max_delay_ms: u64,
    packets: Vec<Packet>,
    /// Scheduled ends of faults: (global time, what to undo).
    pending: Vec<(u64, Undo)>,
    next_fault: u64,
    next_admin: u64,
    /// Once the faults end, the admin undoes their stops and drains (once a leader exists).
    reset_done: bool,
    next_raft: u64,
    next_manager: u64,
    pub faults: usize,
    pub admin_ops: usize,
    /// The leader's fence-agent attempts per node (forgotten on a leader change).
    fencing: BTreeMap<NodeId, Fence>,
    pub fenced: usize,
    /// VM migrations whose guest resumed at the target, and ones dropped after the guest had
    /// left, whose source resumed it.
    pub migrated: usize,
    pub migrations_called_back: usize,
    /// Takeovers where the voters' reports bounded the former leader's lease, and the last
    /// term counted.
    pub bounded_takeovers: usize,
    bounded_term: u64,
    pub trace: Vec<String>,
    pub violations: Vec<String>,
}

/// One fence-agent attempt: under way until `done_at` with a known outcome, or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fence {
    Running { done_at: u64, powers_off: bool },
    Confirmed,
    Failed { at: u64 },
}

#[derive(Debug, Clone)]
enum Undo {
    Restart(NodeId),
    Resume(NodeId),
    Heal(NodeId, Vec<(NodeId, NodeId, usize)>),
}

impl World {
    pub fn new(seed: u64, cfg: Config) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let settings = ClusterSettings::of(cfg.profile, cfg.profile.raft());
        let mut genesis = genesis(cfg.nodes, settings.clone());
        // Half the clusters have a fence device on every node.
        if rng.random_bool(0.5) {
            for id in 1..=cfg.nodes as NodeId {
                let device = halo_core::state::FenceDevice { agent: "fence_sim".into(), params: Default::default() };
                genesis.fence_devices.insert(id, device);
            }
        }
        let nodes = (1..=cfg.nodes as NodeId)
            .map(|id| {
                let offset_ms = rng.random_range(0..100_000);
                Node {
                    id,
                    up: true,
                    paused: false,
                    // Well within the lease margin (10 % of the lease).
                    drift_ppm: rng.random_range(-2_000..=2_000),
                    offset_ms,
                    state: genesis.clone(),
                    applied: 0,
                    heartbeats: Endpoint::new(id, first_sequence(1), settings.node_timeout_ms),
                    incarnation: 1,
                    running: BTreeMap::new(),
                    stuck: BTreeSet::new(),
                    leading: None,
                    succession: Succession::default(),
                    vote: LeaderId::default(),
                    receipts: AppendReceipts::new(id, LeaderId::default(), 0),
                    next_heartbeat: 0,
                    next_executor: rng.random_range(0..EXECUTOR_TICK_MS),
                    reported: BTreeMap::new(),
                    copies: BTreeMap::new(),
                    migrating: BTreeMap::new(),
                    migration_reports: BTreeMap::new(),
                }
            })
            .collect();
        let log = (0..cfg.roles).map(|i| Command::CreateRole { spec: role_spec(i), now_ms: EPOCH_MS }).collect();
        let drop_rate = rng.random_range(0.0..0.15);
        let max_delay_ms = rng.random_range(1..40);
        let mut world = Self {
            rng,
            time: 0,
            nodes,
            log,
            leader: None,
            term: 0,
            leaderless_since: Some(0),
            election_after_ms: 0,
            blocked: BTreeSet::new(),
            drop_rate,
            max_delay_ms,
            packets: Vec::new(),
            pending: Vec::new(),
            next_fault: 2_000,
            next_admin: 3_000,
            reset_done: false,
            next_raft: 0,
            next_manager: 0,
            faults: 0,
            admin_ops: 0,
            fencing: BTreeMap::new(),
            fenced: 0,
            migrated: 0,
            migrations_called_back: 0,
            bounded_takeovers: 0,
            bounded_term: 0,
            trace: Vec::new(),
            violations: Vec::new(),
            cfg,
        };
        world.note(format!("drop rate {:.3}, max delay {} ms", world.drop_rate, world.max_delay_ms));
        world
    }

    fn note(&mut self, line: String) {
        if self.cfg.verbose {
            println!("{:>7} ms  {line}", self.time);
        }
        self.trace.push(format!("{} ms {line}", self.time));
    }

    fn timing(&self) -> LeaseTiming {
        self.nodes[0].state.settings.lease_timing()
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn active(&self, id: NodeId) -> bool {
        let n = &self.nodes[id as usize - 1];
        n.up && !n.paused
    }

    /// Raft's view: two nodes talk if some network connects them both ways.
    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        a == b
            || (self.active(a)
                && self.active(b)
                && (0..NETWORKS).any(|n| !self.blocked.contains(&(a, b, n)) && !self.blocked.contains(&(b, a, n))))
    }

    fn reaches_majority(&self, id: NodeId) -> bool {
        let reached = (1..=self.cfg.nodes as NodeId).filter(|&o| self.connected(id, o)).count();
        self.active(id) && reached * 2 > self.cfg.nodes
    }

    /// One step of the world; returns false once the run is over.
    pub fn step(&mut self) -> bool {
        self.time += STEP_MS;
        self.faults_and_repairs();
        self.fence_agents();
        self.admin();
        self.deliver();
        if self.time >= self.next_raft {
            self.next_raft = self.time + self.nodes[0].state.settings.raft.raft_heartbeat_ms;
            self.raft();
        }
        for i in 0..self.nodes.len() {
            let id = i as NodeId + 1;
            self.heartbeat(id);
            self.executor(id);
            self.migrations(id);
            self.guard(id);
        }
        if self.time >= self.next_manager {
            self.next_manager = self.time + MANAGER_TICK_MS;
            self.manager();
        }
        crate::invariants::check_step(self);
        self.time < self.cfg.duration_ms && self.violations.is_empty()
    }

    /// A datagram: lost, delayed (so reordered), or now and then delivered twice.
    fn send(&mut self, from: NodeId, to: NodeId, network: usize, msg: Msg) {
        if self.blocked.contains(&(from, to, network)) || self.rng.random_bool(self.drop_rate) {
            return;
        }
        let copies = if self.rng.random_bool(self.drop_rate / 4.0) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.random_range(0..=self.max_delay_ms);
            self.packets.push(Packet { deliver_at: self.time + delay, to, network, msg: msg.clone() });
        }
    }

    fn deliver(&mut self) {
        let now = self.time;
        let (due, later): (Vec<Packet>, Vec<Packet>) = self.packets.drain(..).partition(|p| p.deliver_at <= now);
        self.packets = later;
        for packet in due {
            if !self.active(packet.to) {
                continue;
            }
            let t = self.time;
            match packet.msg {
                Msg::Datagram(datagram) => {
                    let timing = self.timing();
                    let to = packet.to;
                    let node = &mut self.nodes[to as usize - 1];
                    let local = node.now(t);
                    let view = View { state: &node.state, timing, leadership: node.leadership(local), report: None };
                    let answer = node.heartbeats.receive(datagram, packet.network, &view, local * 1000);
                    if let Some(answer) = answer {
                        self.send(to, answer.to, answer.network, Msg::Datagram(answer.datagram));
                    }
                }
                Msg::Report(report) => {
                    if self.leader == Some(packet.to) && self.reaches_majority(packet.to) {
                        self.propose(Command::ReportRole(report));
                    }
                }
                Msg::Migration(report) => {
                    if self.leader == Some(packet.to) && self.reaches_majority(packet.to) {
                        self.propose(Command::ReportMigration(report));
                    }
                }
            }
        }
    }

    /// Commit `command` through the current leader (it reaches a majority).
    fn propose(&mut self, command: Command) {
        self.log.push(command);
        if let Some(l) = self.leader {
            self.catch_up(l);
        }
    }

    fn catch_up(&mut self, id: NodeId) {
        let log_len = self.log.len();
        let mut broken = Vec::new();
        let node = &mut self.nodes[id as usize - 1];
        while node.applied < log_len {
            let before: BTreeMap<String, u64> =
                node.state.roles.iter().map(|(k, r)| (k.clone(), r.generation)).collect();
            node.state.apply(&self.log[node.applied]);
            node.applied += 1;
            for (name, r) in &node.state.roles {
                if before.get(name).is_some_and(|&g| r.generation < g) {
                    broken.push(format!("node {id}: role {name} generation went back to {}", r.generation));
                }
            }
        }
        self.violations.extend(broken);
    }

    /// Raft heartbeats and elections, as a model.
    fn raft(&mut self) {
        let valid = self.leader.filter(|&l| self.reaches_majority(l));
        match valid {
            Some(l) => {
                self.leaderless_since = None;
                let local = self.nodes[l as usize - 1].now(self.time);
                let term = self.term;
                self.node(l).leading = Some((term, local));
                let leader = LeaderId { term, node: l };
                for id in 1..=self.cfg.nodes as NodeId {
                    if id != l && self.connected(l, id) {
                        // An append: recorded as taken before it is acknowledged.
                        let t = self.time;
                        let node = self.node(id);
                        let seen = node.now(t);
                        node.receipts.took(leader, seen);
                        node.vote = node.vote.max(leader);
                        self.catch_up(id);
                        let node = self.node(id);
                        node.leading = None;
                        node.succession.observe(id, Some(leader), seen);
                    }
                }
            }
            None => {
                let since = *self.leaderless_since.get_or_insert(self.time);
                if self.election_after_ms == 0 {
                    // An election timeout, pre-vote and the vote itself; now and then one
                    // quicker than openraft allows (it waits out a leader lease of silence
                    // first), since halo's safety must not rest on a slow election.
                    let raft = self.nodes[0].state.settings.raft;
                    let (first, last) = if self.rng.random_bool(0.25) {
                        (raft.raft_heartbeat_ms, raft.election_timeout_min_ms)
                    } else {
                        (raft.election_timeout_min_ms + 100, raft.election_timeout_max_ms + 400)
                    };
                    self.election_after_ms = self.rng.random_range(first..last);
                }
                if self.time < since + self.election_after_ms {
                    return;
                }
                let candidates: Vec<NodeId> =
                    (1..=self.cfg.nodes as NodeId).filter(|&id| self.reaches_majority(id)).collect();
                if candidates.is_empty() {
                    return;
                }
                let winner = candidates[self.rng.random_range(0..candidates.len())];
                self.election_after_ms = 0;
                self.term += 1;
                let term = self.term;
                let elected = LeaderId { term, node: winner };
                // It leads (its vote for itself is committed), and the voters it reaches voted
                // for it: they take nothing from an earlier leader from now on.
                self.node(winner).receipts.committed(elected);
                for id in 1..=self.cfg.nodes as NodeId {
                    if self.connected(winner, id) {
                        let node = self.node(id);
                        node.vote = node.vote.max(elected);
                    }
                }
                self.leader = Some(winner);
                self.fencing.clear();
                self.catch_up(winner);
                let t = self.time;
                let node = self.node(winner);
                let at_ms = node.now(t);
                node.succession.observe(winner, Some(elected), at_ms);
                node.leading = Some((term, at_ms));
                self.note(format!("node {winner} leads term {term}"));
            }
        }
    }

    fn heartbeat(&mut self, id: NodeId) {
        let t = self.time;
        if !self.active(id) || t < self.nodes[id as usize - 1].next_heartbeat {
            return;
        }
        let timing = self.timing();
        let node = self.node(id);
        node.next_heartbeat = t + node.state.settings.heartbeat_interval_ms;
        let local = node.now(t);
        let report = node.receipts.report(node.vote, local);
        let view = View { state: &node.state, timing, leadership: node.leadership(local), report };
        let out = node.heartbeats.beat(&view, local * 1000);
        for o in out {
            self.send(id, o.to, o.network, Msg::Datagram(o.datagram));
        }
    }

    /// The executor: the shared plan (`halo_core::reconcile`) carried out on the model. A
    /// start or stop takes effect at once; now and then a stop fails and what it stopped runs
    /// on (only a fence ends it).
    fn executor(&mut self, id: NodeId) {
        let t = self.time;
        if !self.active(id) || t < self.nodes[id as usize - 1].next_executor {
            return;
        }
        let leader = self.leader;
        let stop_fails = self.rng.random_bool(0.03);
        let node = self.node(id);
        node.next_executor = t + EXECUTOR_TICK_MS;
        let plan: Plan = node.decide(id, t, reconcile::reconcile);
        // A migration's QEMU copies come and go with its model (`migration`).
        for name in plan.stop {
            if !node.running.contains_key(&name) {
                continue;
            }
            if node.stuck.contains(&name) || stop_fails {
                node.stuck.insert(name);
            } else {
                node.running.remove(&name);
            }
        }
        let mut started = Vec::new();
        for name in plan.start {
            let generation = node.state.roles.get(&name).map_or(0, |r| r.generation);
            node.running.insert(name.clone(), generation);
            started.push((name, generation));
        }
        let mut reports = Vec::new();
        for report in node.decide(id, t, reconcile::reports) {
            let key = format!("{}/{:?}/{}", report.role, report.outcome, report.generation);
            if node.reported.get(&key).is_some_and(|&at| t < at + 500) {
                continue;
            }
            node.reported.insert(key, t);
            reports.push(RoleReport {
                role: report.role,
                node: id,
                generation: report.generation,
                outcome: report.outcome,
                detail: report.detail,
                now_ms: EPOCH_MS + t,
            });
        }
        for (name, generation) in started {
            self.note(format!("node {id} starts {name} (generation {generation})"));
        }
        if let Some(l) = leader {
            for report in reports {
                let network = self.rng.random_range(0..NETWORKS);
                if l == id {
                    if self.reaches_majority(id) {
                        self.propose(Command::ReportRole(report));
                    }
                } else {
                    self.send(id, l, network, Msg::Report(report));
                }
            }
        }
    }

    /// The fence guard: runs even while the agent is paused.
    fn guard(&mut self, id: NodeId) {
        let t = self.time;
        let node = self.node(id);
        let holds = !node.running.is_empty() || !node.copies.is_empty();
        if node.up && holds && !node.heartbeats.lease().valid(node.now(t)) {
            let killed: Vec<String> = node.running.keys().chain(node.copies.keys()).cloned().collect();
            node.lose_workloads();
            self.note(format!("node {id}: lease ran out, guard killed {}", killed.join(", ")));
        }
    }

    /// The leader's manager, as the agent's: the shared tick (`halo_core::leader`) on this
    /// node's view, its commands proposed, and its fence attempts started.
    fn manager(&mut self) {
        let Some(l) = self.leader.filter(|&l| self.reaches_majority(l)) else { return };
        let t = self.time;
        let term = self.term;
        // The Raft model keeps every node a caught-up voter.
        let members: BTreeSet<NodeId> = (1..=self.cfg.nodes as NodeId).collect();
        let log_len = self.log.len() as u64;
        let raft = RaftMembers {
            voters: members.clone(),
            matched: members.iter().map(|&id| (id, log_len)).collect(),
            members,
            last_index: log_len,
        };
        let node = &mut self.nodes[l as usize - 1];
        let local = node.now(t);
        if node.succession.observe(l, Some(LeaderId { term, node: l }), local).is_none() {
            return;
        }
        // The Raft model's membership: every node a voter since the cluster was made.
        let voters = Voters { ids: (1..=self.cfg.nodes as NodeId).collect(), uniform: true, logged_in_term: 0 };
        let own = node.receipts.report(node.vote, local).map(|report| (l, local, report));
        let reports: Vec<_> = node.heartbeats.voter_reports().chain(own).collect();
        let Some(takeover) = node.succession.hear_voters(&voters, reports) else { return };
        if let Some(former) = takeover.former
            && self.bounded_term < term
        {
            self.bounded_term = term;
            self.bounded_takeovers += 1;
            let line = format!("leader {l}: the voters bound former leader {}'s last acknowledged append", former.id);
            self.note(line);
        }
        let node = &mut self.nodes[l as usize - 1];
        let judgement = leader::judge_nodes(&node.state, l, &raft, |id| node.heartbeats.assess(id, local));
        if !judgement.updates.is_empty() {
            self.propose(Command::SetNodeStates { now_ms: EPOCH_MS + t, updates: judgement.updates });
        }
        let node = &self.nodes[l as usize - 1];
        let fencing = &self.fencing;
        let confirmed = |id: NodeId| {
            (fencing.get(&id) == Some(&Fence::Confirmed)).then(|| "was powered off by fence_sim".to_string())
        };
        let verdicts =
            leader::verdicts(&node.state, l, takeover, local, |id| node.heartbeats.observed(id, local), confirmed);
        for id in &verdicts.heard {
            self.fencing.remove(id);
        }
        for &id in &verdicts.fence {
            self.start_fencing(id);
        }
        let state = self.nodes[l as usize - 1].state.clone();
        for command in policy::decide(&Inputs { state: &state, liveness: &verdicts.liveness, now_ms: EPOCH_MS + t }) {
            if let Command::DecideRole(d) = &command
                && let Some(decision) = &d.decision
            {
                let line = format!("leader {l}: {} {}", d.role, decision.summary);
                self.note(line);
            }
            self.propose(command);
        }
        let state = self.nodes[l as usize - 1].state.clone();
        for node in liveness::fenced_and_recovered(&state, &verdicts.liveness) {
            self.note(format!("leader {l}: node {node} was fenced and its roles recovered"));
            self.propose(Command::ClearFenceRequest { node });
        }
    }

    /// The leader runs the node's fence agent, unless an attempt is under way or just failed.
    /// It works (the node loses power: everything on it dies), fails, or is slow.
    fn start_fencing(&mut self, id: NodeId) {
        let t = self.time;
        match self.fencing.get(&id) {
            Some(Fence::Running { .. } | Fence::Confirmed) => return,
            Some(Fence::Failed { at }) if t < at + 5_000 => return,
            _ => {}
        }
        let powers_off = self.rng.random_bool(0.7);
        let slowest = if self.rng.random_bool(0.2) { 8_000 } else { 500 };
        let done_at = t + self.rng.random_range(20..slowest);
        self.fencing.insert(id, Fence::Running { done_at, powers_off });
    }

    fn fence_agents(&mut self) {
        let t = self.time;
        let done: Vec<(NodeId, bool)> = self
            .fencing
            .iter()
            .filter_map(|(&id, f)| match *f {
                Fence::Running { done_at, powers_off } if done_at <= t => Some((id, powers_off)),
                _ => None,
            })
            .collect();
        for (id, powers_off) in done {
            let lies = self.cfg.bug == Some(Bug::LyingFenceAgent);
            if powers_off && !lies {
                self.note(format!("fence agent powered node {id} off"));
                self.power_off(id);
            }
            let outcome = if powers_off { Fence::Confirmed } else { Fence::Failed { at: t } };
            if powers_off {
                self.fenced += 1;
            }
            self.fencing.insert(id, outcome);
        }
    }

    /// A crash, and the node comes back a few seconds later.
    fn power_off(&mut self, id: NodeId) {
        if self.leader == Some(id) {
            self.leader = None;
        }
        let node = self.node(id);
        let was_up = node.up;
        node.up = false;
        node.lose_workloads();
        node.migration_reports.clear();
        if was_up && !self.pending.iter().any(|(_, u)| matches!(u, Undo::Restart(n) if *n == id)) {
            let back = self.time + self.rng.random_range(2_000..5_000);
            self.pending.retain(|(_, u)| !matches!(u, Undo::Resume(n) if *n == id));
            self.pending.push((back, Undo::Restart(id)));
        }
    }

    /// What an admin does meanwhile: moves, stops and starts roles, drains and resumes nodes.
    /// When the faults end, everything is asked to run again, so L1 can be checked.
    fn admin(&mut self) {
        let t = self.time;
        let Some(leader) = self.leader.filter(|&l| self.reaches_majority(l)) else { return };
        let n = self.cfg.nodes as NodeId;
        if t >= self.cfg.faults_until_ms && !self.reset_done {
            self.reset_done = true;
            for node in 1..=n {
                self.propose(Command::ResumeNode { node, failback: false, now_ms: EPOCH_MS + t });
            }
            for i in 0..self.cfg.roles {
                let role = format!("r{i}");
                self.propose(Command::SetRoleDesired { role, desired: Desired::Started, now_ms: EPOCH_MS + t });
            }
            return;
        }
        if t >= self.cfg.faults_until_ms || t < self.next_admin {
            return;
        }
        self.next_admin = t + self.rng.random_range(1_000..5_000);
        let role = format!("r{}", self.rng.random_range(0..self.cfg.roles));
        let node = self.rng.random_range(1..=n);
        // VM roles move live by default; the admin also asks for a mode now and then (one that
        // does not suit the role is refused).
        let mode =
            [None, Some(MoveMode::Live), Some(MoveMode::Quick), Some(MoveMode::Cold)][self.rng.random_range(0..4)];
        let command = match self.rng.random_range(0..6) {
            0 => Command::MoveRole { role, to: None, mode },
            1 => Command::MoveRole { role, to: Some(node), mode },
            2 => Command::SetRoleDesired { role, desired: Desired::Stopped, now_ms: EPOCH_MS + t },
            3 => Command::SetRoleDesired { role, desired: Desired::Started, now_ms: EPOCH_MS + t },
            4 => Command::PauseNode { node, drain: true, now_ms: EPOCH_MS + t },
            _ => Command::ResumeNode { node, failback: true, now_ms: EPOCH_MS + t },
        };
        // Refused requests (a move to an unfit node, say) change nothing, as in the daemon.
        let mut check = self.nodes[leader as usize - 1].state.clone();
        if !matches!(check.apply(&command), halo_core::command::CommandResult::Rejected(_)) {
            self.admin_ops += 1;
            self.note(format!("admin: {command}"));
            self.propose(command);
        }
    }

    fn faults_and_repairs(&mut self) {
        let t = self.time;
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|(at, _)| *at <= t);
        self.pending = later;
        for (_, undo) in due {
            self.undo(undo);
        }
        if t >= self.cfg.faults_until_ms {
            if t == self.cfg.faults_until_ms / STEP_MS * STEP_MS {
                let all: Vec<Undo> = self.pending.drain(..).map(|(_, u)| u).collect();
                for undo in all {
                    self.undo(undo);
                }
                self.drop_rate = 0.0;
                self.note("faults end: everything healed".into());
            }
            return;
        }
        if t < self.next_fault {
            return;
        }
        self.next_fault = t + self.rng.random_range(500..3_000);
        // Never more than a minority hit at once: the majority must be able to recover.
        let hit: BTreeSet<NodeId> = self
            .pending
            .iter()
            .flat_map(|(_, u)| match u {
                Undo::Restart(n) | Undo::Resume(n) => vec![*n],
                Undo::Heal(n, _) => vec![*n],
            })
            .collect();
        if (hit.len() + 1) * 2 > self.cfg.nodes {
            return;
        }
        let victim = self.rng.random_range(1..=self.cfg.nodes as NodeId);
        if hit.contains(&victim) || !self.nodes[victim as usize - 1].up {
            return;
        }
        let until = t + self.rng.random_range(300..5_000);
        self.faults += 1;
        if self.rng.random_bool(0.2) {
            // A workload dies on its own; its node restarts it in place.
            let node = self.node(victim);
            if let Some(name) = node.running.keys().find(|n| !node.stuck.contains(*n)).cloned() {
                node.running.remove(&name);
                self.faults += 1;
                self.note(format!("workload {name} on node {victim} dies"));
            }
            return;
        }
        match self.rng.random_range(0..5) {
            0 => {
                self.note(format!("crash node {victim}"));
                // It comes back a follower; whoever leads next is elected.
                if self.leader == Some(victim) {
                    self.leader = None;
                }
                let node = self.node(victim);
                node.up = false;
                node.lose_workloads();
                node.migration_reports.clear();
                self.pending.push((until, Undo::Restart(victim)));
            }
            1 => {
                self.note(format!("pause the agent of node {victim} (its guard runs on)"));
                self.node(victim).paused = true;
                self.pending.push((until, Undo::Resume(victim)));
            }
            kind => {
                // 2: cut it off on every network; 3: on one network only; 4: one way only (it
                // hears the others, they do not hear it, or the reverse), on every network.
                let networks: Vec<usize> =
                    if kind == 3 { vec![self.rng.random_range(0..NETWORKS)] } else { (0..NETWORKS).collect() };
                let (outbound, inbound) = match kind {
                    4 if self.rng.random_bool(0.5) => (true, false),
                    4 => (false, true),
                    _ => (true, true),
                };
                let mut pairs = Vec::new();
                for other in (1..=self.cfg.nodes as NodeId).filter(|&o| o != victim) {
                    for &n in &networks {
                        if outbound {
                            pairs.push((victim, other, n));
                        }
                        if inbound {
                            pairs.push((other, victim, n));
                        }
                    }
                }
                let how = if outbound && inbound {
                    "both ways"
                } else if outbound {
                    "outbound"
                } else {
                    "inbound"
                };
                self.note(format!("partition node {victim} on network(s) {networks:?}, {how}"));
                self.blocked.extend(pairs.iter().copied());
                self.pending.push((until, Undo::Heal(victim, pairs)));
            }
        }
    }

    fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Restart(id) => {
                self.note(format!("restart node {id}"));
                let t = self.time;
                let node = self.node(id);
                node.up = true;
                node.paused = false;
                node.incarnation += 1;
                let timeout = node.state.settings.node_timeout_ms;
                node.heartbeats = Endpoint::new(id, first_sequence(node.incarnation), timeout);
                node.leading = None;
                node.succession = Succession::default();
                let now = node.now(t);
                node.receipts = AppendReceipts::new(id, node.vote, now);
                node.reported.clear();
            }
            Undo::Resume(id) => {
                self.note(format!("resume node {id}"));
                self.node(id).paused = false;
            }
            Undo::Heal(_, pairs) => {
                self.note("heal a partition".into());
                for p in pairs {
                    self.blocked.remove(&p);
                }
            }
        }
    }
}

/// The cluster as `halo cluster create` and joins leave it: every node up, a voter.
fn genesis(nodes: usize, settings: ClusterSettings) -> ClusterState {
    let mut state = ClusterState { settings, ..ClusterState::default() };
    state.settings.shared_storage = vec!["/shared".into()];
    state.cluster = Some(ClusterInfo {
        name: "sim".into(),
        id: "sim".into(),
        created_at_ms: EPOCH_MS,
        ca_cert_pem: String::new(),
        ca_key_pem: String::new(),
        admin_token_sha256: String::new(),
        heartbeat_key_hex: String::new(),
        ca_rotation: None,
    });
    for id in 1..=nodes as NodeId {
        state.nodes.insert(
            id,
            NodeRecord {
                id,
                name: format!("n{id}"),
                api: format!("10.0.0.{id}:7400"),
                networks: (0..NETWORKS)
                    .map(|n| NetworkRecord { address: format!("10.{n}.0.{id}:7401"), state: NetworkState::Up })
                    .collect(),
                state: NodeState::Up,
                witness: false,
                voter: true,
                joined_at_ms: EPOCH_MS,
                state_since_ms: EPOCH_MS,
                drain: false,
                capacity: Some(Capacity { cpu_milli: 4000, memory_mb: 2048 }),
                fence_request: None,
                data_disk_low: None,
            },
        );
    }
    state.next_node_id = nodes as NodeId + 1;
    state
}

/// Roles of 1 or 0.5 GiB on nodes of 2 GiB; every third prefers node 1, the first two share a
/// hard anti-affinity class, the first is high priority, the second low (it may be displaced)
/// and the third manual (held after a loss until the admin starts it). From the fourth on,
/// every other one is a VM (migrated live or quick when it moves).
fn role_spec(i: usize) -> RoleSpec {
    let anti = if i < 2 { r#","anti_affinity":["db"]"# } else { "" };
    let preferred = if i.is_multiple_of(3) { r#","preferred":["n1"]"# } else { "" };
    let priority = ["high", "low", "manual"].get(i).copied().unwrap_or("medium");
    let memory_mb = if i < 2 { 1024 } else { 512 };
    let resource = if i >= 3 && i % 2 == 1 {
        r#"{"name":"main","type":"vm","params":{"kernel":"/shared/vmlinuz","memory":"256M"}}"#
    } else {
        r#"{"name":"main","type":"process","params":{"command":"sleep 1"}}"#
    };
    let json = format!(
        r#"{{"name":"r{i}","resources":[{resource}]{anti}{preferred},
            "priority":"{priority}","memory_mb":{memory_mb},"failover":{{"max_failovers":1000,"period_s":3600}}}}"#
    );
    serde_json::from_str(&json).expect("a valid sample role")
}
