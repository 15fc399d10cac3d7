//! What halo asks of a VM's QEMU, over QMP: is it up, is it healthy, power it down, take an
//! incoming migration, migrate, save, resume. Each call opens its own connection (QEMU serves
//! one QMP client at a time, and the executor runs one operation per VM at a time) and has a
//! time limit. Errors are [`VmError`]s: sentences for the role's detail, typed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use crate::clock;
use crate::safe_fs::Dir;
use crate::workload::vm::error::{GuestDown, VmError};
use crate::workload::vm::qmp::Qmp;
use crate::workload::vm::tls::{self, MigrationTls};

/// One QMP call, unless an operation says otherwise.
const CALL: Duration = Duration::from_secs(5);
/// How often a migration under way is asked how it stands: its end is on the guest's pause
/// (the target resumes once the source has seen it complete), and a QMP query on a local
/// socket costs a fraction of a millisecond.
const POLL: Duration = Duration::from_millis(2);

type Conn = Qmp<UnixStream>;

/// QEMU's figures for a finished transfer, and when the guest stopped running (wall clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub total_ms: u64,
    pub downtime_ms: u64,
    pub paused_at_ms: u64,
}

/// Connect, retrying while QEMU is still creating its socket, until `limit`.
async fn connect(qmp: &Path, limit: Duration) -> Result<Conn, VmError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match Qmp::connect(qmp, left.min(CALL)).await {
            Ok(conn) => return Ok(conn),
            Err(e) if left.is_zero() || tokio::time::Instant::now() >= deadline => {
                return Err(VmError::Unreachable(e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn call(conn: &mut Conn, command: &str, arguments: Option<Value>) -> Result<Value, VmError> {
    Ok(conn.execute(command, arguments, CALL).await?)
}

async fn status(conn: &mut Conn) -> Result<String, VmError> {
    let value = call(conn, "query-status", None).await?;
    value["status"].as_str().map(str::to_string).ok_or_else(|| VmError::Unexpected {
        command: "query-status",
        what: "a status",
        answer: value.to_string(),
    })
}

/// Waits until QEMU reports `wanted` (`running` for a boot or a restore, `inmigrate` for a
/// live migration's target), failing at once on a state it cannot leave by itself.
pub async fn wait_for_status(qmp: &Path, wanted: &'static str, limit: Duration) -> Result<(), VmError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut conn = connect(qmp, limit).await?;
    loop {
        let now = status(&mut conn).await?;
        if now == wanted {
            return Ok(());
        }
        if let Some(down) = GuestDown::of(&now) {
            return Err(VmError::Guest(down));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(VmError::StillIn { now, wanted, ms: limit.as_millis() });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A quick migration's target: stream the saved state from `file` (opened without following
/// a link planted on the shared storage) into QEMU through `socket`, and once QEMU has read it
/// (the guest was saved paused, so it comes back paused), let it run.
pub async fn restore(qmp: &Path, socket: &Path, file: &Path, limit: Duration) -> Result<(), VmError> {
    let deadline = tokio::time::Instant::now() + limit;
    let state = {
        let file = file.to_path_buf();
        tokio::task::spawn_blocking(move || crate::safe_fs::open_in_own_dir(&file))
            .await?
            .map_err(|e| VmError::io("cannot read the saved guest", e))?
    };
    let mut conn = connect(qmp, limit).await?;
    remove_socket(socket)?;
    call(&mut conn, "migrate-incoming", Some(json!({ "uri": format!("unix:{}", socket.display()) }))).await?;
    let feed = async {
        let mut stream = UnixStream::connect(socket).await.map_err(|e| VmError::io("cannot reach QEMU", e))?;
        let streaming = || format!("streaming {} into QEMU", file.display());
        tokio::io::copy(&mut tokio::fs::File::from_std(state), &mut stream)
            .await
            .map_err(|e| VmError::io(streaming(), e))?;
        tokio::io::AsyncWriteExt::shutdown(&mut stream).await.map_err(|e| VmError::io(streaming(), e))
    };
    let fed = tokio::time::timeout_at(deadline, feed)
        .await
        .unwrap_or(Err(VmError::RestoreTimedOut { ms: limit.as_millis() }));
    let _ = remove_socket(socket);
    fed?;
    loop {
        match status(&mut conn).await?.as_str() {
            "inmigrate" | "prelaunch" | "restore-vm" if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            "paused" | "running" => break,
            other => {
                return Err(
                    GuestDown::of(other).map_or(VmError::RestoreTimedOut { ms: limit.as_millis() }, VmError::Guest)
                );
            }
        }
    }
    drop(conn);
    resume(qmp, limit).await
}

/// A guest that is not running: why, from QEMU's state.
fn not_running(state: String) -> VmError {
    GuestDown::of(&state).map_or(VmError::NotRunning(state), VmError::Guest)
}

/// Healthy means QEMU answers and the guest runs.
pub async fn health(qmp: &Path, limit: Duration) -> Result<(), VmError> {
    let check = async {
        let mut conn = connect(qmp, limit).await?;
        let now = status(&mut conn).await?;
        if now == "running" { Ok(()) } else { Err(not_running(now)) }
    };
    tokio::time::timeout(limit, check).await.unwrap_or(Err(VmError::NoAnswer { ms: limit.as_millis() }))
}

/// Presses the ACPI power button: a guest that listens shuts itself down.
pub async fn powerdown(qmp: &Path) -> Result<(), VmError> {
    let mut conn = connect(qmp, CALL).await?;
    call(&mut conn, "system_powerdown", None).await.map(|_| ())
}

/// Lets the paused guest run: the end of a migration.
pub async fn resume(qmp: &Path, limit: Duration) -> Result<(), VmError> {
    let mut conn = connect(qmp, limit).await?;
    if status(&mut conn).await? != "running" {
        call(&mut conn, "cont", None).await?;
    }
    match status(&mut conn).await? {
        running if running == "running" => Ok(()),
        other => Err(not_running(other)),
    }
}

/// A live migration's target: listen on `host` (a port the kernel picks) and say where. The
/// guest stays paused once it arrives (QEMU started with `-S`), and its disks are taken over
/// only when it resumes (`late-block-activate`), so nothing runs here before halo says so.
pub async fn prepare_incoming(qmp: &Path, host: &str, tls: &MigrationTls, limit: Duration) -> Result<String, VmError> {
    let mut conn = connect(qmp, limit).await?;
    use_tls(&mut conn, tls).await?;
    let caps = json!({ "capabilities": [
        { "capability": "return-path", "state": true },
        { "capability": "late-block-activate", "state": true },
    ]});
    call(&mut conn, "migrate-set-capabilities", Some(caps)).await?;
    call(&mut conn, "migrate-incoming", Some(json!({ "uri": format!("tcp:{host}:0") }))).await?;
    let info = call(&mut conn, "query-migrate", None).await?;
    let port = info["socket-address"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|a| a["port"].as_str().map(str::to_string).or_else(|| a["port"].as_u64().map(|p| p.to_string())))
        .ok_or_else(|| VmError::Unexpected {
            command: "query-migrate",
            what: "the port it listens on",
            answer: info.to_string(),
        })?;
    Ok(format!("tcp:{host}:{port}"))
}

/// Live migration from this (the source) QEMU to `uri`. Ends with the guest paused here for
/// good (`Ok`), or running here as before (`Err`): on failure, on `cancel`, or past `limit`.
pub async fn migrate(
    qmp: &Path,
    uri: &str,
    tls: &MigrationTls,
    bandwidth_mb: Option<u64>,
    limit: Duration,
    cancel: oneshot::Receiver<()>,
) -> Result<Transfer, VmError> {
    let mut conn = connect(qmp, CALL).await?;
    let mut cancel = cancel;
    previous_ended(&mut conn, limit, &mut cancel).await?;
    let caps = json!({ "capabilities": [{ "capability": "return-path", "state": true }] });
    call(&mut conn, "migrate-set-capabilities", Some(caps)).await?;
    // As asked, else unthrottled (QEMU's default is 128 MiB/s); at most 50 ms of pause at the end.
    let bandwidth = bandwidth_mb.map_or(10u64 << 30, |mb| mb << 20);
    let params = json!({ "max-bandwidth": bandwidth, "downtime-limit": 50 });
    call(&mut conn, "migrate-set-parameters", Some(params)).await?;
    use_tls(&mut conn, tls).await?;
    call(&mut conn, "migrate", Some(json!({ "uri": uri }))).await?;
    follow(&mut conn, limit, cancel, None).await
}

/// Loads a migration's TLS credentials into QEMU and makes its next migration use them.
async fn use_tls(conn: &mut Conn, tls: &MigrationTls) -> Result<(), VmError> {
    let written = {
        let tls = tls.clone();
        tokio::task::spawn_blocking(move || tls.write()).await?
    };
    let loaded = match written {
        Err(e) => Err(VmError::io(format!("cannot write the migration's TLS credentials in {}", tls.dir.display()), e)),
        Ok(()) => load_tls(conn, tls).await,
    };
    // Removing files is disk work: off the runtime, like writing them.
    let removing = tls.clone();
    tokio::task::spawn_blocking(move || removing.remove()).await?;
    loaded?;
    call(conn, "migrate-set-parameters", Some(tls.parameters())).await.map(drop)
}

async fn load_tls(conn: &mut Conn, tls: &MigrationTls) -> Result<(), VmError> {
    // An earlier migration's objects: usually absent (QEMU says "not found"), and one that
    // could not go would make the object-add below fail, saying so.
    for id in [tls::AUTHZ_ID, tls::CREDS_ID] {
        let _ = call(conn, "object-del", Some(json!({ "id": id }))).await;
    }
    for object in tls.objects() {
        conn.execute("object-add", Some(object), CALL).await.map_err(VmError::TlsLoad)?;
    }
    Ok(())
}

/// A stale socket file from an earlier run is in the way of a new listener.
fn remove_socket(socket: &Path) -> Result<(), VmError> {
    match std::fs::remove_file(socket) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VmError::io(format!("cannot remove {}", socket.display()), e)),
    }
}

/// Quick migration's first half: pause the guest and save its whole state to `file` in
/// `shared`'s state directory. QEMU streams it to `socket` (in the VM's private directory),
/// and halo writes and syncs the file (0600, never through a link planted there: `safe_fs`),
/// so "completed" means the state is safely on disk.
pub async fn save(
    qmp: &Path,
    socket: &Path,
    shared: std::path::PathBuf,
    file: &str,
    limit: Duration,
    cancel: oneshot::Receiver<()>,
) -> Result<Transfer, VmError> {
    let partial = format!("{file}.part");
    let (dir, out) = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || {
            let dir = Dir::under(&shared, halo_core::migration::STATE_DIR, true)?;
            let out = dir.create(&partial)?;
            Ok::<_, std::io::Error>((Arc::new(dir), out))
        })
        .await?
        .map_err(|e| VmError::io("cannot save the guest's state", e))?
    };
    remove_socket(socket)?;
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| VmError::io(format!("cannot listen on {}", socket.display()), e))?;
    let shown = dir.path().join(&partial);
    let writer = tokio::spawn(receive_state(listener, tokio::fs::File::from_std(out), shown));
    let mut conn = connect(qmp, CALL).await?;
    let mut cancel = cancel;
    previous_ended(&mut conn, limit, &mut cancel).await?;
    // A QEMU that once received a live migration still has the return path on; a file
    // answers nothing on it.
    let caps = json!({ "capabilities": [{ "capability": "return-path", "state": false }] });
    call(&mut conn, "migrate-set-capabilities", Some(caps)).await?;
    // Nor TLS: the stream goes to halo, on this node.
    call(&mut conn, "migrate-set-parameters", Some(tls::plain_parameters())).await?;
    let paused_at_ms = clock::wall_ms();
    call(&mut conn, "stop", None).await?;
    let uri = json!({ "uri": format!("unix:{}", socket.display()) });
    let result = match call(&mut conn, "migrate", Some(uri)).await {
        Ok(_) => follow(&mut conn, limit, cancel, Some(paused_at_ms)).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        writer.abort();
    }
    let written = writer.await.map_err(VmError::from).and_then(|r| r);
    let _ = remove_socket(socket);
    let in_dir = |step: fn(&Dir, &str, &str) -> std::io::Result<()>| {
        let (dir, partial, file) = (dir.clone(), partial.clone(), file.to_string());
        tokio::task::spawn_blocking(move || step(&dir, &partial, &file))
    };
    match (result, written) {
        (Ok(transfer), Ok(())) => {
            in_dir(|dir, partial, file| dir.rename(partial, file))
                .await?
                .map_err(|e| VmError::io("cannot save the guest's state", e))?;
            Ok(transfer)
        }
        (Err(e), _) | (Ok(_), Err(e)) => {
            if let Ok(Err(e)) = in_dir(|dir, partial, _| dir.remove(partial)).await {
                tracing::warn!("could not remove a partial guest state: {e}");
            }
            // The guest goes on here as before.
            let _ = call(&mut conn, "cont", None).await;
            Err(e)
        }
    }
}

/// An earlier migration QEMU is still letting go of (a cancelled connect to a firewalled port
/// lingers until the kernel gives up on it) blocks a new one: wait for it, within `limit`.
async fn previous_ended(conn: &mut Conn, limit: Duration, cancel: &mut oneshot::Receiver<()>) -> Result<(), VmError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let info = call(conn, "query-migrate", None).await?;
        let status = info["status"].as_str().unwrap_or("none");
        if matches!(status, "none" | "completed" | "failed" | "cancelled") {
            return Ok(());
        }
        if cancel.try_recv().is_ok() {
            return Err(VmError::CalledOff);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(VmError::EarlierMigration(status.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn receive_state(
    listener: tokio::net::UnixListener,
    mut out: tokio::fs::File,
    path: PathBuf,
) -> Result<(), VmError> {
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .map_err(|_| VmError::NeverConnected)?
        .map_err(|e| VmError::io("accepting QEMU's state stream", e))?;
    tokio::io::copy(&mut stream, &mut out).await.map_err(|e| VmError::io(format!("writing {}", path.display()), e))?;
    out.sync_all().await.map_err(|e| VmError::io(format!("syncing {}", path.display()), e))
}

/// Follows a migration until it ends. Cancelled or past its limit, it is cancelled in QEMU,
/// which resumes the guest; one that completed anyway is reported completed.
async fn follow(
    conn: &mut Conn,
    limit: Duration,
    mut cancel: oneshot::Receiver<()>,
    paused_at_ms: Option<u64>,
) -> Result<Transfer, VmError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut why_cancelled: Option<VmError> = None;
    let mut cancelled_at = tokio::time::Instant::now();
    loop {
        let info = call(conn, "query-migrate", None).await?;
        match info["status"].as_str().unwrap_or("") {
            // Cancelling cannot end in "completed", and the guest runs on here; QEMU may take
            // minutes to let go of a connection that never opened (a firewalled port).
            "cancelling" if why_cancelled.is_some() && cancelled_at.elapsed() > Duration::from_secs(2) => {
                return Err(why_cancelled.unwrap_or(VmError::Cancelled));
            }
            "completed" => {
                let total_ms = info["total-time"].as_u64().unwrap_or(0);
                let downtime_ms = info["downtime"].as_u64().unwrap_or(0);
                let paused_at_ms = paused_at_ms.unwrap_or_else(|| clock::wall_ms().saturating_sub(downtime_ms));
                return Ok(Transfer { total_ms, downtime_ms, paused_at_ms });
            }
            "failed" => {
                let why = info["error-desc"].as_str().unwrap_or("no reason given");
                return Err(VmError::MigrationFailed(why.to_string()));
            }
            "cancelled" => return Err(why_cancelled.unwrap_or(VmError::Cancelled)),
            _ => {}
        }
        if why_cancelled.is_none() {
            let past = tokio::time::Instant::now() >= deadline;
            if past || cancel.try_recv().is_ok() {
                why_cancelled = Some(if past { VmError::TimedOut { s: limit.as_secs() } } else { VmError::CalledOff });
                cancelled_at = tokio::time::Instant::now();
                call(conn, "migrate_cancel", None).await?;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
