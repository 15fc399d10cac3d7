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
    Exited { id: String, status: std::process::ExitStatus, lingering: bool },
}

/// Entry point of `halo fence-guard`.
pub fn run(data_dir: &Path) -> anyhow::Result<()> {
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

    let mut guard =
        Guard { marker, deadline_ms: None, running: BTreeMap::new(), untracked: false, agent_gone: false, tx };
    loop {
        let now = clock::monotonic_ms();
        if guard.deadline_ms.is_none_or(|d| now >= d) && (!guard.running.is_empty() || guard.untracked) {
            guard.fence();
        }
        if guard.agent_gone && guard.running.is_empty() && !guard.untracked {
            return Ok(());
        }
        // Sleep until the next message or the deadline, whichever comes first.
        let wait = match guard.deadline_ms {
            Some(d) if !guard.running.is_empty() || guard.untracked => {
                Duration::from_millis(d.saturating_sub(now).max(1))
            }
            _ => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Input::Agent(message)) => guard.handle(message),
            Ok(Input::AgentGone) => guard.agent_gone = true,
            Ok(Input::Exited { id, status, lingering }) => guard.exited(id, status, lingering),
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
    agent_gone: bool,
    tx: mpsc::Sender<Input>,
}

impl Guard {
    fn handle(&mut self, message: ToGuard) {
        match message {
            ToGuard::Lease { deadline_ms } => {
                if self.deadline_ms.is_none_or(|d| deadline_ms > d) {
                    self.deadline_ms = Some(deadline_ms);
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
        emit(&FromGuard::Fenced { ids });
    }
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
