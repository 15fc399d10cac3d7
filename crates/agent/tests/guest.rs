//! The test guest (`scripts/guest`) boots under QEMU (TCG) and prints its uptime heartbeat on
//! the serial console, counting up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn heartbeats(log: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).to_string()).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().strip_prefix("HALO-HEARTBEAT ")?.trim().parse().ok()).collect()
}

#[test]
fn the_test_guest_boots_and_its_uptime_counts() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(root.join("scripts/guest")).arg(dir.path().join("guest")).output().expect("scripts/guest");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let guest = dir.path().join("guest");
    let serial = dir.path().join("serial.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "128", "-nodefaults", "-display", "none", "-kernel"])
        .arg(guest.join("vmlinuz"))
        .arg("-initrd")
        .arg(guest.join("initrd.img"))
        .args(["-append", "console=ttyS0 quiet", "-serial"])
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let deadline = Instant::now() + Duration::from_secs(60);
    while heartbeats(&serial).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let beats = heartbeats(&serial);
    assert!(beats.len() >= 3, "no heartbeats within 60 s: {beats:?}");
    assert!(beats.windows(2).all(|w| w[1] > w[0]), "uptime must count up: {beats:?}");
}
