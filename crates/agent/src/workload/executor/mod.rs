//! The executor: on every node, converges what runs locally to the committed decisions.
//!
//! It is level-triggered: whenever the committed state changes, the fence guard reports
//! something, or a short tick passes, it compares "what this node should run" (roles it owns
//! under their current generation, while it holds a lease and has caught up with the leader)
//! with "what runs", stops and starts to close the gap, and reports to the leader until the
//! committed state reflects the truth. Resources start in order and stop in reverse. A resource
//! that exits (or whose OCF monitor fails) is restarted in place up to its restart policy; past
//! that the role is stopped here and reported failed, and the manager moves it. Every operation
//! has a time limit; one that runs past it has its process group killed and counts as failed.
//! A stop that fails is escalated: kill what the resource left, ask its monitor; one that still
//! runs (or a process that survives SIGKILL) keeps its role here and is reported `StopFailed`,
//! and the leader fences this node before the role runs anywhere else.
//!
//! VM resources (QEMU through QMP) and their migrations are in [`vm`].

mod vm;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use halo_core::command::{Command, RoleReport};
use halo_core::migration::MigrationReport;
use halo_core::reconcile::{self, Held, Inputs, Plan};
use halo_core::role::{RoleRecord, RoleSpec};
use halo_core::state::ClusterState;
use tokio::sync::mpsc;

use crate::clock;
use crate::workload::Node;
use crate::workload::guard::{FromGuard, ToGuard};
use crate::workload::guard_link::GuardEvent;
use crate::workload::ocf;
use crate::workload::resource::{Driver, InFlight, LocalResource, Op};

const TICK: Duration = Duration::from_millis(200);
/// With nothing running and nothing to report, a change of the state or a guard event wakes
/// the executor anyway; the tick only catches a lease that came back.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// A process still there this long after SIGKILL is stuck in the kernel: only fencing helps.
const KILL_GRACE_MS: u64 = 10_000;
/// A report not yet reflected in the committed state is sent again after this long.
const REPORT_RETRY_MS: u64 = 500;

pub async fn run(node: Arc<dyn Node>, mut events: mpsc::UnboundedReceiver<GuardEvent>) {
    let (id, reader) = loop {
        if let Some(membership) = node.membership() {
            break membership;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Unbounded by design, bounded in fact: each carries one result per task this executor
    // started itself (an operation, a probe, a VM step), and at most one task runs per local
    // resource; a bounded channel could only make a finished task wait on the loop it reports to.
    let (report_done, mut reports) = mpsc::unbounded_channel();
    let (probe_done, mut probes) = mpsc::unbounded_channel();
    let (vm_done, mut vm_results) = mpsc::unbounded_channel();
    let mut executor = Executor {
        probe_done,
        vm_done,
        migration_reports: BTreeMap::new(),
        failed_incoming: BTreeSet::new(),
        node: node.clone(),
        id,
        reader: reader.clone(),
        roles: BTreeMap::new(),
        operations: BTreeMap::new(),
        failed: BTreeMap::new(),
        reports_sent: BTreeMap::new(),
        reports_in_flight: BTreeSet::new(),
        report_done,
        sequence: 0,
    };
    let mut reader = reader;
    loop {
        // Timeouts, monitors and report retries need the short tick; an idle node does not.
        let tick = if executor.roles.is_empty() && executor.reports_sent.is_empty() { IDLE_TICK } else { TICK };
        tokio::select! {
            _ = reader.changed() => {}
            event = events.recv() => match event {
                Some(event) => executor.on_guard(event),
                None => return,
            },
            done = reports.recv() => if let Some(role) = done { executor.reports_in_flight.remove(&role); },
            result = probes.recv() => if let Some(result) = result { executor.on_probe(result); },
            done = vm_results.recv() => if let Some(done) = done { executor.on_vm(done); },
            _ = tokio::time::sleep(tick) => {}
        }
        executor.converge();
    }
}

/// How long an operation that began at `since_ms` (monotonic) took until `now`.
fn took(since_ms: u64, now: u64) -> Duration {
    Duration::from_millis(now.saturating_sub(since_ms))
}

/// A finished probe run: role, resource index, the workload it probed, and the outcome.
type ProbeResult = (String, usize, String, Result<(), crate::workload::probe::ProbeError>);

struct Executor {
    probe_done: mpsc::UnboundedSender<ProbeResult>,
    vm_done: mpsc::UnboundedSender<vm::VmDone>,
    /// Migration reports not yet reflected in the committed state, by role.
    migration_reports: BTreeMap<String, MigrationReport>,
    /// Migrations (role, id) whose receiving QEMU failed here: not tried again.
    failed_incoming: BTreeSet<(String, u64)>,
    node: Arc<dyn Node>,
    /// This node, and its copy of the cluster database.
    id: u64,
    reader: halo_store::StateReader,
    /// Roles this node runs, starts or is stopping.
    roles: BTreeMap<String, LocalRole>,
    /// Guard operation id -> (role, resource index).
    operations: BTreeMap<String, (String, usize)>,
    /// Roles that failed here beyond their restart policy: generation and why.
    failed: BTreeMap<String, (u64, String)>,
    /// When each (role, outcome, generation) report last went out.
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
    /// A live migration's target (this migration id): waits for the guest, runs nothing.
    incoming: Option<u64>,
}

impl LocalRole {
    fn running(&self) -> bool {
        !self.stopping
            && self.resources.iter().all(|r| r.up.is_some() && r.in_flight.as_ref().is_none_or(|f| f.op == Op::Monitor))
    }

    fn busy(&self) -> bool {
        self.resources.iter().any(|r| r.in_flight.is_some())
    }
}

impl Executor {
    fn me(&self) -> u64 {
        self.id
    }

    /// What this node holds of each role, as the shared plan needs it.
    fn held(&self) -> BTreeMap<String, Held> {
        self.roles
            .iter()
            .map(|(name, local)| {
                let held = Held {
                    generation: local.generation,
                    running: local.running(),
                    stopping: local.stopping,
                    incoming: local.incoming,
                    stop_failed: local.resources.iter().find_map(|r| r.stop_failed.clone()),
                };
                (name.clone(), held)
            })
            .collect()
    }

    /// `rule` (`halo_core::reconcile`'s plan or its reports) on the inputs now: the committed
    /// state, the lease, what runs here.
    fn decide<R>(&self, state: &ClusterState, applied: u64, now: u64, rule: impl FnOnce(&Inputs) -> R) -> R {
        // Starting needs a lease and a database as new as the leader's when it granted it;
        // what runs may go on while the lease holds (the database catches up within a Raft
        // heartbeat; the fence guard ends everything with the lease anyway).
        let held = self.held();
        let inputs = Inputs {
            state,
            me: self.me(),
            lease_held: self.node.lease_remaining_ms(now) > 0,
            may_start: self.node.may_start_roles(applied, now),
            held: &held,
            failed: &self.failed,
        };
        rule(&inputs)
    }

    fn converge(&mut self) {
        // The applied index first: the state read after it is at least that new.
        let applied = self.reader.applied_index();
        let state = self.reader.state();
        let now = clock::monotonic_ms();
        let plan: Plan = self.decide(&state, applied, now, reconcile::reconcile);
        for name in &plan.stop {
            self.begin_stop(name);
        }
        self.migrations(&state, self.node.may_start_roles(applied, now));
        for name in &plan.start {
            if let Some(role) = state.roles.get(name)
                && !self.roles.contains_key(name)
            {
                self.begin_start(role);
            }
        }
        self.progress(now);
        self.vm_checks(now);
        // Reports reflect what progress just finished (a stop that completed is reported now).
        let reports = self.decide(&state, applied, now, reconcile::reports);
        self.report(&state, reports);
    }

    fn begin_start(&mut self, role: &RoleRecord) {
        let name = role.spec.name.clone();
        let mut resources = match self.local_resources(role) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(role = %name, "cannot start: {e}");
                self.failed.insert(name, (role.generation, e.to_string()));
                return;
            }
        };
        if crate::workload::resource::waits_for_kvm_probe(&resources) {
            return;
        }
        vm::restore_if_resumed(role, &mut resources);
        tracing::info!(role = %name, generation = role.generation, "starting role");
        self.roles.insert(
            name.clone(),
            LocalRole {
                generation: role.generation,
                spec: role.spec.clone(),
                resources,
                stopping: false,
                incoming: None,
            },
        );
        self.start_next(&name);
    }

    /// This node's handles on the role's resources, none of them running yet.
    fn local_resources(
        &self,
        role: &RoleRecord,
    ) -> Result<Vec<LocalResource>, crate::workload::resource::ResourceError> {
        let data = self.node.data().path("");
        role.spec.resources.iter().map(|r| LocalResource::new(r, &role.spec.name, &data)).collect()
    }

    /// Start the first resource that is not up, once those before it are up.
    fn start_next(&mut self, name: &str) {
        let Some(local) = self.roles.get(name) else { return };
        // A stopping agent restarts nothing in place either.
        if local.stopping || local.busy() || self.node.stopping() {
            return;
        }
        let Some(index) = local.resources.iter().position(|r| r.up.is_none()) else { return };
        let op = match local.resources[index].driver {
            Driver::Process | Driver::Vm(_) => Op::Spawn,
            Driver::Ocf(_) | Driver::Address(_) => Op::Start,
        };
        self.launch(name, index, op);
    }

    /// Hand one operation of one resource to the fence guard.
    fn launch(&mut self, name: &str, index: usize, op: Op) {
        let Some(local) = self.roles.get(name) else { return };
        self.sequence += 1;
        let resource = &local.resources[index];
        let id = format!("{}.{}.g{}.{}.{}", name, resource.spec.name, local.generation, op.as_str(), self.sequence);
        let logs = self.node.data().path("logs");
        let _ = std::fs::create_dir_all(&logs);
        let request = resource.request(op, &local.spec, local.generation, &self.node.config().name, &id, &logs);
        // An address's announcer may still be at it: no gratuitous ARP after its stop.
        let announcer = (op == Op::Stop && matches!(resource.driver, Driver::Address(_)))
            .then(|| format!("{name}.{}", resource.spec.name));
        self.operations.insert(id.clone(), (name.to_string(), index));
        if let Some(local) = self.roles.get_mut(name) {
            local.resources[index].in_flight =
                Some(InFlight { id, op, since_ms: clock::monotonic_ms(), killed: false });
        }
        if let Some(guard) = self.node.guard() {
            if let Some(instance) = announcer {
                guard.send(ToGuard::Sweep { key: "OCF_RESOURCE_INSTANCE".into(), value: instance });
            }
            guard.send(ToGuard::Spawn(request));
        }
    }

    fn signal(&self, id: &str, signal: i32) {
        if let Some(guard) = self.node.guard() {
            guard.send(ToGuard::Signal { id: id.to_string(), signal });
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

    /// Time limits, monitors, and stops in reverse order; forget a role once nothing is left.
    fn progress(&mut self, now: u64) {
        let mut signals = Vec::new();
        let mut launches = Vec::new();
        let mut powerdowns = Vec::new();
        let mut done = Vec::new();
        for (name, local) in &mut self.roles {
            for resource in &mut local.resources {
                let limit =
                    resource.in_flight.as_ref().and_then(|f| resource.timeout_ms(f.op).map(|t| (f.since_ms, t)));
                if let (Some(flight), Some((since, limit))) = (resource.in_flight.as_mut(), limit)
                    && !flight.killed
                    && now >= since + limit
                {
                    tracing::warn!(role = %name, resource = %resource.spec.name, "{} ran past its {limit} ms timeout; killing it", flight.op.as_str());
                    flight.killed = true;
                    signals.push((flight.id.clone(), signal::KILL));
                }
            }
            if !local.stopping {
                // A migration's waiting QEMU runs no guest to watch.
                if local.incoming.is_some() {
                    continue;
                }
                if local.running() && !local.busy() {
                    for (index, resource) in local.resources.iter_mut().enumerate() {
                        if resource.driver.runs_actions() && now >= resource.next_monitor_ms {
                            launches.push((name.clone(), index, Op::Monitor));
                        }
                    }
                }
                for (index, resource) in local.resources.iter_mut().enumerate() {
                    let (Some(probe), Some(workload)) = (&resource.probe, &resource.up) else { continue };
                    let vm_elsewhere = matches!(&resource.driver, Driver::Vm(vm) if vm.migrating.is_some() || vm.migrated_out.is_some());
                    if resource.probing || resource.expect_exit || now < resource.next_monitor_ms || vm_elsewhere {
                        continue;
                    }
                    resource.probing = true;
                    resource.next_monitor_ms = now + resource.spec.timeouts.monitor_interval();
                    let (probe, timeout) = (probe.clone(), Duration::from_millis(resource.spec.timeouts.monitor()));
                    let (done, role, workload) = (self.probe_done.clone(), name.clone(), workload.clone());
                    let (node, kind) = (self.node.clone(), resource.spec.kind.clone());
                    tokio::spawn(async move {
                        let started = std::time::Instant::now();
                        let result = probe.run(timeout).await;
                        node.metrics().action(&kind, "probe", result.is_ok(), started.elapsed());
                        let _ = done.send((role, index, workload, result));
                    });
                }
                continue;
            }
            let Some(index) = local.resources.iter().rposition(LocalResource::active) else {
                done.push(name.clone());
                continue;
            };
            let resource = &mut local.resources[index];
            if resource.in_flight.is_some() {
                continue;
            }
            match &resource.driver {
                Driver::Process | Driver::Vm(_) => {
                    let Some(workload) = resource.up.clone() else { continue };
                    let stop_limit = resource.spec.timeouts.stop();
                    match resource.term_sent_ms {
                        None => {
                            resource.term_sent_ms = Some(now);
                            match &resource.driver {
                                // A guest is asked to shut down; a QEMU that holds no running
                                // guest (a migration's) just quits.
                                Driver::Vm(vm) if vm.incoming.is_none() && vm.migrated_out.is_none() => {
                                    powerdowns.push((name.clone(), index, vm.files.qmp.clone(), workload));
                                }
                                _ => signals.push((workload, signal::TERM)),
                            }
                        }
                        Some(at) if now >= at + stop_limit && !resource.kill_sent => {
                            resource.kill_sent = true;
                            tracing::warn!(role = %name, "resource did not stop within {stop_limit} ms; killing it");
                            signals.push((workload, signal::KILL));
                        }
                        Some(at) if now >= at + stop_limit + KILL_GRACE_MS && resource.stop_failed.is_none() => {
                            tracing::error!(role = %name, "resource survived SIGKILL; the node must be fenced");
                            let what = &resource.spec.name;
                            resource.stop_failed = Some(format!("'{what}' did not exit after SIGKILL"));
                        }
                        _ => {}
                    }
                }
                Driver::Ocf(_) | Driver::Address(_) if resource.stop_failed.is_none() => {
                    launches.push((name.clone(), index, Op::Stop))
                }
                Driver::Ocf(_) | Driver::Address(_) => {}
            }
        }
        for (id, sig) in signals {
            self.signal(&id, sig);
        }
        for (name, index, qmp, workload) in powerdowns {
            self.powerdown(name, index, qmp, workload);
        }
        for (name, index, op) in launches {
            if op == Op::Monitor
                && let Some(r) = self.roles.get_mut(&name).map(|l| &mut l.resources[index])
            {
                r.next_monitor_ms = now + r.spec.timeouts.monitor_interval();
            }
            self.launch(&name, index, op);
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
                self.operations.clear();
            }
            GuardEvent::Message(FromGuard::Fenced { ids }) => {
                tracing::error!("lease ran out: the fence guard killed {}", ids.join(", "));
                // Nothing of any role survives a fence, OCF daemons included.
                self.roles.clear();
                self.operations.clear();
            }
            GuardEvent::Message(FromGuard::Spawned { id, pid }) => {
                let Some((name, index)) = self.operations.get(&id).cloned() else { return };
                let Some(resource) = self.roles.get_mut(&name).map(|l| &mut l.resources[index]) else { return };
                if resource.in_flight.as_ref().is_some_and(|f| f.id == id && f.op == Op::Spawn) {
                    if let Some(flight) = resource.in_flight.take() {
                        self.node.metrics().action(&resource.spec.kind, "spawn", true, took(flight.since_ms, now));
                    }
                    resource.up = Some(id.clone());
                    resource.term_sent_ms = None;
                    resource.kill_sent = false;
                    // The first probe waits one interval: the service needs time to listen; and
                    // until a probe passes, it may go on starting for its start timeout.
                    resource.next_monitor_ms = now + resource.spec.timeouts.monitor_interval();
                    resource.probe_grace_until_ms =
                        resource.probe.as_ref().map(|_| now + resource.spec.timeouts.start());
                    tracing::info!(role = %name, workload = %id, pid, "resource started");
                    if matches!(resource.driver, Driver::Vm(_)) {
                        self.vm_spawned(&name, index, now);
                    } else {
                        self.start_next(&name);
                    }
                }
            }
            GuardEvent::Message(FromGuard::SpawnFailed { id, error }) => {
                let Some((name, index)) = self.operations.remove(&id) else { return };
                let Some(local) = self.roles.get_mut(&name) else { return };
                let resource = &mut local.resources[index];
                if let Some(flight) = resource.in_flight.take() {
                    self.node.metrics().action(&resource.spec.kind, "spawn", false, took(flight.since_ms, now));
                }
                let detail = format!("resource '{}' could not start: {error}", resource.spec.name);
                tracing::warn!(role = %name, "{detail}");
                self.failed.insert(name.clone(), (local.generation, detail));
                self.begin_stop(&name);
            }
            GuardEvent::Message(FromGuard::Exited { id, code, signal, lingering }) => {
                let Some((name, index)) = self.operations.remove(&id) else { return };
                if lingering && let Some(resource) = self.roles.get_mut(&name).map(|l| &mut l.resources[index]) {
                    // SIGKILL did not end it: it cannot be stopped, only fenced.
                    tracing::error!(role = %name, workload = %id, "processes survived SIGKILL; the node must be fenced");
                    resource.stop_failed = Some(format!("processes of '{}' survived SIGKILL", resource.spec.name));
                    return;
                }
                self.exited(&name, index, &id, code, signal, now);
            }
        }
    }

    fn exited(&mut self, name: &str, index: usize, id: &str, code: Option<i32>, sig: Option<i32>, now: u64) {
        let Some(local) = self.roles.get_mut(name) else { return };
        let stopping = local.stopping;
        let resource = &mut local.resources[index];
        let rname = resource.spec.name.clone();
        // A process workload (or QEMU) ended.
        if resource.up.as_deref() == Some(id) {
            resource.up = None;
            if let Driver::Vm(_) = resource.driver {
                return self.qemu_exited(name, index, code, sig, now);
            }
            if std::mem::take(&mut resource.expect_exit) {
                // Killed for a failed probe, already counted: start it again.
                if !stopping {
                    self.start_next(name);
                }
                return;
            }
            if !stopping {
                let how = code.map_or_else(|| format!("signal {}", sig.unwrap_or(0)), |c| format!("exit code {c}"));
                self.resource_failed(name, index, format!("resource '{rname}' exited ({how})"), now);
            }
            return;
        }
        // An OCF action finished.
        let Some(flight) = resource.in_flight.take().filter(|f| f.id == id) else { return };
        let outcome = match (code, flight.killed) {
            (_, true) => {
                Err(format!("{} of '{rname}' did not finish within its timeout and was killed", flight.op.as_str()))
            }
            (Some(c), _) => Ok(c),
            (None, _) => Err(format!("{} of '{rname}' died of signal {}", flight.op.as_str(), sig.unwrap_or(0))),
        };
        let ok = matches!(outcome, Ok(ocf::OCF_SUCCESS));
        self.node.metrics().action(&resource.spec.kind, flight.op.as_str(), ok, took(flight.since_ms, now));
        let described = |c: i32| format!("{} of '{rname}' returned {c} ({})", flight.op.as_str(), ocf::describe(c));
        match (flight.op, outcome) {
            (Op::Start, Ok(ocf::OCF_SUCCESS)) => {
                resource.up = Some(format!("{name}.{rname}"));
                resource.next_monitor_ms = now + resource.spec.timeouts.monitor_interval();
                tracing::info!(role = %name, resource = %rname, "resource started");
                self.start_next(name);
            }
            (Op::Start, result) => {
                // A failed start may have left something half-started: stop cleans up.
                resource.up = Some(format!("{name}.{rname}"));
                let detail = result.err().unwrap_or_else(|| described(code.unwrap_or(-1)));
                tracing::warn!(role = %name, "{detail}");
                self.failed.insert(name.to_string(), (local.generation, detail));
                self.begin_stop(name);
            }
            (Op::Monitor, outcome) if resource.stop_escalated.is_some() => {
                let failed_stop = resource.stop_escalated.take().unwrap_or_default();
                if outcome == Ok(ocf::OCF_NOT_RUNNING) {
                    tracing::warn!(role = %name, resource = %rname, "stopped by killing its processes");
                    resource.up = None;
                    undone(&*self.node, name, &rname);
                    if !stopping {
                        self.start_next(name);
                    }
                } else {
                    tracing::error!(role = %name, resource = %rname, "still runs after its stop failed; the node must be fenced");
                    resource.stop_failed =
                        Some(format!("{failed_stop}, and it still runs after its processes were killed"));
                }
            }
            (Op::Monitor, Ok(ocf::OCF_SUCCESS)) => {}
            (Op::Monitor, Ok(ocf::OCF_NOT_RUNNING)) => {
                resource.up = None;
                if !stopping {
                    self.resource_failed(name, index, format!("monitor found '{rname}' not running"), now);
                }
            }
            (Op::Monitor, result) => {
                let detail = result.err().unwrap_or_else(|| described(code.unwrap_or(-1)));
                // Still (partly) up: stop it, then start it again if the policy allows.
                if !stopping {
                    self.resource_failed(name, index, detail, now);
                }
            }
            (Op::Stop, Ok(ocf::OCF_SUCCESS)) => {
                resource.up = None;
                undone(&*self.node, name, &rname);
                if !stopping {
                    self.start_next(name);
                }
            }
            (Op::Stop, result) => {
                // Escalate: kill whatever the resource left running, then ask the agent whether
                // it still runs. Only "not running" counts as stopped.
                let detail = result.err().unwrap_or_else(|| described(code.unwrap_or(-1)));
                tracing::error!(role = %name, "{detail}; killing what is left of it");
                resource.stop_escalated = Some(detail);
                let instance = format!("{name}.{rname}");
                if let Some(guard) = self.node.guard() {
                    guard.send(ToGuard::Sweep { key: "OCF_RESOURCE_INSTANCE".into(), value: instance });
                }
                self.launch(name, index, Op::Monitor);
            }
            // Not OCF actions: a VM's operations end in `on_vm`.
            (Op::Spawn | Op::Prepare | Op::Migrate | Op::Resume, _) => {}
        }
    }

    fn on_probe(&mut self, (name, index, workload, result): ProbeResult) {
        let Some(local) = self.roles.get_mut(&name) else { return };
        let stopping = local.stopping;
        let resource = &mut local.resources[index];
        resource.probing = false;
        let now = clock::monotonic_ms();
        // A stale answer (about an instance that is gone) or a role on its way out: ignore.
        let Err(failure) = result else {
            if resource.up.as_deref() == Some(workload.as_str()) {
                resource.probe_grace_until_ms = None;
            }
            return;
        };
        let detail = failure.to_string();
        if resource.probe_grace_until_ms.is_some_and(|until| now < until) {
            tracing::debug!(role = %name, "{detail}; still starting, not counted yet");
            return;
        }
        if !stopping && resource.up.as_deref() == Some(workload.as_str()) {
            self.resource_failed(&name, index, detail, now);
        }
    }

    /// A resource stopped working. Restart it in place if its policy allows, else give the role
    /// up on this node. One that is still (partly) up goes down first: an OCF resource through
    /// its stop, whose success starts it again; a process by SIGKILL, whose expected exit does.
    fn resource_failed(&mut self, name: &str, index: usize, detail: String, now: u64) {
        let Some(local) = self.roles.get_mut(name) else { return };
        let resource = &mut local.resources[index];
        let policy = resource.spec.restart;
        resource.restarts_ms.retain(|&t| now.saturating_sub(t) < policy.period_s * 1000);
        if resource.restarts_ms.len() >= policy.max_restarts as usize {
            let detail = format!("{detail}, after {} restart(s) within {} s", policy.max_restarts, policy.period_s);
            tracing::warn!(role = %name, "{detail}; giving it up on this node");
            self.failed.insert(name.to_string(), (local.generation, detail));
            self.begin_stop(name);
            return;
        }
        resource.restarts_ms.push(now);
        tracing::warn!(role = %name, "{detail}; restarting it in place");
        match (&resource.driver, resource.up.clone()) {
            (_, None) => self.start_next(name),
            (Driver::Ocf(_) | Driver::Address(_), Some(_)) => self.launch(name, index, Op::Stop),
            (Driver::Process | Driver::Vm(_), Some(workload)) => {
                resource.expect_exit = true;
                self.signal(&workload, signal::KILL);
            }
        }
    }

    /// Tell the leader whatever the committed state does not reflect yet (the plan's reports).
    fn report(&mut self, state: &halo_core::state::ClusterState, due: Vec<reconcile::Report>) {
        self.report_migrations(state);
        let me = self.me();
        let now = clock::monotonic_ms();
        self.reports_sent.retain(|_, at| now < *at + REPORT_RETRY_MS);
        for reconcile::Report { role: name, generation, outcome, detail } in due {
            // Throttle repeats of the same report only: a new fact goes out at once.
            let key = format!("{name}/{outcome:?}/{generation}");
            if self.reports_in_flight.contains(&name)
                || self.reports_sent.get(&key).is_some_and(|&at| now < at + REPORT_RETRY_MS)
            {
                continue;
            }
            self.reports_sent.insert(key, now);
            self.reports_in_flight.insert(name.clone());
            let report =
                RoleReport { role: name.clone(), node: me, generation, outcome, detail, now_ms: clock::wall_ms() };
            let node = self.node.clone();
            let done = self.report_done.clone();
            tokio::spawn(async move {
                if let Err(e) = node.report(Command::ReportRole(report)).await {
                    tracing::debug!(role = %name, "report not accepted: {}", e);
                }
                let _ = done.send(name);
            });
        }
    }
}

/// OCF resource `resource` of `role` stopped cleanly: the guard need not stop it at lease loss.
fn undone(node: &dyn Node, role: &str, resource: &str) {
    if let Some(guard) = node.guard() {
        guard.send(ToGuard::Undone { key: format!("{role}.{resource}") });
    }
}

/// Signal numbers as the guard protocol carries them.
mod signal {
    pub const TERM: i32 = 15;
    pub const KILL: i32 = 9;
}
