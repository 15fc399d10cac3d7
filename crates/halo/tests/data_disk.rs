//! A node whose data disk fills up, with real agents: n3's data directory is a small tmpfs
//! (64 MiB; nearly full under 24 MiB, an 8 MiB reserve). Nearly full, it says so everywhere,
//! gives its reserve back and goes on working; with room again it takes the reserve back;
//! completely full, it stops alone with the reason, the others go on, and started again with
//! room it catches up.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const MIB: u64 = 1 << 20;

/// A tmpfs mounted at a node's data directory, unmounted (lazily: the agent may still hold it)
/// when the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mb: u64) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m,mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount");
        assert!(out.status.success(), "mount tmpfs: {}", text(&out));
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks_available() as u64 * st.fragment_size() as u64
}

/// Append up to `bytes` of zeros to `path` (really written, not a hole); stops early, without
/// an error, when the disk is full. Returns what was written.
fn fill(path: &Path, bytes: u64) -> u64 {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min((bytes - written) as usize);
        if file.write_all(&chunk[..n]).is_err() {
            break;
        }
        written += n as u64;
    }
    let _ = file.sync_all();
    written
}

fn n3(status: &serde_json::Value) -> serde_json::Value {
    node(status, "n3").clone()
}

fn events(c: &Cluster) -> String {
    text(&c.halo(&["events"]))
}

/// n3's own copy of the cluster (`status --local` against its API) has role `name`.
fn n3_has_role(c: &Cluster, name: &str) -> bool {
    let endpoint = format!("https://{}", c.nodes[2].api);
    let out = c.halo_env(&["status", "--local", "--json"], &[("HALO_ENDPOINT", &endpoint)]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["roles"].as_array().is_some_and(|roles| roles.iter().any(|r| r["name"] == name))
}

/// A stopped role carrying `payload` bytes of parameters (in pieces: one command-line
/// argument holds at most 128 KiB).
fn create_role(c: &Cluster, name: &str, payload: usize) -> std::process::Output {
    let mut args: Vec<String> =
        ["role", "create", name, "--type", "process", "--param", "command=sleep 600", "--stopped"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for (i, piece) in (0..payload).step_by(100_000).enumerate() {
        args.extend(["--param".into(), format!("blob{i}={}", "x".repeat((payload - piece).min(100_000)))]);
    }
    c.halo(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn a_nearly_full_data_disk_is_reported_and_survived_and_a_full_one_stops_only_its_node() {
    let mut c = Cluster::new(187, 3, 0);
    let disk = c.nodes[2].data_dir.clone();
    let _tmpfs = Tmpfs::mount(&disk, 64);
    c.nodes[2].config_toml = Some("[data_disk]\nlow_free_mb = 24\nreserve_mb = 8\n".into());
    c.form();
    let reserve = disk.join("reserve");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::metadata(&reserve).is_ok_and(|m| m.len() == 8 * MIB)),
        "n3 made no 8 MiB reserve: {}",
        c.log(2)
    );
    assert_eq!(c.metric(2, "halo_data_disk_low"), Some(0.0));

    // Nearly full: 12 MiB left besides the reserve.
    let filler = disk.join("filler");
    let free = free_bytes(&disk);
    assert!(free > 24 * MIB, "the tmpfs has only {} MiB free to begin with", free / MIB);
    fill(&filler, free - 12 * MIB);
    let low = |s: &serde_json::Value| n3(s)["data_disk_low"]["free_bytes"].as_u64().is_some();
    assert!(
        c.wait_status(Duration::from_secs(15), low),
        "n3's nearly full disk is not in the status: {:?}",
        c.status()
    );
    assert!(!reserve.exists(), "the reserve must be given back");
    assert!(events(&c).contains("n3's data disk is nearly full"), "{}", events(&c));
    let show = text(&c.halo(&["node", "show", "n3"]));
    assert!(show.contains("NEARLY FULL"), "{show}");
    assert!(text(&c.halo(&["status"])).contains("n3's data disk is nearly full"));
    assert_eq!(c.metric(2, "halo_data_disk_low"), Some(1.0));
    assert!(c.log(2).contains("the data disk is nearly full"), "{}", c.log(2));
    // It goes on working: what the cluster commits reaches n3's database.
    let out = create_role(&c, "while-low", 10);
    assert!(out.status.success(), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(10), || n3_has_role(&c, "while-low")), "n3 stopped following");

    // Room again: the reserve comes back, and the cluster hears of it.
    std::fs::remove_file(&filler).expect("free the disk");
    assert!(c.wait_status(Duration::from_secs(15), |s| !low(s)), "n3 still nearly full: {:?}", c.status());
    assert!(wait_until(Duration::from_secs(5), || reserve.exists()), "the reserve was not taken back");
    assert!(events(&c).contains("n3's data disk has room again"), "{}", events(&c));

    // Completely full (the reserve too, once given back): n3 stops, saying why.
    let full = || {
        fill(&filler, u64::MAX);
        std::thread::sleep(Duration::from_millis(1500));
        fill(&filler, u64::MAX);
        !reserve.exists() && free_bytes(&disk) < MIB
    };
    assert!(wait_until(Duration::from_secs(20), full), "could not fill n3's disk");
    let mut stopped = None;
    for i in 0..60 {
        let _ = create_role(&c, &format!("grow-{i}"), 256 * 1024);
        stopped = c.nodes[2].child.as_mut().and_then(|child| child.try_wait().ok().flatten());
        if stopped.is_some() {
            break;
        }
    }
    let stopped = stopped.unwrap_or_else(|| panic!("n3 went on without a writable database: {}", c.log(2)));
    assert!(!stopped.success(), "{stopped}");
    assert!(c.log(2).contains("the cluster database cannot be written"), "{}", c.log(2));
    // The others go on without it (after an election, if n3 led).
    let created = wait_until(Duration::from_secs(20), || {
        create_role(&c, "after", 10).status.success() || c.role("after").is_some()
    });
    assert!(created, "the cluster stopped with n3: {:?}", c.status());

    // Room again and started again: n3 catches up, nothing lost.
    std::fs::remove_file(&filler).expect("free the disk");
    c.kill9(2);
    c.start(2);
    assert!(
        wait_until(Duration::from_secs(30), || n3_has_role(&c, "after") && n3_has_role(&c, "while-low")),
        "n3 did not catch up: {}",
        c.log(2)
    );
    assert!(c.wait_status(Duration::from_secs(15), |s| n3(s)["state"] == "up" && !low(s)), "{:?}", c.status());
}
