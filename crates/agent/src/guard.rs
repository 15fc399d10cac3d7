//! The fence guard: a small separate process (`halo fence-guard`) that starts every workload of
//! its node and kills them all the moment the node's lease runs out.
//!
//! It is a process of its own, not a thread of the agent, so that a hung or SIGSTOPped agent is
//! still fenced. The agent talks to it over stdin/stdout, one JSON message per line: lease
//! deadlines and spawn/signal requests in, spawn results and exits out. The guard refuses to
//! start anything without a valid lease, and keeps enforcing the last deadline after the agent
//! is gone; it exits once the agent is gone and nothing of its own runs.
//!
//! Every workload carries `HALO_GUARD=<data dir>` in its environment; a guard starting up kills
//! whatever an earlier incarnation left behind, so a restarted node runs nothing it was not
//! told to run again.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::child::DiesWithParent;
use crate::clock;
use crate::watchdog::{self, Watchdog};

/// The environment variable that marks a workload as belonging to the guard of one data dir.
pub const MARKER: &str = "HALO_GUARD";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToGuard {
    /// Workloads may run until this instant (boot-time clock, ms). Only ever extended.
    Lease {
        deadline_ms: u64,
    },
    Spawn(SpawnRequest),
    /// Signal the whole process group of a workload.
    Signal {
        id: String,
        signal: i32,
    },
    /// Kill the process group of every process of ours whose environment holds `key=value`
    /// (e.g. what an OCF resource left behind when its stop failed).
    Sweep {
        key: String,
        value: String,
    },
    /// What a spawn's `undo` would undo is gone (the resource stopped cleanly): forget it.
    Undone {
        key: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpawnRequest {
    pub id: String,
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub env: Vec<(String, String)>,
    /// Where the workload's stdout and stderr go (appended).
    pub log: Option<String>,
    /// A workload's group dies with it; an OCF action's does not (its daemon lives on).
    #[serde(default)]
    pub keep_group: bool,
    /// What to run at lease loss, after every workload was killed, to undo what this left in
    /// the kernel (an address, a mount, a session), which no kill removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
}

/// The same program and environment with other arguments (an OCF agent's `stop`), run under a
/// time limit at lease loss. Keyed by what it undoes, so a later start of the same thing
/// replaces it and a clean stop forgets it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Undo {
    pub key: String,
    pub args: Vec<String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FromGuard {
    Spawned {
        id: String,
        pid: u32,
    },
    SpawnFailed {
        id: String,
        error: String,
    },
    Exited {
        id: String,
        code: Option<i32>,
        signal: Option<i32>,
        /// Something of the workload's group survived SIGKILL (a process stuck in the kernel):
        /// it cannot be said to have stopped.
        #[serde(default)]
        lingering: bool,
    },
    /// The lease ran out and these workloads were killed.
    Fenced {
        ids: Vec<String>,
    },
}

enum Input {
    Agent(ToGuard),
    AgentGone,
    Exited {
        id: String,
        status: std::process::ExitStatus,
        lingering: bool,
    },
    /// An undo run at lease loss finished: whether it succeeded.
    Undid {
        ok: bool,
    },
}

/// Entry point of `halo fence-guard`; `watchdog`: the device to feed while the lease holds.
pub fn run(data_dir: &Path, watchdog: Option<&Path>) -> anyhow::Result<()> {
    let marker = data_dir.display().to_string();
    sweep_leftovers(&marker);
    let (tx, rx) = mpsc::channel::<Input>();
    let reader_tx = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<ToGuard>(&line) {
                Ok(message) => {
                    if reader_tx.send(Input::Agent(message)).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("fence guard: ignoring malformed request: {e}"),
            }
        }
        let _ = reader_tx.send(Input::AgentGone);
    });

    let mut guard = Guard {
        marker,
        deadline_ms: None,
        running: BTreeMap::new(),
        untracked: false,
        undo: BTreeMap::new(),
        undoing: 0,
        undo_failed: false,
        watchdog: watchdog.map(|p| Watchdog::new(p.to_path_buf())),
        agent_gone: false,
        tx,
    };
    loop {
        let now = clock::monotonic_ms();
        let leased = guard.deadline_ms.is_some_and(|d| now < d);
        if !leased && (!guard.running.is_empty() || guard.untracked) {
            guard.fence();
        }
        let clean = guard.running.is_empty() && !guard.untracked && guard.undoing == 0;
        if let Some(watchdog) = &mut guard.watchdog {
            if leased {
                watchdog.feed(std::time::Instant::now());
            } else if watchdog.armed() && clean && !guard.undo_failed {
                // Everything is killed and undone: no need to reset the host.
                watchdog.disarm();
            }
        }
        if guard.agent_gone && clean {
            if let Some(watchdog) = &mut guard.watchdog {
                watchdog.disarm();
            }
            return Ok(());
        }
        // Sleep until the next message or the deadline, whichever comes first (and feed the
        // watchdog in time while the lease holds).
        let mut wait = match guard.deadline_ms {
            Some(d) if leased => Duration::from_millis(d.saturating_sub(now).max(1)),
            _ => Duration::from_secs(3600),
        };
        if leased && guard.watchdog.is_some() {
            wait = wait.min(watchdog::FEED_EVERY);
        }
        match rx.recv_timeout(wait) {
            Ok(Input::Agent(message)) => guard.handle(message),
            Ok(Input::AgentGone) => guard.agent_gone = true,
            Ok(Input::Exited { id, status, lingering }) => guard.exited(id, status, lingering),
            Ok(Input::Undid { ok }) => {
                guard.undoing = guard.undoing.saturating_sub(1);
                guard.undo_failed |= !ok;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

struct Guard {
    marker: String,
    deadline_ms: Option<u64>,
    /// Workload id -> process group id.
    running: BTreeMap<String, i32>,
    /// An OCF action ran since the last fence: it may have left daemons outside our groups.
    untracked: bool,
    /// What to run at lease loss, by what it undoes (see [`Undo`]).
    undo: BTreeMap<String, SpawnRequest>,
    /// Undo runs still under way: the guard outlives them.
    undoing: usize,
    /// An undo failed since the last lease: the watchdog stays armed and unfed (the host is
    /// reset: what is left cannot be cleaned up otherwise).
    undo_failed: bool,
    watchdog: Option<Watchdog>,
    agent_gone: bool,
    tx: mpsc::Sender<Input>,
}

impl Guard {
    fn handle(&mut self, message: ToGuard) {
        match message {
            ToGuard::Lease { deadline_ms } => {
                if self.deadline_ms.is_none_or(|d| deadline_ms > d) {
                    self.deadline_ms = Some(deadline_ms);
                    self.undo_failed = false;
                }
            }
            ToGuard::Spawn(request) => {
                let id = request.id.clone();
                let event = match self.spawn(request) {
                    Ok(pid) => FromGuard::Spawned { id, pid },
                    Err(error) => FromGuard::SpawnFailed { id, error },
                };
                emit(&event);
            }
            ToGuard::Signal { id, signal } => {
                if let (Some(&pgid), Ok(signal)) = (self.running.get(&id), Signal::try_from(signal)) {
                    let _ = killpg(Pid::from_raw(pgid), signal);
                }
            }
            ToGuard::Sweep { key, value } => {
                let killed = sweep(&self.marker, Some(&format!("{key}={value}")));
                eprintln!("fence guard: killed {killed} process group(s) with {key}={value}");
            }
            ToGuard::Undone { key } => {
                self.undo.remove(&key);
            }
        }
    }

    fn spawn(&mut self, request: SpawnRequest) -> Result<u32, String> {
        if self.deadline_ms.is_none_or(|d| clock::monotonic_ms() >= d) {
            return Err("this node holds no lease; it may not start anything".into());
        }
        if self.running.contains_key(&request.id) {
            return Err(format!("workload {} is already running", request.id));
        }
        let mut command = Command::new(&request.program);
        // Dies with this guard (whose main loop started it): a workload never outlives its guard.
        command.args(&request.args).env(MARKER, &self.marker).stdin(Stdio::null()).process_group(0).dies_with_parent();
        for (key, value) in &request.env {
            command.env(key, value);
        }
        if let Some(cwd) = &request.cwd {
            command.current_dir(cwd);
        }
        if let Some(log) = &request.log {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| format!("cannot open log {log}: {e}"))?;
            let err = file.try_clone().map_err(|e| e.to_string())?;
            command.stdout(file).stderr(err);
        } else {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", request.program))?;
        self.untracked |= request.keep_group;
        if let Some(undo) = &request.undo {
            self.undo.insert(undo.key.clone(), request.clone());
        }
        let pid = child.id();
        self.running.insert(request.id.clone(), pid as i32);
        let tx = self.tx.clone();
        let id = request.id;
        let pgid = pid as i32;
        let keep_group = request.keep_group;
        // One waiting thread per workload: the exit is noticed the moment it happens. Whatever
        // the workload left in its group (a child holding a lock, say) is killed, and the exit
        // is reported only once the group is gone, so a restart never overlaps the old instance.
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let mut lingering = false;
                if !keep_group {
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                    lingering = !wait_group_gone(pgid, Duration::from_secs(5));
                }
                let _ = tx.send(Input::Exited { id, status, lingering });
            }
        });
        Ok(pid)
    }

    fn exited(&mut self, id: String, status: std::process::ExitStatus, lingering: bool) {
        self.running.remove(&id);
        emit(&FromGuard::Exited { id, code: status.code(), signal: status.signal(), lingering });
    }

    fn fence(&mut self) {
        for &pgid in self.running.values() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        // What an OCF agent started lives in groups of its own; it carries our marker.
        sweep_leftovers(&self.marker);
        let ids: Vec<String> = self.running.keys().cloned().collect();
        eprintln!("fence guard: lease ran out; killed {}", ids.join(", "));
        self.running.clear();
        self.untracked = false;
        // Then undo what a kill leaves in the kernel, each under its own time limit.
        for (key, request) in std::mem::take(&mut self.undo) {
            self.undoing += 1;
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                let ok = undo(&key, &request);
                let _ = tx.send(Input::Undid { ok });
            });
        }
        emit(&FromGuard::Fenced { ids });
    }
}

/// Run `request`'s undo (its program with the undo's arguments, in its environment), killing
/// it at its time limit; whether it succeeded. It dies with the guard, like every child.
fn undo(key: &str, request: &SpawnRequest) -> bool {
    let Some(undo) = &request.undo else { return true };
    let mut command = Command::new(&request.program);
    command.args(&undo.args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    command.envs(request.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).dies_with_parent();
    if let Some(cwd) = &request.cwd {
        command.current_dir(cwd);
    }
    let limit = Duration::from_millis(undo.timeout_ms);
    let (ok, outcome) = match command.spawn() {
        Ok(mut child) => {
            let deadline = std::time::Instant::now() + limit;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break (status.success(), format!("{status}")),
                    Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                        let _ = child.wait();
                        break (false, format!("killed after {} ms", undo.timeout_ms));
                    }
                }
            }
        }
        Err(e) => (false, format!("cannot run it: {e}")),
    };
    eprintln!("fence guard: undid {key} ({} {}): {outcome}", request.program, undo.args.join(" "));
    ok
}

fn emit(event: &FromGuard) {
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        // The agent may be gone; the guard goes on enforcing the lease regardless.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

/// Wait (bounded) until no live process is left in group `pgid`; whether it is gone. Zombies
/// do not count: they hold no files or locks any more.
fn wait_group_gone(pgid: i32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if !group_alive(pgid) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // The fields after the command name, which is in parentheses and may contain spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<i32>() == Ok(pgid)
    })
}

/// Kill the process groups of workloads an earlier guard of this data dir started.
fn sweep_leftovers(marker: &str) {
    let killed = sweep(marker, None);
    if killed > 0 {
        eprintln!("fence guard: killed {killed} leftover workload group(s)");
    }
}

/// Kill the process group of every process carrying this guard's marker (and `also`, if
/// given, in its environment); returns how many groups.
fn sweep(marker: &str, also: Option<&str>) -> usize {
    let needle = format!("{MARKER}={marker}");
    let mut groups = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid as u32 == me {
            continue;
        }
        let environ: PathBuf = entry.path().join("environ");
        let Ok(bytes) = std::fs::read(&environ) else { continue };
        let has = |wanted: &str| bytes.split(|&b| b == 0).any(|var| var == wanted.as_bytes());
        if has(&needle)
            && also.is_none_or(has)
            && let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
            && groups.insert(pgid)
        {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
    groups.len()
}
