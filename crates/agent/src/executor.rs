//! The executor: on every node, converges what runs locally to the committed decisions.
//!
//! It is level-triggered: whenever the committed state changes, the fence guard reports
//! something, or a short tick passes, it compares "what this node should run" (roles it owns
//! under their current generation, while it holds a lease) with "what runs", stops and starts
//! to close the gap, and reports to the leader until the committed state reflects the truth.
//! A resource that exits is restarted in place up to its restart policy; past that the role is
//! stopped here and reported failed, and the manager moves it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use halo_core::command::{Command, RoleReport, RoleReportOutcome};
use halo_core::role::{Desired, RoleRecord, RoleSpec, RoleState};
use tokio::sync::mpsc;

use crate::clock;
use crate::guard::{FromGuard, SpawnRequest, ToGuard};
use crate::guard_link::GuardEvent;
use crate::runtime::{Agent, LeaderRequest, Member};

const TICK: Duration = Duration::from_millis(200);
/// A report not yet reflected in the committed state is sent again after this long.
const REPORT_RETRY_MS: u64 = 500;
/// How long a resource gets to exit after SIGTERM before SIGKILL.
const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

pub async fn run(agent: Arc<Agent>, mut events: mpsc::UnboundedReceiver<GuardEvent>) {
    let member = loop {
        if let Some(m) = agent.member() {
            break m.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (report_done, mut reports) = mpsc::unbounded_channel();
    let mut executor = Executor {
        agent: agent.clone(),
        member: member.clone(),
        roles: BTreeMap::new(),
        workloads: BTreeMap::new(),
        failed: BTreeMap::new(),
        reports_sent: BTreeMap::new(),
        reports_in_flight: BTreeSet::new(),
        report_done,
        sequence: 0,
    };
    let mut reader = member.reader.clone();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = reader.changed() => {}
            event = events.recv() => match event {
                Some(event) => executor.on_guard(event),
                None => return,
            },
            done = reports.recv() => if let Some(role) = done { executor.reports_in_flight.remove(&role); },
            _ = ticker.tick() => {}
        }
        executor.converge();
    }
}

struct Executor {
    agent: Arc<Agent>,
    member: Arc<Member>,
    /// Roles this node runs, starts or is stopping.
    roles: BTreeMap<String, LocalRole>,
    /// Workload id -> (role, resource index).
    workloads: BTreeMap<String, (String, usize)>,
    /// Roles that failed here beyond their restart policy: generation and why.
    failed: BTreeMap<String, (u64, String)>,
    reports_sent: BTreeMap<String, u64>,
    reports_in_flight: BTreeSet<String>,
    report_done: mpsc::UnboundedSender<String>,
    sequence: u64,
}

struct LocalRole {
    generation: u64,
    spec: RoleSpec,
    resources: Vec<LocalResource>,
    stopping: bool,
}

#[derive(Default)]
struct LocalResource {
    /// The running workload, if any.
    workload: Option<String>,
    /// A spawn was requested and not yet answered.
    spawning: bool,
    restarts_ms: Vec<u64>,
    term_sent_ms: Option<u64>,
    kill_sent: bool,
}

impl LocalResource {
    fn active(&self) -> bool {
        self.workload.is_some() || self.spawning
    }
}

impl LocalRole {
    fn running(&self) -> bool {
        !self.stopping && self.resources.iter().all(|r| r.workload.is_some())
    }
}

impl Executor {
    fn me(&self) -> u64 {
        self.member.id
    }

    /// Should this node run `role` under its current generation?
    fn wanted(&self, role: &RoleRecord, lease_ok: bool) -> bool {
        role.owner == Some(self.me())
            && role.spec.desired == Desired::Started
            && role.releasing.is_none()
            && role.state != RoleState::Failed
            && lease_ok
            && self.failed.get(&role.spec.name).is_none_or(|(g, _)| *g != role.generation)
    }

    fn converge(&mut self) {
        // The applied index first: the state read after it is at least that new.
        let applied = self.member.reader.applied_index();
        let state = self.member.reader.state();
        let now = clock::monotonic_ms();
        let lease_ok = self.agent.may_start_roles(applied, now);

        // Stop what should not run here (any more, or not under this generation).
        let names: Vec<String> = self.roles.keys().cloned().collect();
        for name in &names {
            let keep = state
                .roles
                .get(name)
                .is_some_and(|r| self.wanted(r, lease_ok) && self.roles[name].generation == r.generation);
            if !keep {
                self.begin_stop(name);
            }
        }
        // Start what should run and does not.
        for role in state.roles.values() {
            if self.wanted(role, lease_ok) && !self.roles.contains_key(&role.spec.name) {
                self.begin_start(role);
            }
        }
        self.progress(now);
        self.report(&state);
    }

    fn begin_start(&mut self, role: &RoleRecord) {
        tracing::info!(role = %role.spec.name, generation = role.generation, "starting role");
        let local = LocalRole {
            generation: role.generation,
            spec: role.spec.clone(),
            resources: role.spec.resources.iter().map(|_| LocalResource::default()).collect(),
            stopping: false,
        };
        self.roles.insert(role.spec.name.clone(), local);
        self.spawn_next(&role.spec.name);
    }

    /// Start the first resource that is not running yet, once those before it run.
    fn spawn_next(&mut self, name: &str) {
        let Some(local) = self.roles.get(name) else { return };
        if local.stopping || local.resources.iter().any(|r| r.spawning) {
            return;
        }
        let Some(index) = local.resources.iter().position(|r| r.workload.is_none()) else { return };
        self.sequence += 1;
        let resource = &local.spec.resources[index];
        let id = format!("{}.{}.g{}.{}", name, resource.name, local.generation, self.sequence);
        let request = self.spawn_request(&local.spec, index, local.generation, &id);
        self.workloads.insert(id, (name.to_string(), index));
        if let Some(local) = self.roles.get_mut(name) {
            local.resources[index].spawning = true;
        }
        if let Some(guard) = &self.agent.guard {
            guard.send(ToGuard::Spawn(request));
        }
    }

    fn spawn_request(&self, spec: &RoleSpec, index: usize, generation: u64, id: &str) -> SpawnRequest {
        let resource = &spec.resources[index];
        let mut env: Vec<(String, String)> = resource
            .params
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("env.").map(|name| (name.to_string(), v.clone())))
            .collect();
        env.push(("HALO_NODE".into(), self.agent.config.name.clone()));
        env.push(("HALO_ROLE".into(), spec.name.clone()));
        env.push(("HALO_RESOURCE".into(), resource.name.clone()));
        env.push(("HALO_GENERATION".into(), generation.to_string()));
        let logs = self.agent.data.path("logs");
        let _ = std::fs::create_dir_all(&logs);
        SpawnRequest {
            id: id.to_string(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), resource.params.get("command").cloned().unwrap_or_default()],
            cwd: resource.params.get("cwd").cloned(),
            env,
            log: Some(logs.join(format!("{}.{}.log", spec.name, resource.name)).display().to_string()),
        }
    }

    fn begin_stop(&mut self, name: &str) {
        if let Some(local) = self.roles.get_mut(name)
            && !local.stopping
        {
            tracing::info!(role = %name, generation = local.generation, "stopping role");
            local.stopping = true;
        }
    }

    /// Drive stops: SIGTERM the last active resource, SIGKILL it after its stop timeout, and
    /// forget the role once nothing of it is left.
    fn progress(&mut self, now: u64) {
        let mut done = Vec::new();
        for (name, local) in &mut self.roles {
            if !local.stopping {
                continue;
            }
            let Some(index) = local.resources.iter().rposition(LocalResource::active) else {
                done.push(name.clone());
                continue;
            };
            let timeout = local.spec.resources[index]
                .params
                .get("stop_timeout_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_STOP_TIMEOUT_MS);
            let resource = &mut local.resources[index];
            let Some(workload) = resource.workload.clone() else { continue };
            let signal = match resource.term_sent_ms {
                None => {
                    resource.term_sent_ms = Some(now);
                    Some(libc_signal::TERM)
                }
                Some(at) if now >= at + timeout && !resource.kill_sent => {
                    resource.kill_sent = true;
                    tracing::warn!(role = %name, "resource did not stop within {timeout} ms; killing it");
                    Some(libc_signal::KILL)
                }
                _ => None,
            };
            if let (Some(signal), Some(guard)) = (signal, &self.agent.guard) {
                guard.send(ToGuard::Signal { id: workload, signal });
            }
        }
        for name in done {
            tracing::info!(role = %name, "role stopped");
            self.roles.remove(&name);
        }
    }

    fn on_guard(&mut self, event: GuardEvent) {
        let now = clock::monotonic_ms();
        match event {
            GuardEvent::Restarted => {
                // The new guard killed everything the old one ran.
                self.roles.clear();
                self.workloads.clear();
            }
            GuardEvent::Message(FromGuard::Fenced { ids }) => {
                tracing::error!("lease ran out: the fence guard killed {}", ids.join(", "));
                for id in ids {
                    self.workload_gone(&id, None, now);
                }
            }
            GuardEvent::Message(FromGuard::Spawned { id, pid }) => {
                let Some((name, index)) = self.workloads.get(&id).cloned() else { return };
                if let Some(local) = self.roles.get_mut(&name) {
                    let resource = &mut local.resources[index];
                    resource.spawning = false;
                    resource.workload = Some(id.clone());
                    resource.term_sent_ms = None;
                    resource.kill_sent = false;
                    tracing::info!(role = %name, workload = %id, pid, "resource started");
                }
                self.spawn_next(&name);
            }
            GuardEvent::Message(FromGuard::SpawnFailed { id, error }) => {
                let Some((name, index)) = self.workloads.remove(&id) else { return };
                if let Some(local) = self.roles.get_mut(&name) {
                    local.resources[index].spawning = false;
                    let detail = format!("resource '{}' could not start: {error}", local.spec.resources[index].name);
                    tracing::warn!(role = %name, "{detail}");
                    self.failed.insert(name.clone(), (local.generation, detail));
                    self.begin_stop(&name);
                }
            }
            GuardEvent::Message(FromGuard::Exited { id, code, signal }) => {
                let how = match (code, signal) {
                    (Some(c), _) => format!("exit code {c}"),
                    (_, Some(s)) => format!("signal {s}"),
                    _ => "unknown status".into(),
                };
                self.workload_gone(&id, Some(how), now);
            }
        }
    }

    /// A workload is gone. If its role should still run, restart it in place or give up on
    /// this node per the resource's restart policy.
    fn workload_gone(&mut self, id: &str, how: Option<String>, now: u64) {
        let Some((name, index)) = self.workloads.remove(id) else { return };
        let Some(local) = self.roles.get_mut(&name) else { return };
        let resource = &mut local.resources[index];
        if resource.workload.as_deref() != Some(id) {
            return;
        }
        resource.workload = None;
        let Some(how) = how else {
            // Fenced: nothing of the role survives; no restart without a lease.
            self.roles.remove(&name);
            return;
        };
        if local.stopping {
            return;
        }
        let policy = local.spec.resources[index].restart;
        let resource_name = local.spec.resources[index].name.clone();
        resource.restarts_ms.retain(|&t| now.saturating_sub(t) < policy.period_s * 1000);
        if resource.restarts_ms.len() < policy.max_restarts as usize {
            resource.restarts_ms.push(now);
            tracing::warn!(role = %name, resource = %resource_name, "resource exited ({how}); restarting it in place");
            self.spawn_next(&name);
        } else {
            let detail = format!(
                "resource '{resource_name}' exited ({how}) after {} restart(s) within {} s",
                policy.max_restarts, policy.period_s
            );
            tracing::warn!(role = %name, "{detail}; giving it up on this node");
            self.failed.insert(name.clone(), (local.generation, detail));
            self.begin_stop(&name);
        }
    }

    /// Tell the leader whatever the committed state does not reflect yet.
    fn report(&mut self, state: &halo_core::state::ClusterState) {
        let me = self.me();
        let mut due = Vec::new();
        for role in state.roles.values() {
            let name = &role.spec.name;
            let local = self.roles.get(name);
            let current = role.owner == Some(me);
            if current
                && role.state != RoleState::Online
                && local.is_some_and(|l| l.running() && l.generation == role.generation)
            {
                due.push((role, RoleReportOutcome::Online, String::new()));
            } else if role.releasing == Some(me) && local.is_none() {
                due.push((role, RoleReportOutcome::Stopped, String::new()));
            } else if current
                && local.is_none()
                && !role.failed_on.contains(&me)
                && let Some((generation, detail)) = self.failed.get(name)
                && *generation == role.generation
            {
                due.push((role, RoleReportOutcome::Failed, detail.clone()));
            }
        }
        let now = clock::monotonic_ms();
        for (role, outcome, detail) in due {
            let name = role.spec.name.clone();
            if self.reports_in_flight.contains(&name)
                || self.reports_sent.get(&name).is_some_and(|&at| now < at + REPORT_RETRY_MS)
            {
                continue;
            }
            self.reports_sent.insert(name.clone(), now);
            self.reports_in_flight.insert(name.clone());
            let report = RoleReport {
                role: name.clone(),
                node: me,
                generation: role.generation,
                outcome,
                detail,
                now_ms: clock::wall_ms(),
            };
            let agent = self.agent.clone();
            let done = self.report_done.clone();
            tokio::spawn(async move {
                if let Err(e) = agent.on_leader(LeaderRequest::Write(Command::ReportRole(report))).await {
                    tracing::debug!(role = %name, "report not accepted: {}", e.message);
                }
                let _ = done.send(name);
            });
        }
    }
}

/// Signal numbers as the guard protocol carries them.
mod libc_signal {
    pub const TERM: i32 = 15;
    pub const KILL: i32 = 9;
}
