//! VM labs: a cluster with shared storage holding the test guest (`scripts/guest`), whose
//! serial console prints "HALO-HEARTBEAT <uptime>" every second.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// A cluster with shared storage holding the test guest's kernel, initramfs and disks.
pub struct Lab {
    pub c: Cluster,
    pub shared: PathBuf,
}

impl Lab {
    pub fn new(test_id: u8, nodes: usize) -> Self {
        Self::new_with(test_id, nodes, |_| {})
    }

    /// As `new`, with `prepare` run on the cluster before its agents start.
    pub fn new_with(test_id: u8, nodes: usize, prepare: impl FnOnce(&mut Cluster)) -> Self {
        let guest = test_guest();
        let mut c = Cluster::new(test_id, nodes, 0);
        prepare(&mut c);
        c.form();
        let shared = c.dir.path().join("shared");
        std::fs::create_dir_all(&shared).expect("shared dir");
        for file in ["vmlinuz", "initrd.img"] {
            std::fs::copy(guest.join(file), shared.join(file)).expect("copy guest");
        }
        let out = c.halo(&["cluster", "set", &format!("shared_storage={}", shared.display())]);
        assert!(out.status.success(), "{}", text(&out));
        Self { c, shared }
    }

    /// A sparse raw disk on shared storage.
    pub fn disk(&self, name: &str) -> String {
        let path = self.shared.join(format!("{name}.img"));
        std::fs::File::create(&path).and_then(|f| f.set_len(16 << 20)).expect("disk image");
        path.display().to_string()
    }

    /// `halo role create NAME --type vm` booting the test guest, plus `extra` arguments.
    pub fn create(&self, name: &str, extra: &[&str]) -> std::process::Output {
        let (kernel, initrd, disk) = (self.shared.join("vmlinuz"), self.shared.join("initrd.img"), self.disk(name));
        let params = [
            "memory=128M".to_string(),
            format!("kernel={}", kernel.display()),
            format!("initrd={}", initrd.display()),
            "append=console=ttyS0 quiet".to_string(),
            format!("disks={disk}"),
            "accel=tcg".to_string(),
            "heartbeat=serial".to_string(),
            "heartbeat_timeout=20".to_string(),
        ];
        let mut args: Vec<String> = vec!["role".into(), "create".into(), name.into(), "--type".into(), "vm".into()];
        for p in params {
            args.extend(["--param".into(), p]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.c.halo(&args)
    }

    /// The serial console log of `role` (resource `vm`) on `node`.
    pub fn serial(&self, node: &str, role: &str) -> PathBuf {
        let i = self.c.index_of(node);
        self.c.nodes[i].data_dir.join("vms").join(format!("{role}.vm")).join("serial.log")
    }

    /// The guest's heartbeats (uptimes) in the serial log of `role` on `node`.
    pub fn beats(&self, node: &str, role: &str) -> Vec<f64> {
        heartbeats(&self.serial(node, role))
    }

    /// Wait until `role` runs on `node` and its guest there beats at least `n` more times.
    pub fn wait_beating(&self, node: &str, role: &str, n: usize) -> Vec<f64> {
        let before = self.beats(node, role).len();
        let ok = wait_until(Duration::from_secs(90), || self.beats(node, role).len() >= before + n);
        assert!(
            ok,
            "no heartbeats from {role} on {node}: {:?}\n{}",
            self.c.role(role),
            self.c.log(self.c.index_of(node))
        );
        self.beats(node, role)
    }

    pub fn owner(&self, role: &str) -> Option<String> {
        self.c.role(role).and_then(|r| r["owner"].as_str().map(str::to_string))
    }
}

pub fn heartbeats(log: &Path) -> Vec<f64> {
    let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b).to_string()).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().strip_prefix("HALO-HEARTBEAT ")?.trim().parse().ok()).collect()
}

impl Lab {
    /// QEMU processes of `role` in this lab's cluster (any node).
    pub fn qemus(&self, role: &str) -> usize {
        self.c.role_processes(role).len()
    }
}
