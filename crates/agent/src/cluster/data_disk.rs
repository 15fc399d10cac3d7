//! The data directory's disk. The cluster database must always be able to take the next
//! entries, so the agent watches the file system it lives on (once a second):
//! - it keeps a reserve (`DATA_DIR/reserve`, `[data_disk] reserve_mb`, allocated for real) and
//!   gives it back the moment less than `low_free_mb` is left besides it: that buys the
//!   database room while the admin frees space;
//! - it says so: a warning in its log, the node's `data_disk_low` in the cluster database
//!   (`halo status`, `halo node show`, an event), and `/metrics`;
//! - it sheds what it can: while nearly full, workload and serial console logs keep only
//!   their last MiB (`bounded_log`);
//! - once there is room again (the low mark plus a margin, so it does not flap), it takes its
//!   reserve back and says so.
//!
//! If the database fails to write all the same, Raft stops on this node (openraft treats a
//! storage error as fatal) and this node could neither learn nor take part in decisions:
//! [`database_failed`] ends the agent then, which is safe (its roles stop with its lease and
//! fail over, as after a crash) and clear (the reason is its last word). Started again once
//! there is room, it catches up from the others; nothing acknowledged was only here.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use halo_core::command::Command;
use halo_core::state::DiskSpace;

use crate::cluster::agent::{Agent, LeaderRequest};
use crate::config::DataDiskLimits;

const CHECK: Duration = Duration::from_secs(1);
const RESERVE: &str = "reserve";
const MB: u64 = 1 << 20;

/// What the agent last saw of its data disk (for `/metrics` and the log bounds).
#[derive(Debug, Default)]
pub struct DataDisk {
    low: AtomicBool,
    free_bytes: AtomicU64,
    total_bytes: AtomicU64,
}

impl DataDisk {
    /// Nearly full: logs are kept shorter.
    pub fn low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Free (not counting the reserve) and total bytes, once seen.
    pub fn space(&self) -> Option<DiskSpace> {
        let total_bytes = self.total_bytes.load(Ordering::Relaxed);
        (total_bytes > 0).then(|| DiskSpace { free_bytes: self.free_bytes.load(Ordering::Relaxed), total_bytes })
    }

    fn record(&self, space: DiskSpace, low: bool) {
        self.free_bytes.store(space.free_bytes, Ordering::Relaxed);
        self.total_bytes.store(space.total_bytes, Ordering::Relaxed);
        self.low.store(low, Ordering::Relaxed);
    }
}

/// Space on the file system that holds `path`, as an unprivileged writer sees it.
pub fn space_of(path: &Path) -> std::io::Result<DiskSpace> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = st.fragment_size() as u64;
    Ok(DiskSpace { free_bytes: st.blocks_available() as u64 * unit, total_bytes: st.blocks() as u64 * unit })
}

/// Whether the disk is nearly full, given what was decided last time and the room there is
/// (free space plus the reserve, which is the agent's to give). Entering takes less than the
/// low mark; leaving takes the low mark plus a margin (the reserve, at least a tenth of the
/// mark), so a disk hovering at the mark does not flap.
pub fn judge(limits: &DataDiskLimits, was_low: bool, room_bytes: u64) -> bool {
    let low_mark = limits.low_free_mb * MB;
    let margin = (limits.reserve_mb * MB).max(low_mark / 10);
    if was_low { room_bytes < low_mark + margin } else { room_bytes < low_mark }
}

/// Watch the data disk for the life of the agent.
pub async fn run(agent: Arc<Agent>) {
    let limits = agent.config.data_disk;
    let data = agent.config.data_dir.clone();
    let mut low = false;
    let mut reported_at: Option<tokio::time::Instant> = None;
    loop {
        let seen = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || look(&data, &limits, low)).await
        };
        match seen {
            Ok(Ok(now)) => {
                if now.low != low {
                    if now.low {
                        tracing::warn!(
                            free_mb = now.space.free_bytes / MB,
                            "the data disk is nearly full ({}): reserve given back to the cluster database, \
                             logs kept short; free space in {}",
                            now.space,
                            data.display()
                        );
                    } else {
                        tracing::info!("the data disk has room again ({}): reserve taken back", now.space);
                    }
                    reported_at = None;
                }
                low = now.low;
                agent.data_disk.record(now.space, low);
                if let Some(e) = now.reserve_error {
                    tracing::debug!("cannot make the data disk reserve yet: {e}");
                }
                report(&agent, low.then_some(now.space), &mut reported_at);
            }
            Ok(Err(e)) => tracing::warn!("cannot check the data disk's free space in {}: {e}", data.display()),
            Err(e) => tracing::warn!("data disk check failed: {e}"),
        }
        tokio::time::sleep(CHECK).await;
    }
}

struct Seen {
    /// Free space, the reserve counted as free.
    space: DiskSpace,
    low: bool,
    reserve_error: Option<std::io::Error>,
}

/// One look at the disk, with the reserve given back or taken as the verdict says.
fn look(data: &Path, limits: &DataDiskLimits, was_low: bool) -> std::io::Result<Seen> {
    let reserve = data.join(RESERVE);
    let held = std::fs::symlink_metadata(&reserve).map(|m| m.len()).unwrap_or(0);
    let disk = space_of(data)?;
    let space = DiskSpace { free_bytes: disk.free_bytes + held, total_bytes: disk.total_bytes };
    let low = judge(limits, was_low, space.free_bytes);
    let wanted = if low { 0 } else { limits.reserve_mb * MB };
    let mut reserve_error = None;
    if held != wanted {
        if let Err(e) = std::fs::remove_file(&reserve)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e);
        }
        if wanted > 0
            && let Err(e) = make_reserve(&reserve, wanted)
        {
            let _ = std::fs::remove_file(&reserve);
            reserve_error = Some(e);
        }
    }
    Ok(Seen { space, low, reserve_error })
}

/// A file of `bytes` whose blocks are really allocated (not a sparse hole), so giving it back
/// frees that much.
fn make_reserve(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let len = i64::try_from(bytes).map_err(|_| std::io::Error::other("reserve too large"))?;
    nix::fcntl::posix_fallocate(&file, 0, len).map_err(std::io::Error::from)?;
    file.sync_all()
}

/// Tell the cluster when its record of this node's disk differs from what the agent sees
/// (whether it is low, not every byte), again every 5 s until it agrees.
fn report(agent: &Arc<Agent>, low: Option<DiskSpace>, reported_at: &mut Option<tokio::time::Instant>) {
    let Some(member) = agent.member() else { return };
    let state = member.reader.state();
    let Some(record) = state.nodes.get(&member.id) else { return };
    if record.data_disk_low.is_some() == low.is_some() {
        return;
    }
    if reported_at.is_some_and(|at| at.elapsed() < Duration::from_secs(5)) {
        return;
    }
    *reported_at = Some(tokio::time::Instant::now());
    let (agent, node) = (agent.clone(), member.id);
    tokio::spawn(async move {
        let command = Command::ReportDataDisk { node, low };
        if let Err(e) = agent.on_leader(LeaderRequest::Write(command)).await {
            tracing::debug!("reporting the data disk: {}", e);
        }
    });
}

/// Resolves, with the reason, once this node's Raft has stopped on an error (a write the
/// database could not make): the agent cannot go on as a member then.
pub async fn database_failed(agent: Arc<Agent>) -> String {
    let member = loop {
        if let Some(member) = agent.member() {
            break member.clone();
        }
        tokio::time::sleep(CHECK).await;
    };
    let failure = member.consensus.stopped_by_error().await;
    let space = space_of(&agent.config.data_dir).map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    format!(
        "{failure} ({space} in {}). This node stops: its roles stop with its lease and fail over. \
         Free space there (or fix the disk) and start the agent again; it catches up from the others",
        agent.config.data_dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearly_full_below_the_mark_and_back_only_past_the_margin() {
        let limits = DataDiskLimits { low_free_mb: 100, reserve_mb: 20 };
        assert!(!judge(&limits, false, 100 * MB));
        assert!(judge(&limits, false, 100 * MB - 1));
        // Once low, the reserve's worth more is needed to leave.
        assert!(judge(&limits, true, 119 * MB));
        assert!(!judge(&limits, true, 120 * MB));
        // Without a reserve, a tenth of the mark.
        let bare = DataDiskLimits { low_free_mb: 100, reserve_mb: 0 };
        assert!(judge(&bare, true, 109 * MB));
        assert!(!judge(&bare, true, 110 * MB));
    }

    #[test]
    fn the_reserve_is_real_given_back_when_low_and_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let disk = space_of(dir.path()).unwrap();
        // A mark well under what is free: not low, the reserve is made, allocated.
        let roomy = DataDiskLimits { low_free_mb: 1, reserve_mb: 2 };
        let seen = look(dir.path(), &roomy, false).unwrap();
        assert!(!seen.low && seen.reserve_error.is_none());
        let meta = std::fs::metadata(dir.path().join(RESERVE)).unwrap();
        assert_eq!(meta.len(), 2 * MB);
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= 2 * MB, "the reserve is a sparse file");
        // A mark above the whole disk: low, the reserve is given back.
        let tight = DataDiskLimits { low_free_mb: disk.total_bytes / MB + 1, reserve_mb: 2 };
        let seen = look(dir.path(), &tight, false).unwrap();
        assert!(seen.low);
        assert!(!dir.path().join(RESERVE).exists());
        let seen = look(dir.path(), &roomy, true).unwrap();
        assert!(!seen.low);
        assert!(dir.path().join(RESERVE).exists());
    }
}
