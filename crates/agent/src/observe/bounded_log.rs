//! Logs that other programs write into the data directory (a workload's output, a guest's
//! serial console) must not fill its disk: once a second, a log over `MAX_BYTES` keeps its
//! last `MAX_BYTES` as `NAME.1` and starts again empty. The writers hold their files open in
//! append mode (halo opens them so, and QEMU's chardev is `append=on`), so they go on writing
//! at the new end. A log is at most `MAX_BYTES` plus what its writer wrote in one second, and
//! its previous part `MAX_BYTES`. While the data disk is nearly full (`data_disk`), the bound
//! is `LOW_DISK_BYTES` for both, and longer previous parts go.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MAX_BYTES: u64 = 8 << 20;
/// The bound while the data disk is nearly full (`data_disk`), with no previous part kept.
pub const LOW_DISK_BYTES: u64 = 1 << 20;
const CHECK: Duration = Duration::from_secs(1);

/// Cut `path` back if it is over `max`: its last `max` bytes go to `path.1`. True if it was.
pub fn rotate_if_over(path: &Path, max: u64) -> std::io::Result<bool> {
    let len = std::fs::metadata(path)?.len();
    if len <= max {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    file.seek(SeekFrom::Start(len - max))?;
    let mut tail = Vec::with_capacity(max as usize);
    (&mut file).take(max).read_to_end(&mut tail)?;
    let previous = rotated(path);
    let mut out = std::fs::File::create(&previous)?;
    out.write_all(&tail)?;
    // Whatever was written since the read is lost with the cut: at most a moment's worth.
    file.set_len(0)?;
    Ok(true)
}

/// A previous part longer than `max` (kept while there was room) goes once the bound shrinks.
fn drop_long_previous(path: &Path, max: u64) -> std::io::Result<()> {
    let previous = rotated(path);
    match std::fs::metadata(&previous) {
        Ok(meta) if meta.len() > max => std::fs::remove_file(&previous),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".1");
    PathBuf::from(name)
}

/// The logs this agent's workloads and guests write.
fn logs(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(data.join("logs")) {
        found.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log")));
    }
    if let Ok(entries) = std::fs::read_dir(data.join("vms")) {
        found.extend(entries.flatten().map(|e| e.path().join("serial.log")).filter(|p| p.is_file()));
    }
    found
}

/// Keep every log under the data directory within its bound, for the life of the agent;
/// `low_disk` says whether the data disk is nearly full now.
pub async fn run(data: PathBuf, low_disk: impl Fn() -> bool) {
    loop {
        tokio::time::sleep(CHECK).await;
        let data = data.clone();
        let max = if low_disk() { LOW_DISK_BYTES } else { MAX_BYTES };
        let cut = tokio::task::spawn_blocking(move || {
            logs(&data)
                .into_iter()
                .filter_map(|path| match drop_long_previous(&path, max).and_then(|()| rotate_if_over(&path, max)) {
                    Ok(true) => Some(Ok(path)),
                    Ok(false) => None,
                    Err(e) => Some(Err(format!("{}: {e}", path.display()))),
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for result in cut {
            match result {
                Ok(path) => tracing::debug!("log {} over {} MiB: cut back", path.display(), max >> 20),
                Err(e) => tracing::warn!("cannot keep a log within its bound: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_appending_writer_goes_on_at_the_new_end_and_the_log_stays_bounded() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.log");
        let mut writer = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open");
        let mut peak = 0;
        for round in 0..50 {
            writer.write_all(&[b'a' + (round % 26) as u8; 1000]).expect("write");
            peak = peak.max(std::fs::metadata(&path).expect("meta").len());
            rotate_if_over(&path, 4000).expect("rotate");
        }
        assert!(peak <= 5000, "{peak}");
        let previous = std::fs::read(dir.path().join("w.log.1")).expect("previous part");
        assert_eq!(previous.len(), 4000);
        // The writer's next line lands at the start of the cut file, not after a hole.
        writer.write_all(b"next\n").expect("write");
        let now = std::fs::read(&path).expect("log");
        assert!(now.ends_with(b"next\n") && !now.contains(&0), "{} bytes", now.len());
        // The bound shrinks (a nearly full disk): the longer previous part goes.
        drop_long_previous(&path, 5000).expect("kept");
        assert!(dir.path().join("w.log.1").exists());
        drop_long_previous(&path, 1000).expect("dropped");
        assert!(!dir.path().join("w.log.1").exists());
        drop_long_previous(&path, 1000).expect("nothing to drop");
    }
}
