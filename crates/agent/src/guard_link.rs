//! The agent's end of the fence guard: starts `halo fence-guard` as a child process, feeds it
//! lease deadlines and spawn requests, and hands its events to the executor. If the guard dies,
//! a new one is started (it sweeps up what the old one left running) and the executor is told.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::guard::{FromGuard, ToGuard};

#[derive(Debug)]
pub enum GuardEvent {
    Message(FromGuard),
    /// A new guard process took over; nothing the old one started is running any more.
    Restarted,
}

pub struct GuardLink {
    tx: mpsc::UnboundedSender<ToGuard>,
    /// The last deadline sent, so that a restarted guard gets it again at once.
    deadline_ms: Mutex<Option<u64>>,
}

impl GuardLink {
    /// Start the guard supervisor; events arrive on the returned receiver.
    pub fn start(data_dir: PathBuf) -> (std::sync::Arc<Self>, mpsc::UnboundedReceiver<GuardEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let link = std::sync::Arc::new(Self { tx, deadline_ms: Mutex::new(None) });
        tokio::spawn(supervise(data_dir, rx, events_tx, link.clone()));
        (link, events_rx)
    }

    pub fn send(&self, message: ToGuard) {
        if let ToGuard::Lease { deadline_ms } = message
            && let Ok(mut last) = self.deadline_ms.lock()
        {
            *last = Some(deadline_ms);
        }
        let _ = self.tx.send(message);
    }

    /// The deadline the guard enforces: workloads may run until then and not a moment longer.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.deadline_ms.lock().ok().and_then(|d| *d)
    }
}

async fn supervise(
    data_dir: PathBuf,
    mut rx: mpsc::UnboundedReceiver<ToGuard>,
    events: mpsc::UnboundedSender<GuardEvent>,
    link: std::sync::Arc<GuardLink>,
) {
    let mut first = true;
    loop {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("halo"));
        let child = tokio::process::Command::new(exe)
            .arg("fence-guard")
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot start the fence guard: {e}; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if !first {
            let _ = events.send(GuardEvent::Restarted);
        }
        first = false;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else { continue };
        if let Some(deadline_ms) = link.deadline_ms() {
            let _ = write_line(&mut stdin, &ToGuard::Lease { deadline_ms }).await;
        }
        let mut lines = BufReader::new(stdout).lines();
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { return };
                    if write_line(&mut stdin, &message).await.is_err() {
                        break;
                    }
                }
                line = lines.next_line() => {
                    match line {
                        Ok(Some(line)) => match serde_json::from_str::<FromGuard>(&line) {
                            Ok(event) => { let _ = events.send(GuardEvent::Message(event)); }
                            Err(e) => tracing::warn!("fence guard said something unreadable: {e}"),
                        },
                        _ => break,
                    }
                }
            }
        }
        tracing::error!("the fence guard exited; starting a new one");
        let _ = child.kill().await;
    }
}

async fn write_line(stdin: &mut tokio::process::ChildStdin, message: &ToGuard) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stdin.write_all(&line).await?;
    stdin.flush().await
}
