//! The agent's end of the fence guard: starts `halo fence-guard` as a child process, feeds it
//! lease deadlines and spawn requests, and hands its events to the executor. If the guard dies,
//! a new one is started (it sweeps up what the old one left running) and the executor is told.
//!
//! The link runs on threads of its own, not on the async runtime: a lease extension reaches
//! the guard however busy the runtime is, so a stalled runtime can never make a node fence
//! itself for nothing. The guard is the one child that is *not* tied to the agent's life
//! (`child`): it must go on enforcing the lease after the agent died, and exits by itself once
//! the agent is gone and nothing of its own runs.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::guard::{FromGuard, ToGuard};

#[derive(Debug)]
pub enum GuardEvent {
    Message(FromGuard),
    /// A new guard process took over; nothing the old one started is running any more.
    Restarted,
}

pub struct GuardLink {
    tx: std_mpsc::Sender<Input>,
    /// The last deadline sent, so that a restarted guard gets it again at once.
    deadline_ms: Mutex<Option<u64>>,
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
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let link = Arc::new(Self { tx: tx.clone(), deadline_ms: Mutex::new(None) });
        let supervisor = link.clone();
        let spawned = std::thread::Builder::new()
            .name("guard-link".into())
            .spawn(move || supervise(&data_dir, watchdog.as_deref(), &rx, &tx, &events_tx, &supervisor));
        if let Err(e) = spawned {
            // Without the link nothing can start: every spawn request stays unanswered and
            // the executor reports nothing running, which is safe.
            tracing::error!("cannot start the fence guard's link thread: {e}");
        }
        (link, events_rx)
    }

    pub fn send(&self, message: ToGuard) {
        if let ToGuard::Lease { deadline_ms } = message
            && let Ok(mut last) = self.deadline_ms.lock()
        {
            *last = Some(deadline_ms);
        }
        let _ = self.tx.send(Input::ToGuard(message));
    }

    /// The deadline the guard enforces: workloads may run until then and not a moment longer.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms.lock().ok().and_then(|d| *d)
    }
}

fn supervise(
    data_dir: &std::path::Path,
    watchdog: Option<&std::path::Path>,
    rx: &std_mpsc::Receiver<Input>,
    tx: &std_mpsc::Sender<Input>,
    events: &mpsc::UnboundedSender<GuardEvent>,
    link: &GuardLink,
) {
    let mut instance = 0u64;
    loop {
        instance += 1;
        let (mut child, mut stdin) = match start_guard(data_dir, watchdog, instance, tx, events) {
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
        if let Some(deadline_ms) = link.deadline_ms()
            && write_line(&mut stdin, &ToGuard::Lease { deadline_ms }).is_err()
        {
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
    let (tx, events) = (tx.clone(), events.clone());
    std::thread::Builder::new().name("guard-events".into()).spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<FromGuard>(&line) {
                Ok(event) => {
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
