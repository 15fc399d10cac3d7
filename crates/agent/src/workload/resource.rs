//! One resource of a role running on this node, as the executor tracks it: which driver runs
//! it (a `process`, an OCF agent, or a QEMU VM), whether it is up, and the one operation in
//! flight. Processes, OCF actions and QEMU are started by the fence guard; this module builds
//! its requests. A VM's other operations go over QMP (`vm::ops`).

use std::path::Path;

use halo_core::address::FloatingAddress;
use halo_core::role::{ResourceSpec, RoleSpec};
use halo_core::vm::VmSpec;
use tokio::sync::oneshot;

use crate::workload::address;
use crate::workload::guard::{SpawnRequest, Undo};
use crate::workload::ocf::{self, OcfAgent};
use crate::workload::probe::{Probe, ProbeError};
use crate::workload::vm::error::VmError;
use crate::workload::vm::{self, Boot, SerialWatch, VmFiles};

#[derive(Debug)]
pub enum Driver {
    Process,
    Ocf(OcfAgent),
    Vm(Box<VmRun>),
    /// A floating address (`ip`), run by halo's own actions (`address`).
    Address(FloatingAddress),
}

impl Driver {
    /// Run by start, stop and monitor actions with OCF exit codes (an OCF agent, or halo's
    /// own for an address), rather than as a long-lived workload.
    pub fn runs_actions(&self) -> bool {
        matches!(self, Driver::Ocf(_) | Driver::Address(_))
    }
}

/// What the executor knows of a VM on this node beyond "its QEMU runs".
#[derive(Debug)]
pub struct VmRun {
    pub spec: VmSpec,
    pub files: VmFiles,
    /// How its next QEMU starts; back to `Fresh` once started.
    pub boot: Boot,
    /// Started as the target of this live migration: paused, and not this node's to run
    /// until the cluster hands it over.
    pub incoming: Option<u64>,
    /// This source is carrying out the migration with this id; sending on `cancel` calls it off.
    pub migrating: Option<u64>,
    pub cancel: Option<oneshot::Sender<()>>,
    /// The guest left in this migration: this QEMU holds a paused copy that never runs
    /// again, unless the cluster dropped the migration without handing the role over.
    pub migrated_out: Option<u64>,
    pub heartbeat: Option<SerialWatch>,
    pub last_beat_ms: u64,
}

impl VmRun {
    /// The accelerator its QEMU uses. The executor starts no VM before it is known
    /// ([`waits_for_kvm_probe`]), and once known it never changes.
    pub fn accelerator(&self) -> &'static str {
        let accel = vm::accelerator(&self.spec);
        debug_assert!(accel.is_some(), "a VM was started before the KVM probe answered");
        accel.unwrap_or("tcg")
    }
}

/// Whether one of these resources is a VM that lets this node choose its accelerator while
/// the KVM probe has not answered yet: such a role waits (a tick or a few seconds, once per
/// agent) rather than block the runtime on the probe.
pub fn waits_for_kvm_probe(resources: &[LocalResource]) -> bool {
    resources.iter().any(|r| matches!(&r.driver, Driver::Vm(vm) if vm::accelerator(&vm.spec).is_none()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A process workload (or QEMU) being spawned.
    Spawn,
    /// An OCF start; for a VM, waiting for QEMU to run the guest.
    Start,
    Stop,
    Monitor,
    /// A live migration's target getting ready to receive.
    Prepare,
    /// A VM's guest migrating away (live) or being saved (quick).
    Migrate,
    /// A migrated guest resumed here.
    Resume,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Spawn => "spawn",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Monitor => "monitor",
            Op::Prepare => "prepare",
            Op::Migrate => "migrate",
            Op::Resume => "resume",
        }
    }
}

#[derive(Debug, Clone)]
pub struct InFlight {
    pub id: String,
    pub op: Op,
    pub since_ms: u64,
    /// Killed for running past its timeout.
    pub killed: bool,
}

#[derive(Debug)]
pub struct LocalResource {
    pub spec: ResourceSpec,
    pub driver: Driver,
    /// Up since its start succeeded: a process's workload id, or the OCF instance name.
    pub up: Option<String>,
    pub in_flight: Option<InFlight>,
    pub restarts_ms: Vec<u64>,
    /// Its stop failed and it still runs (why): the role can go nowhere else until this node
    /// is fenced.
    pub stop_failed: Option<String>,
    /// An OCF stop failed (why); what it left was killed and a monitor checks whether it runs.
    pub stop_escalated: Option<String>,
    pub next_monitor_ms: u64,
    /// Process stop: when SIGTERM went out, and whether SIGKILL followed.
    pub term_sent_ms: Option<u64>,
    pub kill_sent: bool,
    /// A process's health probe (parameter `probe`), and whether a run is under way.
    pub probe: Option<Probe>,
    pub probing: bool,
    /// The process was killed because its probe failed: its exit is expected, not a new failure.
    pub expect_exit: bool,
    /// A service needs time to start listening: until its probe first passes, failures count
    /// only after this instant (its start timeout after it was spawned).
    pub probe_grace_until_ms: Option<u64>,
}

/// Why a resource cannot run on this node.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// Its definition does not hold (the database refuses such definitions; one from an
    /// older halo is checked here).
    #[error("{0}")]
    Definition(String),
    #[error(transparent)]
    Ocf(#[from] ocf::OcfError),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

impl LocalResource {
    pub fn new(spec: &ResourceSpec, role: &str, data_dir: &Path) -> Result<Self, ResourceError> {
        let driver = match &spec.kind {
            halo_core::resource_kind::ResourceKind::Process => Driver::Process,
            halo_core::resource_kind::ResourceKind::Vm => {
                let vm = VmSpec::parse(&spec.params).map_err(ResourceError::Definition)?;
                let files = VmFiles::new(data_dir, role, &spec.name)?;
                std::fs::create_dir_all(&files.dir)
                    .map_err(|e| VmError::io(format!("cannot create {}", files.dir.display()), e))?;
                Driver::Vm(Box::new(VmRun {
                    spec: vm,
                    files,
                    boot: Boot::Fresh,
                    incoming: None,
                    migrating: None,
                    cancel: None,
                    migrated_out: None,
                    heartbeat: None,
                    last_beat_ms: 0,
                }))
            }
            halo_core::resource_kind::ResourceKind::Ip => {
                Driver::Address(FloatingAddress::parse(&spec.params).map_err(ResourceError::Definition)?)
            }
            kind @ halo_core::resource_kind::ResourceKind::Ocf { .. } => Driver::Ocf(ocf::locate(kind)?),
        };
        let probe = match (&driver, spec.params.get("probe")) {
            (Driver::Process, Some(text)) => Some(Probe::parse(text)?),
            (Driver::Vm(vm), _) => vm.spec.probe.as_deref().map(Probe::parse).transpose()?,
            _ => None,
        };
        // The local copy carries the timeouts in force, whatever their source.
        let mut spec = spec.clone();
        spec.timeouts = spec.effective_timeouts();
        Ok(Self {
            spec,
            driver,
            up: None,
            in_flight: None,
            restarts_ms: Vec::new(),
            stop_failed: None,
            stop_escalated: None,
            next_monitor_ms: 0,
            term_sent_ms: None,
            kill_sent: false,
            probe,
            probing: false,
            expect_exit: false,
            probe_grace_until_ms: None,
        })
    }

    /// Something of it may run here.
    pub fn active(&self) -> bool {
        self.up.is_some() || self.in_flight.is_some()
    }

    /// The time limit of an operation the fence guard runs, if it has one (a VM's QMP
    /// operations keep their own).
    pub fn timeout_ms(&self, op: Op) -> Option<u64> {
        if matches!(self.driver, Driver::Vm(_)) {
            return None;
        }
        match op {
            Op::Spawn | Op::Prepare | Op::Migrate | Op::Resume => None,
            Op::Start => Some(self.spec.timeouts.start()),
            Op::Stop => Some(self.spec.timeouts.stop()),
            Op::Monitor => Some(self.spec.timeouts.monitor()),
        }
    }

    /// The guard request for `op` (Spawn for a process, an OCF action otherwise).
    pub fn request(&self, op: Op, role: &RoleSpec, generation: u64, node: &str, id: &str, logs: &Path) -> SpawnRequest {
        let log = Some(logs.join(format!("{}.{}.log", role.name, self.spec.name)).display().to_string());
        let params = self.spec.effective_params();
        let mut request = match &self.driver {
            Driver::Process => {
                let mut env: Vec<(String, String)> = params
                    .iter()
                    .filter_map(|(k, v)| k.strip_prefix("env.").map(|name| (name.to_string(), v.clone())))
                    .collect();
                env.push(("HALO_RESOURCE".into(), self.spec.name.clone()));
                SpawnRequest {
                    id: id.to_string(),
                    program: "/bin/sh".into(),
                    args: vec!["-c".into(), self.spec.params.get("command").cloned().unwrap_or_default()],
                    cwd: self.spec.params.get("cwd").cloned(),
                    env,
                    log,
                    keep_group: false,
                    undo: None,
                    private: false,
                }
            }
            Driver::Ocf(agent) => {
                let instance = format!("{}.{}", role.name, self.spec.name);
                let mut request = ocf::action(agent, op.as_str(), &instance, &params, id, log);
                if op == Op::Start {
                    // What an OCF resource holds (an address, a mount) outlives its processes:
                    // at lease loss the guard runs its stop too.
                    request.undo =
                        Some(Undo { key: instance, args: vec!["stop".into()], timeout_ms: self.spec.timeouts.stop() });
                }
                request
            }
            Driver::Address(floating) => {
                let action = match op {
                    Op::Start => address::Action::Start,
                    Op::Stop => address::Action::Stop,
                    _ => address::Action::Monitor,
                };
                let instance = format!("{}.{}", role.name, self.spec.name);
                address::request(floating, action, &instance, self.spec.timeouts.stop(), id, log)
            }
            Driver::Vm(vm) => SpawnRequest {
                id: id.to_string(),
                program: vm::QEMU.into(),
                args: vm::command_line(&vm.spec, &vm.files, vm.accelerator(), &vm.boot),
                cwd: None,
                env: Vec::new(),
                log,
                keep_group: false,
                undo: None,
                private: true,
            },
        };
        request.env.push(("HALO_NODE".into(), node.to_string()));
        request.env.push(("HALO_ROLE".into(), role.name.clone()));
        request.env.push(("HALO_GENERATION".into(), generation.to_string()));
        request
    }
}
