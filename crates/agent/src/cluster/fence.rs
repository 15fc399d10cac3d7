//! Fence agents: the fast path of recovery. When the leader stops hearing a node that has a
//! fence device, it runs the device's standard `fence_*` program (`key=value` lines on stdin,
//! `action=off`); a zero exit is a confirmed power-off, and the node's roles are recovered at
//! once instead of after its lease. A failed or slow fence changes nothing: the lease rule
//! still applies.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use halo_core::state::FenceDevice;
use tokio::io::AsyncWriteExt;

use crate::child::DiesWithParent;

/// How long a fence agent may take before its attempt counts as failed.
const FENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed attempt, try again this much later (the lease covers the meantime).
const RETRY_MS: u64 = 5_000;

#[derive(Debug, Clone, PartialEq)]
enum Attempt {
    Running,
    Confirmed { agent: String },
    Failed { at_ms: u64 },
}

/// The leader's fencing attempts per silent node; forgotten once the node is heard again.
#[derive(Default)]
pub struct Fencing {
    attempts: Mutex<BTreeMap<u64, Attempt>>,
}

impl Fencing {
    /// `Some(why)` once the power-off of `node` is confirmed.
    pub fn confirmed(&self, node: u64) -> Option<String> {
        let attempts = self.attempts.lock().ok()?;
        match attempts.get(&node) {
            Some(Attempt::Confirmed { agent }) => Some(format!("was powered off by {agent}")),
            _ => None,
        }
    }

    /// Power `node` off through `device`, unless an attempt is under way, already confirmed,
    /// or failed just now (the lease covers the meantime).
    pub fn attempt(self: &std::sync::Arc<Self>, node: u64, name: &str, device: &FenceDevice, now_ms: u64) {
        let Ok(mut attempts) = self.attempts.lock() else { return };
        match attempts.get(&node) {
            Some(Attempt::Confirmed { .. } | Attempt::Running) => return,
            Some(Attempt::Failed { at_ms }) if now_ms < at_ms + RETRY_MS => return,
            _ => {}
        }
        attempts.insert(node, Attempt::Running);
        let (this, device, name) = (self.clone(), device.clone(), name.to_string());
        tokio::spawn(async move {
            let result = power_off(&device, &name).await;
            let attempt = match &result {
                Ok(()) => {
                    tracing::warn!(node = %name, agent = %device.agent, "fenced: power-off confirmed");
                    Attempt::Confirmed { agent: device.agent.clone() }
                }
                Err(e) => {
                    tracing::error!(node = %name, agent = %device.agent, "fencing failed: {e}; waiting for its lease instead");
                    Attempt::Failed { at_ms: crate::clock::monotonic_ms() }
                }
            };
            if let Ok(mut attempts) = this.attempts.lock() {
                // The node may have been heard again meanwhile; then the attempt is moot.
                if attempts.get(&node) == Some(&Attempt::Running) {
                    attempts.insert(node, attempt);
                }
            }
        });
    }

    /// The node is heard again: any fencing state about it is over.
    pub fn heard(&self, node: u64) {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.remove(&node);
        }
    }
}

/// Why a fence agent did not power a node off.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("fence device of '{node}' refused: {why}")]
    Device { node: String, why: String },
    #[error("cannot run {agent}: {source}")]
    CannotRun { agent: String, source: std::io::Error },
    #[error("{agent} did not finish within {} s", FENCE_TIMEOUT.as_secs())]
    Timeout { agent: String },
    #[error("{agent} exited with {status}: {stderr}")]
    Failed { agent: String, status: std::process::ExitStatus, stderr: String },
}

/// Run `device.agent` with `action=off` for node `name`; Ok only on exit 0.
pub async fn power_off(device: &FenceDevice, name: &str) -> Result<(), FenceError> {
    let agent = || device.agent.clone();
    let input =
        device.power_off_input(name).map_err(|e| FenceError::Device { node: name.to_string(), why: e.to_string() })?;
    let mut child = tokio::process::Command::new(&device.agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .dies_with_parent()
        .spawn()
        .map_err(|source| FenceError::CannotRun { agent: agent(), source })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await.map_err(|source| FenceError::CannotRun { agent: agent(), source })?;
    }
    let output = tokio::time::timeout(FENCE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| FenceError::Timeout { agent: agent() })?
        .map_err(|source| FenceError::CannotRun { agent: agent(), source })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(FenceError::Failed {
            agent: agent(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}
