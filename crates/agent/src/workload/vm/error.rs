//! Why an operation on a VM's QEMU failed: each a sentence for the role's detail, typed so
//! the executor can tell a guest that went down from a QEMU that does not answer.

use super::qmp::QmpError;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("QEMU's QMP socket does not answer: {0}")]
    Unreachable(QmpError),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("QEMU did not answer QMP within {ms} ms")]
    NoAnswer { ms: u128 },
    #[error("QEMU answered {command} without {what}: {answer}")]
    Unexpected { command: &'static str, what: &'static str, answer: String },
    /// The guest is down, or stopped for a reason it cannot leave by itself.
    #[error("{0}")]
    Guest(GuestDown),
    #[error("QEMU is '{0}', not running the guest")]
    NotRunning(String),
    #[error("QEMU is still '{now}' after {ms} ms, not '{wanted}'")]
    StillIn { now: String, wanted: &'static str, ms: u128 },
    #[error("the saved state was not read within {ms} ms")]
    RestoreTimedOut { ms: u128 },
    #[error("QEMU cannot load the migration's TLS credentials: {0}")]
    TlsLoad(QmpError),
    /// The cluster's record of the migration names a target this node will not send to.
    #[error("{0}")]
    BadTarget(String),
    #[error("this node is not a member of the cluster: it has no certificate to migrate with")]
    NoCertificate,
    #[error("QEMU never connected to save its state")]
    NeverConnected,
    #[error("an earlier migration is still '{0}' in QEMU")]
    EarlierMigration(String),
    #[error("the migration was called off")]
    CalledOff,
    #[error("the migration was cancelled")]
    Cancelled,
    #[error("the migration did not finish within {s} s and was cancelled")]
    TimedOut { s: u64 },
    #[error("QEMU's migration failed: {0}")]
    MigrationFailed(String),
    /// A file or socket step on this node.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A Unix socket path must fit in `sockaddr_un`.
    #[error("QMP socket path {} is too long: use a shorter data directory", .0.display())]
    PathTooLong(std::path::PathBuf),
    /// A step run off the async runtime did not finish (the agent is stopping).
    #[error("a background step ended early: {0}")]
    Task(String),
}

impl VmError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        VmError::Io { what: what.into(), source }
    }
}

impl From<tokio::task::JoinError> for VmError {
    fn from(e: tokio::task::JoinError) -> Self {
        VmError::Task(e.to_string())
    }
}

/// A QEMU run state that means the guest is not running and will not by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestDown {
    #[error("the guest panicked")]
    Panicked,
    #[error("the guest was paused on a disk I/O error")]
    IoError,
    #[error("QEMU stopped the guest on an internal error")]
    InternalError,
    #[error("the guest shut down")]
    ShutDown,
    #[error("the guest's watchdog fired")]
    Watchdog,
    #[error("the guest is not running (QEMU state '{0}')")]
    Other(String),
}

impl GuestDown {
    /// What a QEMU run state means for a guest that should be running: none while it runs
    /// or is on its way there.
    pub fn of(status: &str) -> Option<Self> {
        match status {
            "running" | "inmigrate" | "prelaunch" | "restore-vm" | "finish-migrate" => None,
            "guest-panicked" => Some(GuestDown::Panicked),
            "io-error" => Some(GuestDown::IoError),
            "internal-error" => Some(GuestDown::InternalError),
            "shutdown" => Some(GuestDown::ShutDown),
            "watchdog" => Some(GuestDown::Watchdog),
            other => Some(GuestDown::Other(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_on_the_way_are_not_failures_and_the_rest_are_named() {
        for state in ["running", "inmigrate", "prelaunch", "restore-vm", "finish-migrate"] {
            assert_eq!(GuestDown::of(state), None, "{state}");
        }
        assert_eq!(GuestDown::of("guest-panicked"), Some(GuestDown::Panicked));
        assert_eq!(
            VmError::Guest(GuestDown::of("paused").expect("down")).to_string(),
            "the guest is not running (QEMU state 'paused')"
        );
    }
}
