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

use crate::child::{DiesWithParent, StartsWithUmask, Umask};
use crate::clock;
use crate::workload::watchdog::{self, Watchdog};

/// The environment variable that marks a workload as belonging to the guard of one data dir.
pub const MARKER: &str = "HALO_GUARD";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToGuard {
    /// Workloads may run until this instant (boot-time clock, ms). Only ever extended. While
    /// the guard holds something to undo, it fences `cleanup_ms` earlier, so that what it
    /// undoes is gone by the deadline (see [`Guard::fence_at`]).
    Lease {
        deadline_ms: u64,
        #[serde(default)]
        cleanup_ms: u64,
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
    /// What an earlier guard of this node was to undo at lease loss: it died, and a new guard
    /// leaves nothing of the old one's behind, so undo it now. Spawns that would hold the same
    /// thing wait until it is undone.
    Inherit {
        requests: Vec<SpawnRequest>,
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
    /// The workload keeps the files it creates private (umask 077, as the agent's own): a
    /// VM's serial log and sockets. Others start with a service's umask (022).
    #[serde(default)]
    pub private: bool,
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
    /// An undo finished: whether it succeeded.
    Undid {
        key: String,
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

    let mut guard = Guard::new(marker, watchdog.map(|p| Watchdog::new(p.to_path_buf())), tx);
    loop {
        let now = clock::monotonic_ms();
        let leased = guard.fence_at().is_some_and(|d| now < d);
        if !leased && (!guard.running.is_empty() || guard.untracked || !guard.undo.is_empty()) {
            guard.fence(now);
        }
        let clean = guard.running.is_empty() && !guard.untracked && guard.undoing.is_empty();
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
        let mut wait = match guard.fence_at() {
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
            Ok(Input::Undid { key, ok }) => guard.undid(&key, ok),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

struct Guard {
    marker: String,
    deadline_ms: Option<u64>,
    /// How long before the deadline the guard fences while it holds something to undo.
    cleanup_ms: u64,
    /// Workload id -> process group id.
    running: BTreeMap<String, i32>,
    /// An OCF action ran since the last fence: it may have left daemons outside our groups.
    untracked: bool,
    /// What to run at lease loss, by what it undoes (see [`Undo`]).
    undo: BTreeMap<String, SpawnRequest>,
    /// Undo runs under way, by what they undo: the guard outlives them.
    undoing: BTreeMap<String, usize>,
    /// Spawns that would hold what is being undone: started once it is.
    waiting: Vec<SpawnRequest>,
    /// An undo failed since the last lease: the watchdog stays armed and unfed (the host is
    /// reset: what is left cannot be cleaned up otherwise).
    undo_failed: bool,
    watchdog: Option<Watchdog>,
    agent_gone: bool,
    tx: mpsc::Sender<Input>,
}

impl Guard {
    /// A guard with no lease yet, running nothing.
    fn new(marker: String, watchdog: Option<Watchdog>, tx: mpsc::Sender<Input>) -> Self {
        Self {
            marker,
            deadline_ms: None,
            cleanup_ms: 0,
            running: BTreeMap::new(),
            untracked: false,
            undo: BTreeMap::new(),
            undoing: BTreeMap::new(),
            waiting: Vec::new(),
            undo_failed: false,
            watchdog,
            agent_gone: false,
            tx,
        }
    }

    fn handle(&mut self, message: ToGuard) {
        match message {
            ToGuard::Lease { deadline_ms, cleanup_ms } => {
                if self.deadline_ms.is_none_or(|d| deadline_ms > d) {
                    self.deadline_ms = Some(deadline_ms);
                    self.undo_failed = false;
                }
                self.cleanup_ms = cleanup_ms;
            }
            ToGuard::Spawn(request) => {
                let undoing = request.undo.as_ref().is_some_and(|u| self.undoing.contains_key(&u.key));
                if undoing {
                    self.waiting.push(request);
                } else {
                    self.spawn_and_tell(request);
                }
            }
            ToGuard::Inherit { requests } => {
                let now = clock::monotonic_ms();
                for request in requests {
                    eprintln!("fence guard: undoing what an earlier guard left: {}", request.id);
                    // No lease is running out here: the undo gets its own time limit.
                    self.start_undo(request, now, false);
                }
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

    /// The instant the guard fences: the deadline, or `cleanup_ms` before it while it holds
    /// something to undo. An undo is given until the deadline, so that what it undoes is gone
    /// before the leader may place the role elsewhere (it waits the lease plus a margin).
    fn fence_at(&self) -> Option<u64> {
        let early = if self.undo.is_empty() { 0 } else { self.cleanup_ms };
        self.deadline_ms.map(|d| d.saturating_sub(early))
    }

    fn spawn_and_tell(&mut self, request: SpawnRequest) {
        let id = request.id.clone();
        let event = match self.spawn(request) {
            Ok(pid) => FromGuard::Spawned { id, pid },
            Err(error) => FromGuard::SpawnFailed { id, error },
        };
        emit(&event);
    }

    fn spawn(&mut self, request: SpawnRequest) -> Result<u32, String> {
        let now = clock::monotonic_ms();
        // Something that leaves state to undo needs time to undo it before the deadline.
        let early = if request.undo.is_some() { self.cleanup_ms } else { 0 };
        if self.deadline_ms.is_none_or(|d| now + early >= d) {
            return Err("this node holds no lease; it may not start anything".into());
        }
        if self.running.contains_key(&request.id) {
            return Err(format!("workload {} is already running", request.id));
        }
        let mut command = Command::new(&request.program);
        // Dies with this guard (whose main loop started it): a workload never outlives its guard.
        command.args(&request.args).env(MARKER, &self.marker).stdin(Stdio::null()).process_group(0).dies_with_parent();
        command.starts_with_umask(if request.private { Umask::Private } else { Umask::Service });
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

    fn fence(&mut self, now: u64) {
        for &pgid in self.running.values() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        // What an OCF agent started lives in groups of its own; it carries our marker.
        sweep_leftovers(&self.marker);
        let ids: Vec<String> = self.running.keys().cloned().collect();
        eprintln!("fence guard: lease ran out; killed {}", ids.join(", "));
        self.running.clear();
        self.untracked = false;
        // Then undo what a kill leaves in the kernel, all at once.
        for request in std::mem::take(&mut self.undo).into_values() {
            self.start_undo(request, now, true);
        }
        emit(&FromGuard::Fenced { ids });
    }

    /// Run `request`'s undo on a thread of its own, within its time limit and, at lease loss
    /// (`fencing`), within what is left of the lease (but never less than [`MIN_UNDO_MS`]: a
    /// late undo is better than none).
    fn start_undo(&mut self, request: SpawnRequest, now: u64, fencing: bool) {
        let Some(undo) = &request.undo else { return };
        let left = self.deadline_ms.map_or(0, |d| d.saturating_sub(now));
        let limit_ms = if fencing { undo.timeout_ms.min(left.max(MIN_UNDO_MS)) } else { undo.timeout_ms };
        let key = undo.key.clone();
        *self.undoing.entry(key.clone()).or_default() += 1;
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            let ok = run_undo(&request, limit_ms);
            let _ = tx.send(Input::Undid { key, ok });
        });
    }

    fn undid(&mut self, key: &str, ok: bool) {
        self.undo_failed |= !ok;
        if let Some(count) = self.undoing.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.undoing.remove(key);
            }
        }
        if !self.undoing.contains_key(key) {
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|r| r.undo.as_ref().is_none_or(|u| !self.undoing.contains_key(&u.key)));
            self.waiting = waiting;
            for request in ready {
                self.spawn_and_tell(request);
            }
        }
    }
}

/// The least time an undo gets, however late the guard is: a late undo is better than none.
const MIN_UNDO_MS: u64 = 500;

/// Run `request`'s undo (its program with the undo's arguments, in its environment, its output
/// to the request's log), killing it after `limit_ms`; whether it succeeded. It dies with the
/// guard, like every child.
fn run_undo(request: &SpawnRequest, limit_ms: u64) -> bool {
    let Some(undo) = &request.undo else { return true };
    let mut command = Command::new(&request.program);
    command.args(&undo.args).stdin(Stdio::null()).process_group(0);
    command.envs(request.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).dies_with_parent();
    command.starts_with_umask(if request.private { Umask::Private } else { Umask::Service });
    match request.log.as_ref().and_then(|log| std::fs::OpenOptions::new().create(true).append(true).open(log).ok()) {
        Some(file) => {
            let err = file.try_clone().map_or_else(|_| Stdio::null(), Stdio::from);
            command.stdout(file).stderr(err);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    if let Some(cwd) = &request.cwd {
        command.current_dir(cwd);
    }
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_millis(limit_ms);
    let (ok, outcome) = match command.spawn() {
        Ok(mut child) => loop {
            match child.try_wait() {
                Ok(Some(status)) => break (status.success(), format!("{status}")),
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    let _ = child.wait();
                    break (false, format!("killed after {limit_ms} ms"));
                }
            }
        },
        Err(e) => (false, format!("cannot run it: {e}")),
    };
    let took = started.elapsed().as_millis();
    eprintln!("fence guard: undid {} in {took} ms ({} {}): {outcome}", undo.key, request.program, undo.args.join(" "));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> (Guard, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel();
        let guard = Guard::new("guard-unit-test".into(), None, tx);
        (guard, rx)
    }

    fn request(id: &str, undo: Option<(&str, &str)>) -> SpawnRequest {
        SpawnRequest {
            id: id.into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "exit 0".into()],
            cwd: None,
            env: Vec::new(),
            log: None,
            keep_group: true,
            undo: undo.map(|(key, script)| Undo {
                key: key.into(),
                args: vec!["-c".into(), script.into()],
                timeout_ms: 5000,
            }),
            private: false,
        }
    }

    #[test]
    fn it_fences_early_only_while_it_holds_something_to_undo() {
        let (mut g, _rx) = guard();
        g.handle(ToGuard::Lease { deadline_ms: 10_000, cleanup_ms: 500 });
        assert_eq!(g.fence_at(), Some(10_000), "nothing to undo: the whole lease");
        g.undo.insert("web.vip".into(), request("a", Some(("web.vip", "exit 0"))));
        assert_eq!(g.fence_at(), Some(9_500), "time to undo before the lease ends");
        g.handle(ToGuard::Undone { key: "web.vip".into() });
        assert_eq!(g.fence_at(), Some(10_000));
    }

    #[test]
    fn nothing_that_leaves_state_starts_without_time_to_undo_it() {
        let (mut g, _rx) = guard();
        let now = clock::monotonic_ms();
        g.handle(ToGuard::Lease { deadline_ms: now + 300, cleanup_ms: 500 });
        let refused = g.spawn(request("with-undo", Some(("r.a", "exit 0")))).unwrap_err();
        assert!(refused.contains("no lease"), "{refused}");
        assert!(g.undo.is_empty());
        assert!(g.spawn(request("plain", None)).is_ok(), "a kill undoes a plain workload at once");
    }

    #[test]
    fn an_undo_gets_what_is_left_of_the_lease_and_spawns_wait_for_it() {
        let (mut g, rx) = guard();
        let now = clock::monotonic_ms();
        g.handle(ToGuard::Lease { deadline_ms: now + 60_000, cleanup_ms: 500 });
        // What an earlier guard held is undone first; a start of the same thing waits for it.
        g.handle(ToGuard::Inherit { requests: vec![request("old", Some(("r.a", "sleep 0.2")))] });
        g.handle(ToGuard::Spawn(request("new", Some(("r.a", "exit 0")))));
        assert_eq!(g.waiting.len(), 1);
        assert!(!g.running.contains_key("new"));
        let Ok(Input::Undid { key, ok }) = rx.recv_timeout(Duration::from_secs(10)) else { panic!("no undo") };
        assert!(ok);
        g.undid(&key, ok);
        assert!(g.waiting.is_empty() && g.running.contains_key("new") && g.undoing.is_empty());
        assert!(g.undo.contains_key("r.a"), "the new start holds it now");

        // An undo that overruns the lease is killed at its end (here at the floor).
        let (mut g, rx) = guard();
        g.handle(ToGuard::Lease { deadline_ms: clock::monotonic_ms() + 100, cleanup_ms: 500 });
        let started = std::time::Instant::now();
        g.start_undo(request("slow", Some(("r.b", "sleep 30"))), clock::monotonic_ms(), true);
        let Ok(Input::Undid { ok, .. }) = rx.recv_timeout(Duration::from_secs(10)) else { panic!("no undo") };
        assert!(!ok, "killed, so failed: the watchdog stays armed");
        assert!(started.elapsed() < Duration::from_millis(MIN_UNDO_MS + 1500), "{:?}", started.elapsed());
    }
}
