//! The agent's end of the fence guard: starts `halo fence-guard` as a child process, feeds it
//! lease deadlines and spawn requests, and hands its events to the executor. If the guard dies,
//! a new one is started (it sweeps up what the old one left running) and the executor is told.
//!
//! The link runs on threads of its own, not on the async runtime: a lease extension reaches
//! the guard however busy the runtime is, so a stalled runtime can never make a node fence
//! itself for nothing. The guard is the one child that is *not* tied to the agent's life
//! (`child`): it must go on enforcing the lease after the agent died, and exits by itself once
//! the agent is gone and nothing of its own runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::workload::guard::{FromGuard, ToGuard};

#[derive(Debug)]
pub enum GuardEvent {
    Message(FromGuard),
    /// A new guard process took over; nothing the old one started is running any more.
    Restarted,
}

pub struct GuardLink {
    tx: std_mpsc::Sender<Input>,
    /// What a restarted guard must be told at once.
    told: Mutex<Told>,
}

#[derive(Default)]
struct Told {
    /// The last lease sent: (deadline, cleanup allowance).
    lease: Option<(u64, u64)>,
    /// The spawns whose undo the guard holds, by what they undo: a new guard undoes them
    /// (`ToGuard::Inherit`), as it kills what the old one ran.
    undo: BTreeMap<String, crate::workload::guard::SpawnRequest>,
}

enum Input {
    ToGuard(ToGuard),
    /// The output of guard number N ended: it exited (or closed it), so a new one is due.
    GuardGone(u64),
}

impl GuardLink {
    /// Start the guard supervisor; events arrive on the returned receiver.
    pub fn start(data_dir: PathBuf, watchdog: Option<PathBuf>) -> (Arc<Self>, mpsc::UnboundedReceiver<GuardEvent>) {
        let (tx, rx) = std_mpsc::channel();
        // Unbounded by design, bounded in fact: the guard reports its own children (one exit
        // each) and its own end; the executor drains it continuously. Blocking this thread on a
        // full channel would stop it from feeding the guard.
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let link = Arc::new(Self { tx: tx.clone(), told: Mutex::default() });
        let supervisor = link.clone();
        let spawned = std::thread::Builder::new()
            .name("guard-link".into())
            .spawn(move || supervise(&data_dir, watchdog.as_deref(), &rx, &tx, &events_tx, supervisor));
        if let Err(e) = spawned {
            // Without the link nothing can start: every spawn request stays unanswered and
            // the executor reports nothing running, which is safe.
            tracing::error!("cannot start the fence guard's link thread: {e}");
        }
        (link, events_rx)
    }

    pub fn send(&self, message: ToGuard) {
        {
            let mut told = self.told();
            match &message {
                ToGuard::Lease { deadline_ms, cleanup_ms } => told.lease = Some((*deadline_ms, *cleanup_ms)),
                ToGuard::Spawn(request) => {
                    if let Some(undo) = &request.undo {
                        told.undo.insert(undo.key.clone(), request.clone());
                    }
                }
                ToGuard::Undone { key } => {
                    told.undo.remove(key);
                }
                _ => {}
            }
        }
        let _ = self.tx.send(Input::ToGuard(message));
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The deadline the guard enforces: workloads may run until then and not a moment longer.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.told().lease.map(|(deadline, _)| deadline)
    }

    /// How long before the deadline the guard fences while it has something to undo: nothing
    /// new starts this late in a lease.
    pub fn cleanup_ms(&self) -> u64 {
        self.told().lease.map_or(0, |(_, cleanup)| cleanup)
    }
}

fn supervise(
    data_dir: &std::path::Path,
    watchdog: Option<&std::path::Path>,
    rx: &std_mpsc::Receiver<Input>,
    tx: &std_mpsc::Sender<Input>,
    events: &mpsc::UnboundedSender<GuardEvent>,
    link: Arc<GuardLink>,
) {
    let mut instance = 0u64;
    loop {
        instance += 1;
        let (mut child, mut stdin) = match start_guard(data_dir, watchdog, instance, tx, events, &link) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!("cannot start the fence guard: {e}; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if instance > 1 {
            let _ = events.send(GuardEvent::Restarted);
        }
        // The lease, and what the old guard was to undo, reach the new one before anything
        // the executor sends: it undoes that before it starts anything that holds it again.
        let (lease, inherited) = {
            let mut told = link.told();
            (told.lease, std::mem::take(&mut told.undo).into_values().collect::<Vec<_>>())
        };
        let mut first = Vec::new();
        if let Some((deadline_ms, cleanup_ms)) = lease {
            first.push(ToGuard::Lease { deadline_ms, cleanup_ms });
        }
        if !inherited.is_empty() {
            first.push(ToGuard::Inherit { requests: inherited });
        }
        if first.iter().any(|message| write_line(&mut stdin, message).is_err()) {
            restart(&mut child);
            continue;
        }
        loop {
            match rx.recv() {
                Ok(Input::ToGuard(message)) => {
                    if write_line(&mut stdin, &message).is_err() {
                        break;
                    }
                }
                Ok(Input::GuardGone(gone)) if gone == instance => break,
                // An earlier guard's output ending late says nothing about this one.
                Ok(Input::GuardGone(_)) => {}
                // Every sender is gone: nothing more can come.
                Err(_) => return,
            }
        }
        restart(&mut child);
    }
}

fn restart(child: &mut Child) {
    tracing::error!("the fence guard exited; starting a new one");
    let _ = child.kill();
    let _ = child.wait();
}

/// Start a guard and a thread that forwards what it says to the executor.
fn start_guard(
    data_dir: &std::path::Path,
    watchdog: Option<&std::path::Path>,
    instance: u64,
    tx: &std_mpsc::Sender<Input>,
    events: &mpsc::UnboundedSender<GuardEvent>,
    link: &Arc<GuardLink>,
) -> std::io::Result<(Child, ChildStdin)> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("halo"));
    let mut command = std::process::Command::new(exe);
    command.arg("fence-guard").arg("--data-dir").arg(data_dir);
    if let Some(watchdog) = watchdog {
        command.arg("--watchdog").arg(watchdog);
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("the fence guard has no stdin or stdout"));
    };
    let (tx, events, link) = (tx.clone(), events.clone(), link.clone());
    std::thread::Builder::new().name("guard-events".into()).spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<FromGuard>(&line) {
                Ok(event) => {
                    if matches!(event, FromGuard::Fenced { .. }) {
                        // The guard undid all it held.
                        link.told().undo.clear();
                    }
                    let _ = events.send(GuardEvent::Message(event));
                }
                Err(e) => tracing::warn!("fence guard said something unreadable: {e}"),
            }
        }
        let _ = tx.send(Input::GuardGone(instance));
    })?;
    Ok((child, stdin))
}

fn write_line(stdin: &mut ChildStdin, message: &ToGuard) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stdin.write_all(&line)?;
    stdin.flush()
}
