//! The executor's VM half. QEMU itself is a workload of the fence guard; what halo asks of it
//! (is the guest up, healthy, powered down, migrated, resumed) runs as tasks over QMP whose
//! results come back as [`VmDone`]. Both ends of a migration are here:
//! - the target of a live migration starts a QEMU that waits, paused, for the guest, and says
//!   where it listens; it resumes the guest only once the cluster handed it the role;
//! - the source migrates (or saves, for a quick migration) when the cluster says so, reports
//!   how it ended, and resumes its own paused copy only if the cluster dropped the migration
//!   without handing the role over.

use std::future::Future;
use std::time::Duration;

use halo_core::execution;
use halo_core::migration::{MigrationEvent, MigrationReport, MoveMode};
use halo_core::role::RoleRecord;
use halo_core::state::ClusterState;

use super::{Executor, LocalRole, signal};
use crate::clock;
use crate::workload::resource::{Driver, InFlight, LocalResource, Op};
use crate::workload::vm::error::VmError;
use crate::workload::vm::ops::{self, Transfer};
use crate::workload::vm::tls::{End, MigrationTls};
use crate::workload::vm::{Boot, SerialWatch};

/// A finished QMP operation of one VM resource.
pub(super) struct VmDone {
    role: String,
    index: usize,
    /// The operation's id (a power-down's: the QEMU workload's).
    flight: String,
    outcome: Outcome,
}

enum Outcome {
    Booted(Result<(), VmError>),
    Healthy(Result<(), VmError>),
    Prepared(Result<String, VmError>),
    Migrated(Result<Transfer, VmError>),
    Resumed(Result<(), VmError>),
    PoweredDown(Result<(), VmError>),
}

impl Outcome {
    fn ok(&self) -> bool {
        match self {
            Outcome::Booted(r) | Outcome::Healthy(r) | Outcome::Resumed(r) | Outcome::PoweredDown(r) => r.is_ok(),
            Outcome::Prepared(r) => r.is_ok(),
            Outcome::Migrated(r) => r.is_ok(),
        }
    }
}

/// A quick migration's target restores the saved guest instead of booting it.
pub(super) fn restore_if_resumed(role: &RoleRecord, resources: &mut [LocalResource]) {
    let Some(file) = role.resume.as_ref().filter(|r| r.mode == MoveMode::Quick).and_then(|r| r.state_file.clone())
    else {
        return;
    };
    if let Some(Driver::Vm(vm)) = resources.first_mut().map(|r| &mut r.driver) {
        vm.boot = Boot::Restore(file);
    }
}

impl Executor {
    /// Runs one QMP operation of a VM resource as a task; `on_vm` gets its outcome.
    fn vm_task(&mut self, name: &str, index: usize, op: Op, task: impl Future<Output = Outcome> + Send + 'static) {
        self.sequence += 1;
        let id = format!("{name}.{index}.{}.{}", op.as_str(), self.sequence);
        let Some(resource) = self.roles.get_mut(name).map(|l| &mut l.resources[index]) else { return };
        resource.in_flight = Some(InFlight { id: id.clone(), op, since_ms: clock::monotonic_ms(), killed: false });
        let (done, role) = (self.vm_done.clone(), name.to_string());
        tokio::spawn(async move {
            let outcome = task.await;
            let _ = done.send(VmDone { role, index, flight: id, outcome });
        });
    }

    /// QEMU started: wait for it to run the guest, or, as a migration's target, to listen.
    pub(super) fn vm_spawned(&mut self, name: &str, index: usize, now: u64) {
        let host = self.migration_host();
        let Some(local) = self.roles.get_mut(name) else { return };
        let incoming = local.incoming.is_some();
        let resource = &mut local.resources[index];
        let limit = Duration::from_millis(resource.spec.timeouts.start());
        let Driver::Vm(vm) = &mut resource.driver else { return };
        vm.last_beat_ms = now;
        vm.heartbeat = vm.spec.heartbeat.as_ref().map(|h| SerialWatch::from_end(&vm.files.serial, &h.pattern));
        let qmp = vm.files.qmp.clone();
        if let (true, Boot::Incoming { from }) = (incoming, &vm.boot) {
            let tls = migration_tls(&*self.node, &vm.files, End::Target { source: from.clone() });
            let task = async move {
                Outcome::Prepared(match tls {
                    Ok(tls) => ops::prepare_incoming(&qmp, &host, &tls, limit).await,
                    Err(e) => Err(e),
                })
            };
            self.vm_task(name, index, Op::Prepare, task);
        } else if let Boot::Restore(file) = &vm.boot {
            let (socket, file) = (vm.files.state_socket.clone(), std::path::PathBuf::from(file));
            let task = async move { Outcome::Booted(ops::restore(&qmp, &socket, &file, limit).await) };
            self.vm_task(name, index, Op::Start, task);
        } else {
            let task = async move { Outcome::Booted(ops::wait_for_status(&qmp, "running", limit).await) };
            self.vm_task(name, index, Op::Start, task);
        }
    }

    /// The host part of this node's first network address: where migrations come in.
    fn migration_host(&self) -> String {
        let first = self.node.config().networks.first().map(String::as_str).unwrap_or("127.0.0.1:0");
        first.rsplit_once(':').map_or(first, |(host, _)| host).to_string()
    }

    /// Press the power button; a QEMU that cannot be asked is killed at once.
    pub(super) fn powerdown(&mut self, name: String, index: usize, qmp: std::path::PathBuf, workload: String) {
        let done = self.vm_done.clone();
        tokio::spawn(async move {
            let outcome = Outcome::PoweredDown(ops::powerdown(&qmp).await);
            let _ = done.send(VmDone { role: name, index, flight: workload, outcome });
        });
    }

    /// QEMU exited. A migration's waiting QEMU failing ends that migration; a guest that went
    /// away on its own is a failure, restarted per its policy.
    pub(super) fn qemu_exited(&mut self, name: &str, index: usize, code: Option<i32>, sig: Option<i32>, now: u64) {
        let log =
            self.node.data().path("logs").join(format!("{name}.{}.log", self.roles[name].resources[index].spec.name));
        let Some(local) = self.roles.get_mut(name) else { return };
        let (stopping, incoming, generation) = (local.stopping, local.incoming, local.generation);
        let resource = &mut local.resources[index];
        if resource.in_flight.as_ref().is_some_and(|f| f.op != Op::Spawn) {
            resource.in_flight = None; // its QMP operation ends with it
        }
        let Driver::Vm(vm) = &mut resource.driver else { return };
        vm.boot = Boot::Fresh;
        let migrating = vm.migrating.take();
        vm.cancel = None;
        let migrated_out = vm.migrated_out.is_some();
        let expected = std::mem::take(&mut resource.expect_exit);
        let how = exit_text(code, sig, &log);
        if let Some(id) = migrating {
            // Its migration ends with it; the guest is lost here and restarts per its policy.
            let detail = format!("QEMU exited at the source during the migration ({how})");
            self.queue_report(name, generation, id, MigrationEvent::Failed { detail });
        }
        if let Some(id) = incoming {
            if !stopping {
                let detail = format!("the receiving QEMU on {} exited ({how})", self.node.config().name);
                self.queue_report(name, generation, id, MigrationEvent::Failed { detail });
                self.failed_incoming.insert((name.to_string(), id));
                self.begin_stop(name);
            }
            return;
        }
        if stopping || migrated_out {
            return;
        }
        if expected {
            self.start_next(name);
            return;
        }
        self.resource_failed(name, index, format!("QEMU exited ({how})"), now);
    }

    pub(super) fn on_vm(&mut self, done: VmDone) {
        let now = clock::monotonic_ms();
        let me = self.node.config().name.clone();
        let VmDone { role: name, index, flight, outcome } = done;
        let Some(local) = self.roles.get_mut(&name) else { return };
        let (stopping, generation, incoming) = (local.stopping, local.generation, local.incoming);
        let Some(resource) = local.resources.get_mut(index) else { return };
        if let Outcome::PoweredDown(result) = outcome {
            if let Err(e) = result
                && resource.up.as_deref() == Some(flight.as_str())
                && !resource.kill_sent
            {
                tracing::warn!(role = %name, "cannot ask the guest to shut down ({e}); stopping QEMU hard");
                resource.kill_sent = true;
                self.signal(&flight, signal::KILL);
            }
            return;
        }
        if resource.in_flight.as_ref().is_none_or(|f| f.id != flight) {
            return; // about an operation that no longer matters
        }
        if let Some(op) = resource.in_flight.take() {
            self.node.metrics().action(
                &halo_core::resource_kind::ResourceKind::Vm,
                op.op.as_str(),
                outcome.ok(),
                super::took(op.since_ms, now),
            );
        }
        let rname = resource.spec.name.clone();
        let Driver::Vm(vm) = &mut resource.driver else { return };
        match outcome {
            Outcome::Booted(Ok(())) => {
                if let Boot::Restore(file) = std::mem::replace(&mut vm.boot, Boot::Fresh)
                    && let Err(e) = crate::safe_fs::remove_in_own_dir(std::path::Path::new(&file))
                {
                    tracing::warn!(role = %name, "could not remove the restored state {file}: {e}");
                }
                tracing::info!(role = %name, resource = %rname, "guest running");
                self.start_next(&name);
            }
            Outcome::Booted(Err(e)) => {
                let restoring = matches!(std::mem::replace(&mut vm.boot, Boot::Fresh), Boot::Restore(_));
                let what = if restoring { "could not restore the migrated guest" } else { "did not start" };
                if !stopping {
                    self.resource_failed(&name, index, format!("VM '{rname}' {what}: {e}"), now);
                }
            }
            Outcome::Healthy(Ok(())) => {}
            Outcome::Healthy(Err(e)) => {
                if !stopping && incoming.is_none() && vm.migrated_out.is_none() {
                    self.resource_failed(&name, index, format!("VM '{rname}': {e}"), now);
                }
            }
            Outcome::Prepared(Ok(uri)) => {
                if let Some(id) = incoming {
                    tracing::info!(role = %name, %uri, "ready to receive the guest");
                    self.queue_report(&name, generation, id, MigrationEvent::Ready { uri });
                }
            }
            Outcome::Prepared(Err(e)) => {
                if let Some(id) = incoming {
                    let detail = format!("the target {me} could not get ready: {e}");
                    self.queue_report(&name, generation, id, MigrationEvent::Failed { detail });
                    self.failed_incoming.insert((name.clone(), id));
                    self.begin_stop(&name);
                }
            }
            Outcome::Migrated(result) => {
                let Some(id) = vm.migrating.take() else { return };
                vm.cancel = None;
                let state_file = match &vm.boot {
                    Boot::Restore(file) => Some(file.clone()),
                    _ => None,
                };
                vm.boot = Boot::Fresh;
                let event = match result {
                    Ok(t) => {
                        // Paused here for good: the guest is the target's now.
                        vm.migrated_out = Some(id);
                        tracing::info!(role = %name, total_ms = t.total_ms, downtime_ms = t.downtime_ms, "guest migrated");
                        MigrationEvent::Completed {
                            qemu_total_ms: t.total_ms,
                            qemu_downtime_ms: t.downtime_ms,
                            paused_at_ms: t.paused_at_ms,
                            state_file,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(role = %name, "migration failed, the guest runs on here: {e}");
                        resource.next_monitor_ms = now;
                        MigrationEvent::Failed { detail: e.to_string() }
                    }
                };
                self.queue_report(&name, generation, id, event);
            }
            Outcome::Resumed(Ok(())) => {
                vm.migrated_out = None;
                vm.last_beat_ms = now;
                vm.heartbeat = vm.spec.heartbeat.as_ref().map(|h| SerialWatch::from_end(&vm.files.serial, &h.pattern));
                resource.next_monitor_ms = now + resource.spec.timeouts.monitor_interval();
                tracing::info!(role = %name, resource = %rname, "guest resumed here");
                self.start_next(&name);
            }
            Outcome::Resumed(Err(e)) => {
                if !stopping {
                    self.resource_failed(&name, index, format!("the migrated guest could not be resumed: {e}"), now);
                }
            }
            Outcome::PoweredDown(_) => {}
        }
    }

    /// Health (QMP) and heartbeat (serial console) of the running guests.
    pub(super) fn vm_checks(&mut self, now: u64) {
        let mut failures = Vec::new();
        let mut checks = Vec::new();
        for (name, local) in &mut self.roles {
            if local.stopping || local.incoming.is_some() || !local.running() {
                continue;
            }
            let busy = local.busy();
            for (index, resource) in local.resources.iter_mut().enumerate() {
                let Driver::Vm(vm) = &mut resource.driver else { continue };
                if resource.up.is_none() || vm.migrated_out.is_some() || vm.migrating.is_some() {
                    continue;
                }
                if let (Some(hb), Some(watch)) = (&vm.spec.heartbeat, &mut vm.heartbeat) {
                    if watch.beat(&vm.files.serial) {
                        vm.last_beat_ms = now;
                    } else if now.saturating_sub(vm.last_beat_ms) > hb.timeout_s * 1000 {
                        vm.last_beat_ms = now;
                        failures.push((
                            name.clone(),
                            index,
                            format!("no heartbeat from the guest for {} s", hb.timeout_s),
                        ));
                        continue;
                    }
                }
                if !busy && now >= resource.next_monitor_ms {
                    resource.next_monitor_ms = now + resource.spec.timeouts.monitor_interval();
                    let limit = Duration::from_millis(resource.spec.timeouts.monitor());
                    checks.push((name.clone(), index, vm.files.qmp.clone(), limit));
                }
            }
        }
        for (name, index, qmp, limit) in checks {
            self.vm_task(&name, index, Op::Monitor, async move { Outcome::Healthy(ops::health(&qmp, limit).await) });
        }
        for (name, index, detail) in failures {
            self.resource_failed(&name, index, detail, now);
        }
    }

    /// Both ends of the migrations the committed state asks for.
    pub(super) fn migrations(&mut self, state: &ClusterState, may_start: bool) {
        let me = self.me();
        for role in state.roles.values() {
            let name = &role.spec.name;
            let Some(m) = &role.migration else { continue };
            if self.roles.contains_key(name) {
                continue;
            }
            if role.owner == Some(me) {
                // Source: it owns a role under migration but no longer holds any copy (its
                // QEMU died, or a lease ran out), with no outcome to report: it cannot happen.
                if self.migration_reports.get(name).is_none_or(|r| r.id != m.id) {
                    let detail = format!("the source {} no longer holds the guest", self.node.config().name);
                    self.queue_report(name, role.generation, m.id, MigrationEvent::Failed { detail });
                }
            } else if may_start
                && m.uri.is_none()
                && execution::receives(role, me, m.id)
                && !self.failed_incoming.contains(&(name.clone(), m.id))
            {
                // Target: get a QEMU waiting for the guest, from the node that has it.
                let source = role.owner.and_then(|o| state.nodes.get(&o)).map(|n| n.name.clone());
                self.begin_incoming(role, m.id, source);
            }
        }
        let names: Vec<String> = self.roles.keys().cloned().collect();
        for name in names {
            let Some(role) = state.roles.get(&name) else { continue };
            let Some(local) = self.roles.get_mut(&name) else { continue };
            let current = role.migration.as_ref().map(|m| m.id);
            // Source: a migration the cluster no longer wants is called off, busy or not.
            if let Some(Driver::Vm(vm)) = local.resources.first_mut().map(|r| &mut r.driver)
                && let Some(id) = vm.migrating
                && current != Some(id)
                && let Some(cancel) = vm.cancel.take()
            {
                tracing::info!(role = %name, "migration {id} called off by the cluster");
                let _ = cancel.send(());
            }
            if local.stopping || local.busy() {
                continue;
            }
            // Target: the role is ours now; resume the guest that came in. Like any start, only
            // with a lease and a database as new as the leader's.
            if let Some(id) = local.incoming {
                if may_start && execution::resumes_from(role, me, id) {
                    local.incoming = None;
                    local.generation = role.generation;
                    if let Some(Driver::Vm(vm)) = local.resources.first_mut().map(|r| &mut r.driver) {
                        vm.incoming = None;
                    }
                    self.resume_guest(&name);
                }
                continue;
            }
            // Source.
            if role.owner != Some(me) || role.generation != local.generation {
                continue;
            }
            let Some(resource) = local.resources.first_mut() else { continue };
            let up = resource.up.is_some();
            let Driver::Vm(vm) = &mut resource.driver else { continue };
            if let Some(id) = vm.migrated_out
                && current != Some(id)
                && may_start
            {
                // The cluster dropped a migration that completed here without handing the
                // role over: the target never ran the guest, so this copy carries on.
                tracing::warn!(role = %name, "migration {id} was dropped after the guest left; resuming it here");
                self.resume_guest(&name);
                continue;
            }
            let Some(m) = &role.migration else { continue };
            if !up || vm.migrating.is_some() || vm.migrated_out.is_some() {
                continue;
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let qmp = vm.files.qmp.clone();
            let limit = Duration::from_secs(vm.spec.migration_timeout_s);
            match (m.mode, &m.uri, state.settings.shared_storage.first()) {
                (MoveMode::Live, Some(uri), _) => {
                    vm.migrating = Some(m.id);
                    vm.cancel = Some(tx);
                    // The database refuses other URIs; one from an older halo is checked here.
                    // The stream goes over TLS to the target node's certificate, nowhere else.
                    let checked = state
                        .nodes
                        .get(&m.to)
                        .ok_or_else(|| VmError::BadTarget("the target node is no longer in the cluster".into()))
                        .and_then(|target| {
                            halo_core::migration::check_target_uri(uri, target).map_err(VmError::BadTarget)?;
                            migration_tls(&*self.node, &vm.files, End::Source { target: target.name.clone() })
                        });
                    let (uri, bandwidth) = (uri.clone(), vm.spec.migration_bandwidth_mb);
                    tracing::info!(role = %name, %uri, "migrating the guest");
                    self.vm_task(&name, 0, Op::Migrate, async move {
                        match checked {
                            Ok(tls) => Outcome::Migrated(ops::migrate(&qmp, &uri, &tls, bandwidth, limit, rx).await),
                            Err(e) => Outcome::Migrated(Err(e)),
                        }
                    });
                }
                (MoveMode::Quick, _, Some(shared)) => {
                    let shared = std::path::PathBuf::from(shared);
                    let file_name = format!("{name}.{}.state", m.id);
                    let file = shared.join(halo_core::migration::STATE_DIR).join(&file_name);
                    vm.migrating = Some(m.id);
                    vm.cancel = Some(tx);
                    // Carried to the report: the target restores from it.
                    vm.boot = Boot::Restore(file.display().to_string());
                    let socket = vm.files.state_socket.clone();
                    tracing::info!(role = %name, file = %file.display(), "saving the guest");
                    self.vm_task(&name, 0, Op::Migrate, async move {
                        Outcome::Migrated(ops::save(&qmp, &socket, shared, &file_name, limit, rx).await)
                    });
                }
                _ => {}
            }
        }
    }

    fn resume_guest(&mut self, name: &str) {
        let Some(resource) = self.roles.get(name).and_then(|l| l.resources.first()) else { return };
        let Driver::Vm(vm) = &resource.driver else { return };
        let (qmp, limit) = (vm.files.qmp.clone(), Duration::from_millis(resource.spec.timeouts.start()));
        self.vm_task(name, 0, Op::Resume, async move { Outcome::Resumed(ops::resume(&qmp, limit).await) });
    }

    /// Start a QEMU that waits, paused, for the guest of live migration `id` from `source`.
    fn begin_incoming(&mut self, role: &RoleRecord, id: u64, source: Option<String>) {
        let name = role.spec.name.clone();
        let resources = source.ok_or_else(|| "the role has no owner to receive it from".to_string()).and_then(|from| {
            let mut resources = self.local_resources(role).map_err(|e| e.to_string())?;
            for resource in &mut resources {
                if let Driver::Vm(vm) = &mut resource.driver {
                    vm.incoming = Some(id);
                    vm.boot = Boot::Incoming { from: from.clone() };
                }
            }
            Ok(resources)
        });
        let resources = match resources {
            Ok(r) => r,
            Err(e) => {
                let detail = format!("the target {} cannot run it: {e}", self.node.config().name);
                self.queue_report(&name, role.generation, id, MigrationEvent::Failed { detail });
                self.failed_incoming.insert((name, id));
                return;
            }
        };
        if crate::workload::resource::waits_for_kvm_probe(&resources) {
            return;
        }
        tracing::info!(role = %name, migration = id, "starting a QEMU to receive the guest");
        let local = LocalRole {
            generation: role.generation,
            spec: role.spec.clone(),
            resources,
            stopping: false,
            incoming: Some(id),
        };
        self.roles.insert(name.clone(), local);
        self.start_next(&name);
    }

    fn queue_report(&mut self, role: &str, generation: u64, id: u64, event: MigrationEvent) {
        let report = MigrationReport {
            role: role.to_string(),
            node: self.me(),
            generation,
            id,
            event,
            now_ms: clock::wall_ms(),
        };
        self.migration_reports.insert(role.to_string(), report);
    }

    /// Send the migration reports the committed state does not reflect yet.
    pub(super) fn report_migrations(&mut self, state: &ClusterState) {
        self.migration_reports.retain(|role, report| {
            state.roles.get(role).and_then(|r| r.migration.as_ref()).is_some_and(|m| {
                m.id == report.id && !(matches!(report.event, MigrationEvent::Ready { .. }) && m.uri.is_some())
            })
        });
        let now = clock::monotonic_ms();
        let due: Vec<MigrationReport> = self
            .migration_reports
            .values()
            .filter(|r| {
                !self.reports_in_flight.contains(&r.role)
                    && self.reports_sent.get(&migration_key(r)).is_none_or(|&at| now >= at + super::REPORT_RETRY_MS)
            })
            .cloned()
            .collect();
        for report in due {
            self.reports_sent.insert(migration_key(&report), now);
            self.reports_in_flight.insert(report.role.clone());
            let (node, done, name) = (self.node.clone(), self.report_done.clone(), report.role.clone());
            tokio::spawn(async move {
                let command = halo_core::command::Command::ReportMigration(report);
                if let Err(e) = node.report(command).await {
                    tracing::debug!(role = %name, "migration report not accepted: {}", e);
                }
                let _ = done.send(name);
            });
        }
    }
}

/// The credentials this node's QEMU uses at `end` of a live migration.
fn migration_tls(
    node: &dyn crate::workload::Node,
    files: &crate::workload::vm::VmFiles,
    end: End,
) -> Result<MigrationTls, VmError> {
    let tls = node.node_tls().ok_or(VmError::NoCertificate)?;
    Ok(MigrationTls { dir: files.tls_dir(), node: tls, end })
}

fn migration_key(r: &MigrationReport) -> String {
    let kind = match r.event {
        MigrationEvent::Ready { .. } => "ready",
        MigrationEvent::Completed { .. } => "completed",
        MigrationEvent::Failed { .. } => "failed",
    };
    format!("{}/migration/{}/{kind}", r.role, r.id)
}

/// How QEMU ended, with the last thing it said (e.g. why it refused to start).
fn exit_text(code: Option<i32>, sig: Option<i32>, log: &std::path::Path) -> String {
    let how = code.map_or_else(|| format!("signal {}", sig.unwrap_or(0)), |c| format!("exit code {c}"));
    let said = std::fs::read_to_string(log)
        .ok()
        .and_then(|t| t.lines().rev().find(|l| l.contains("qemu-system")).map(|l| l.trim().to_string()));
    match said {
        Some(line) => format!("{how}: {line}"),
        None => how,
    }
}
