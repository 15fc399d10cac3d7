//! A node's answers to survey probes: its facts, its connections to the other nodes, and the
//! shared storage steps (write, read back, lock) done on its own file system view.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use halo_core::validation::survey::{NodeFacts, Reach, StorageError, StorageFault};
use sha2::Digest;

use crate::config::AgentConfig;
use crate::safe_fs::Dir;
use crate::workload::{ocf, vm};
use crate::{clock, host};
use halo_api::validation::{ProbeReply, ProbeRequest, ReachTarget, TEST_DIR};

/// One connection attempt may take this long before it counts as lost.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// A storage step that takes longer is reported as failed (a hung network file system must
/// not hang the survey).
const STORAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a survey may hold a test lock.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// Test locks this node holds, by file, with a token so that a late expiry never releases a
/// newer lock on the same file.
#[derive(Default, Clone)]
pub struct HeldLocks(Arc<Mutex<HashMap<PathBuf, (u64, std::fs::File)>>>);

/// Answer one probe as this node (`config`), holding test locks in `locks`.
pub async fn answer(config: &AgentConfig, locks: &HeldLocks, request: ProbeRequest) -> ProbeReply {
    match request {
        ProbeRequest::Facts { ocf, fence, files } => {
            ProbeReply::Facts(Box::new(facts(config, &ocf, &fence, files).await))
        }
        ProbeRequest::Reach { targets, attempts } => {
            ProbeReply::Reach(reach(config, targets, attempts.clamp(1, 10)).await)
        }
        ProbeRequest::Write { path, file } => replied(storage(&path, &file, write).await),
        ProbeRequest::Read { path, file } => replied(storage(&path, &file, read).await),
        ProbeRequest::Remove { path, file } => replied(storage(&path, &file, remove).await),
        ProbeRequest::Lock { path, file, hold_ms } => lock(locks, &path, &file, hold_ms).await,
        ProbeRequest::Unlock { path, file } => {
            if let Ok(mut held) = locks.0.lock() {
                held.remove(&test_file(&path, &file));
            }
            ProbeReply::Done
        }
    }
}

async fn facts(config: &AgentConfig, ocf_kinds: &[String], fence_agents: &[String], files: Vec<String>) -> NodeFacts {
    // Bounded like a storage step: a hung network file system must not hang the survey.
    let look = tokio::task::spawn_blocking(move || files.into_iter().filter(|f| !Path::new(f).is_file()).collect());
    let files_missing = match tokio::time::timeout(STORAGE_TIMEOUT, look).await {
        Ok(Ok(missing)) => missing,
        _ => vec![format!("(the files did not answer within {} s)", STORAGE_TIMEOUT.as_secs())],
    };
    let qemu = tokio::task::spawn_blocking(vm::qemu_version).await.ok().flatten();
    // The KVM probe boots firmware once per agent (at start, off the runtime); later it is cached.
    let kvm = qemu.is_some() && tokio::task::spawn_blocking(vm::kvm_works).await.unwrap_or(false);
    let root = ocf::ocf_root();
    let interfaces =
        config.networks.iter().map(|a| a.parse::<SocketAddr>().ok().and_then(|a| host::interface_of(a.ip()))).collect();
    NodeFacts {
        name: config.name.clone(),
        witness: config.witness,
        networks: config.networks.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        os: host::os_name(),
        kernel: host::kernel_release(),
        arch: std::env::consts::ARCH.into(),
        qemu,
        kvm,
        ocf_installed: root.join("resource.d").is_dir(),
        ocf_root: root.display().to_string(),
        ocf_missing: ocf_kinds
            .iter()
            .filter(|k| {
                halo_core::resource_kind::ResourceKind::parse(k).map_or(true, |kind| ocf::locate(&kind).is_err())
            })
            .cloned()
            .collect(),
        fence_missing: fence_agents.iter().filter(|a| host::find_program(a).is_none()).cloned().collect(),
        files_missing,
        memory_total_mb: host::meminfo_mb("MemTotal").unwrap_or(0),
        memory_available_mb: host::meminfo_mb("MemAvailable").unwrap_or(0),
        data_dir: config.data_dir.display().to_string(),
        disk_free_mb: host::free_space_mb(&config.data_dir).unwrap_or(0),
        interfaces,
        wall_ms: clock::wall_ms(),
        watchdog: config.watchdog.as_ref().map(|p| p.display().to_string()),
        watchdog_present: Path::new("/dev/watchdog").exists(),
    }
}

/// Every target at once; each one's attempts one after the other.
async fn reach(config: &AgentConfig, targets: Vec<ReachTarget>, attempts: u32) -> Vec<Reach> {
    let probes = targets.into_iter().map(|t| {
        let from = config.networks.get(t.network.wrapping_sub(1)).cloned();
        async move {
            let mut result = Reach {
                network: t.network,
                to: t.node,
                from_address: from.clone().unwrap_or_default(),
                to_address: t.address.clone(),
                attempts,
                ..Reach::default()
            };
            let (Some(from), Ok(to)) =
                (from.and_then(|f| f.parse::<SocketAddr>().ok()), t.address.parse::<SocketAddr>())
            else {
                result.error = Some(format!("this node has no network {} to test from", t.network));
                return result;
            };
            let mut rtts = Vec::new();
            for _ in 0..attempts {
                match connect(from, to).await {
                    Ok(rtt) => rtts.push(rtt.as_micros() as u64),
                    Err(e) => result.error = Some(e),
                }
            }
            rtts.sort_unstable();
            result.answered = rtts.len() as u32;
            result.rtt_us = rtts.get(rtts.len() / 2).copied();
            if result.answered == attempts {
                result.error = None;
            }
            result
        }
    });
    futures::future::join_all(probes).await
}

/// How long a TCP connection from `from`'s IP to `to` takes to open.
async fn connect(from: SocketAddr, to: SocketAddr) -> Result<Duration, String> {
    let socket = if to.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
        .map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::new(from.ip(), 0)).map_err(|e| format!("cannot use {}: {e}", from.ip()))?;
    let started = Instant::now();
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to)).await {
        Ok(Ok(_stream)) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis())),
    }
}

fn test_file(path: &str, file: &str) -> PathBuf {
    Path::new(path).join(TEST_DIR).join(file)
}

/// Run one storage step off the runtime, bounded in time, on `path`'s test directory.
async fn storage<T: Send + 'static>(
    path: &str,
    file: &str,
    step: impl FnOnce(&Path, &str) -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    if file.contains('/') || file.starts_with('.') || file.is_empty() {
        return Err(io_error(format!("'{file}' is not a test file name")));
    }
    let root = PathBuf::from(path);
    let file = file.to_string();
    let run = tokio::task::spawn_blocking(move || {
        if !root.is_dir() {
            let why = if root.exists() { "is not a directory" } else { "does not exist" };
            return Err(StorageError { fault: StorageFault::Missing, message: format!("{} {why}", root.display()) });
        }
        step(&root, &file)
    });
    match tokio::time::timeout(STORAGE_TIMEOUT, run).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(io_error(e.to_string())),
        Err(_) => Err(io_error(format!("{path} did not answer within {} s", STORAGE_TIMEOUT.as_secs()))),
    }
}

fn replied(result: Result<ProbeReply, StorageError>) -> ProbeReply {
    result.unwrap_or_else(ProbeReply::Failed)
}

fn io_error(message: String) -> StorageError {
    StorageError { fault: StorageFault::Io, message }
}

/// Messages already name the path (`safe_fs`).
fn classify(e: std::io::Error) -> StorageError {
    use std::io::ErrorKind;
    let fault = match e.kind() {
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => StorageFault::ReadOnly,
        _ => StorageFault::Io,
    };
    StorageError { fault, message: e.to_string() }
}

/// The test directory inside `root`, never through a link planted there (`safe_fs`).
fn test_dir(root: &Path, create: bool) -> Result<Dir, StorageError> {
    Dir::under(root, TEST_DIR, create).map_err(classify)
}

/// Content no earlier run and no other node could have left behind.
fn write(root: &Path, file: &str) -> Result<ProbeReply, StorageError> {
    let mut content = vec![0u8; 4096];
    rand::Rng::fill(&mut rand::rng(), &mut content[..]);
    let started = Instant::now();
    let dir = test_dir(root, true)?;
    let mut f = dir.create(file).map_err(classify)?;
    f.write_all(&content).and_then(|()| f.sync_all()).map_err(classify)?;
    let write_us = started.elapsed().as_micros() as u64;
    let free_mb = host::free_space_mb(dir.path()).map_err(classify)?;
    Ok(ProbeReply::Written { sha256: hex::encode(sha2::Sha256::digest(&content)), write_us, free_mb })
}

fn read(root: &Path, file: &str) -> Result<ProbeReply, StorageError> {
    let bytes = test_dir(root, false)?.read(file).map_err(|e| io_error(e.to_string()))?;
    Ok(ProbeReply::Read { sha256: hex::encode(sha2::Sha256::digest(&bytes)) })
}

fn remove(root: &Path, file: &str) -> Result<ProbeReply, StorageError> {
    match Dir::under(root, TEST_DIR, false) {
        Ok(dir) => dir.remove(file).map_err(classify)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ProbeReply::Done),
        Err(e) => return Err(classify(e)),
    }
    // Other nodes' files may still be there; the last one out removes the directory.
    Dir::remove_if_empty(root, TEST_DIR);
    Ok(ProbeReply::Done)
}

/// An open-file-description lock (what QEMU takes on its disk images), exclusive over the whole
/// file, without waiting. A granted lock is kept open until `Unlock` or `hold_ms`, whichever
/// comes first.
async fn lock(locks: &HeldLocks, path: &str, file: &str, hold_ms: u64) -> ProbeReply {
    let taken = storage(path, file, |root, file| {
        let dir = test_dir(root, true)?;
        let target = dir.path().join(file);
        let f = dir.open_rw(file).map_err(classify)?;
        let whole_file = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        match nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_OFD_SETLK(&whole_file)) {
            Ok(_) => Ok(Some(f)),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(None),
            Err(e) => Err(io_error(format!("{}: locking: {e}", target.display()))),
        }
    })
    .await;
    let held = match taken {
        Ok(Some(f)) => f,
        Ok(None) => return ProbeReply::Locked { granted: false },
        Err(e) => return ProbeReply::Failed(e),
    };
    let key = test_file(path, file);
    let token = rand::random::<u64>();
    if let Ok(mut held_now) = locks.0.lock() {
        held_now.insert(key.clone(), (token, held));
    }
    let locks = locks.clone();
    let hold = Duration::from_millis(hold_ms).min(MAX_HOLD);
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        if let Ok(mut locks) = locks.0.lock()
            && locks.get(&key).is_some_and(|(t, _)| *t == token)
        {
            locks.remove(&key);
        }
    });
    ProbeReply::Locked { granted: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn storage_steps_write_read_lock_and_clean_up_after_themselves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().display().to_string();
        let Ok(ProbeReply::Written { sha256, .. }) = storage(&path, "a", write).await else { panic!("write") };
        let Ok(ProbeReply::Read { sha256: read }) = storage(&path, "a", read).await else { panic!("read") };
        assert_eq!(sha256, read);

        // Two holders in one process still conflict: the lock belongs to the open file.
        let (mine, theirs) = (HeldLocks::default(), HeldLocks::default());
        assert!(matches!(lock(&mine, &path, "l", 10_000).await, ProbeReply::Locked { granted: true }));
        assert!(matches!(lock(&theirs, &path, "l", 10_000).await, ProbeReply::Locked { granted: false }));
        mine.0.lock().expect("locks").clear();
        assert!(matches!(lock(&theirs, &path, "l", 10_000).await, ProbeReply::Locked { granted: true }));
        theirs.0.lock().expect("locks").clear();

        for file in ["a", "l"] {
            assert!(matches!(storage(&path, file, remove).await, Ok(ProbeReply::Done)));
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "the test directory is gone");

        let missing = storage("/no/such/share", "a", write).await.expect_err("missing");
        assert_eq!(missing.fault, StorageFault::Missing);
        assert!(storage(&path, "../escape", write).await.is_err(), "file names stay in the test directory");

        // A test directory planted as a link to elsewhere is refused, and nothing lands there.
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(TEST_DIR)).expect("link");
        let refused = storage(&path, "a", write).await.expect_err("refused");
        assert!(refused.message.contains("symbolic link"), "{}", refused.message);
        assert_eq!(std::fs::read_dir(elsewhere.path()).expect("dir").count(), 0);
    }
}
