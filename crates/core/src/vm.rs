//! The `vm` resource type: a QEMU virtual machine, defined by the resource's parameters. This
//! module reads and checks the definition (pure); the agent turns it into a QEMU command line.
//!
//! Parameters (all strings, as every resource's):
//! - `memory` (`512M`, `2G`; default 512M), `vcpus` (default 1), `machine` (default `pc`);
//! - `disks`: image files, comma-separated, each on the cluster's shared storage
//!   (`halo cluster set shared_storage=/mnt/a,/mnt/b`); `.qcow2` files are qcow2, others raw;
//! - `kernel`, `initrd`, `append`: direct kernel boot (else the first disk boots);
//! - `network`: `none` (default) or `user` (QEMU user-mode networking, `hostfwd`s in `args`);
//! - `accel`: `auto` (default: KVM where it works, else TCG), `kvm` or `tcg`;
//! - `heartbeat`: `serial` to watch for the guest's heartbeat lines on its serial console,
//!   `heartbeat_pattern` (default `HALO-HEARTBEAT`) and `heartbeat_timeout` (seconds without
//!   one before the guest counts as hung, from boot too; default 30);
//! - `migration_timeout`: seconds a live or quick migration may take before it is cancelled
//!   (default 300); `migration_bandwidth`: at most this much per second (`100M`; default: as
//!   fast as the network goes);
//! - `probe`: a health probe as for processes (`tcp:HOST:PORT`, `http://...`, `cmd:...`);
//! - `args`: extra QEMU arguments, split on whitespace: the escape hatch.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::capacity::{memory_text, parse_memory};
use crate::role::Timeouts;

pub const DEFAULT_MEMORY_MB: u64 = 512;
pub const DEFAULT_HEARTBEAT_PATTERN: &str = "HALO-HEARTBEAT";
pub const DEFAULT_HEARTBEAT_TIMEOUT_S: u64 = 30;
pub const DEFAULT_MIGRATION_TIMEOUT_S: u64 = 300;
/// Time limits that suit a guest: starting means QEMU runs it (not that it has booted), a
/// shutdown may take a while, and health is checked often (QMP answers in microseconds).
pub const TIMEOUTS: Timeouts = Timeouts {
    start_ms: Some(60_000),
    stop_ms: Some(60_000),
    monitor_ms: Some(5_000),
    monitor_interval_ms: Some(2_000),
};
/// QEMU's own use beyond the guest's memory, counted against the node's capacity.
pub const OVERHEAD_MB: u64 = 64;

const KNOWN: &[&str] = &[
    "memory",
    "vcpus",
    "machine",
    "disks",
    "kernel",
    "initrd",
    "append",
    "network",
    "accel",
    "heartbeat",
    "heartbeat_pattern",
    "heartbeat_timeout",
    "probe",
    "migration_timeout",
    "migration_bandwidth",
    "sandbox",
    "args",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub pattern: String,
    pub timeout_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub memory_mb: u64,
    pub vcpus: u32,
    pub machine: String,
    pub disks: Vec<Disk>,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub append: Option<String>,
    pub user_network: bool,
    pub accel: Accel,
    pub heartbeat: Option<Heartbeat>,
    pub probe: Option<String>,
    pub migration_timeout_s: u64,
    /// MiB/s; none: unlimited.
    pub migration_bandwidth_mb: Option<u64>,
    /// QEMU's seccomp filter (`-sandbox on`, denying obsolete calls, privilege changes, new
    /// processes and resource control); `sandbox=off` opts a VM out.
    pub sandbox: bool,
    pub extra_args: Vec<String>,
}

impl VmSpec {
    /// Reads a definition from a resource's parameters, refusing anything unknown or malformed.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Self, String> {
        if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown vm parameter '{unknown}' (known: {})", KNOWN.join(", ")));
        }
        let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let memory_mb = match get("memory") {
            Some(text) => parse_memory(text)?,
            None => DEFAULT_MEMORY_MB,
        };
        if !(16..=16 * 1024 * 1024).contains(&memory_mb) {
            return Err(format!("vm memory must be 16 MiB to 16 TiB, not {}", memory_text(memory_mb)));
        }
        let vcpus = match get("vcpus") {
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| format!("invalid vcpus '{text}': use a whole number from 1 to 1024"))?,
            None => 1,
        };
        let machine = get("machine").unwrap_or("pc").to_string();
        if !machine.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("invalid machine type '{machine}'"));
        }
        let disks: Vec<Disk> = get("disks")
            .map(|list| {
                list.split(',').map(str::trim).filter(|d| !d.is_empty()).map(disk).collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let kernel = get("kernel").map(|p| absolute("kernel", p)).transpose()?;
        let initrd = get("initrd").map(|p| absolute("initrd", p)).transpose()?;
        if kernel.is_none() && (initrd.is_some() || get("append").is_some()) {
            return Err("initrd and append need a kernel".into());
        }
        if kernel.is_none() && disks.is_empty() {
            return Err("a vm needs a kernel or a disk to boot from".into());
        }
        let user_network = match get("network").unwrap_or("none") {
            "none" => false,
            "user" => true,
            other => return Err(format!("invalid network '{other}': use none or user")),
        };
        let accel = match get("accel").unwrap_or("auto") {
            "auto" => Accel::Auto,
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            other => return Err(format!("invalid accel '{other}': use auto, kvm or tcg")),
        };
        let heartbeat = match get("heartbeat") {
            None => None,
            Some("serial") => {
                let timeout_s = seconds("heartbeat_timeout", get("heartbeat_timeout"), DEFAULT_HEARTBEAT_TIMEOUT_S)?;
                let pattern = get("heartbeat_pattern").unwrap_or(DEFAULT_HEARTBEAT_PATTERN).to_string();
                Some(Heartbeat { pattern, timeout_s })
            }
            Some(other) => return Err(format!("invalid heartbeat '{other}': use serial")),
        };
        if heartbeat.is_none() && (get("heartbeat_pattern").is_some() || get("heartbeat_timeout").is_some()) {
            return Err("heartbeat_pattern and heartbeat_timeout need heartbeat=serial".into());
        }
        let probe = get("probe").map(str::to_string);
        if let Some(p) = &probe {
            crate::role::check_probe(p)?;
        }
        let migration_timeout_s = seconds("migration_timeout", get("migration_timeout"), DEFAULT_MIGRATION_TIMEOUT_S)?;
        let migration_bandwidth_mb = get("migration_bandwidth")
            .map(|text| {
                parse_memory(text)
                    .and_then(|mb| if mb == 0 { Err("migration_bandwidth must be more than 0".into()) } else { Ok(mb) })
            })
            .transpose()?;
        let sandbox = match get("sandbox").unwrap_or("on") {
            "on" => true,
            "off" => false,
            other => return Err(format!("invalid sandbox '{other}': use on or off")),
        };
        let extra_args = get("args").map(|a| a.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
        Ok(Self {
            memory_mb,
            vcpus,
            machine,
            disks,
            kernel,
            initrd,
            append: get("append").map(str::to_string),
            user_network,
            accel,
            heartbeat,
            probe,
            migration_timeout_s,
            migration_bandwidth_mb,
            sandbox,
            extra_args,
        })
    }

    /// Every disk must live on the cluster's shared storage, or no other node could run the VM
    /// after a failure (and image locking could not keep two nodes from writing it).
    pub fn check_shared(&self, shared: &[String]) -> Result<(), String> {
        for disk in &self.disks {
            if !shared.iter().any(|root| disk.path.starts_with(Path::new(root))) {
                let hint = if shared.is_empty() {
                    "no shared storage is configured: `halo cluster set shared_storage=PATH[,PATH..]`".to_string()
                } else {
                    format!("shared storage is {}", shared.join(", "))
                };
                return Err(format!("disk {} is not on the cluster's shared storage ({hint})", disk.path.display()));
            }
        }
        Ok(())
    }

    /// The files the VM boots from and writes to, with what each is.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        let kernel = self.kernel.iter().map(|p| ("kernel", p.as_path()));
        let initrd = self.initrd.iter().map(|p| ("initrd", p.as_path()));
        kernel.chain(initrd).chain(self.disks.iter().map(|d| ("disk", d.path.as_path())))
    }

    /// What the VM takes of a node's memory: the guest's memory and QEMU's own.
    pub fn memory_needed_mb(&self) -> u64 {
        self.memory_mb + OVERHEAD_MB
    }
}

/// [`VmSpec::memory_needed_mb`] from the parameters alone: placement asks it for every node it
/// considers, so it reads only `memory` (a definition that does not parse was refused when
/// the role was saved; here it counts as nothing).
pub fn memory_needed_mb(params: &BTreeMap<String, String>) -> u64 {
    match params.get("memory").map(|m| m.trim()).filter(|m| !m.is_empty()) {
        None => DEFAULT_MEMORY_MB + OVERHEAD_MB,
        Some(text) => parse_memory(text).map_or(0, |mb| mb + OVERHEAD_MB),
    }
}

/// A whole number of seconds from 1 s to a day, or `default` when unset.
fn seconds(key: &str, text: Option<&str>, default: u64) -> Result<u64, String> {
    let Some(text) = text else { return Ok(default) };
    text.parse::<u64>()
        .ok()
        .filter(|n| (1..=86_400).contains(n))
        .ok_or_else(|| format!("invalid {key} '{text}': use seconds, 1 to 86400"))
}

fn disk(text: &str) -> Result<Disk, String> {
    let path = absolute("disk", text)?;
    let format = if path.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
    Ok(Disk { path, format })
}

/// An absolute path with no `..`, `.` or empty parts, so that "is it under shared storage" is
/// a plain prefix test that cannot be escaped, and no comma (QEMU's option separator).
fn absolute(what: &str, text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    let plain = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.is_absolute() || !plain || text.contains("//") {
        return Err(format!("{what} path '{text}' must be absolute, without '.' or '..'"));
    }
    if text.contains(',') || text.chars().any(char::is_control) {
        return Err(format!("{what} path '{text}' must not contain commas or control characters"));
    }
    Ok(path.to_path_buf())
}

/// Checks a `shared_storage` cluster setting: absolute, plain directory paths, never `/`.
pub fn parse_shared_storage(value: &str) -> Result<Vec<String>, String> {
    let mut roots = Vec::new();
    for text in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let root = text.trim_end_matches('/');
        if root.is_empty() {
            return Err("shared storage cannot be '/'".into());
        }
        absolute("shared storage", root)?;
        roots.push(root.to_string());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_full_definition_reads_back() {
        let vm = VmSpec::parse(&params(&[
            ("memory", "128M"),
            ("vcpus", "2"),
            ("disks", "/shared/a.qcow2, /shared/b.img"),
            ("kernel", "/shared/vmlinuz"),
            ("append", "console=ttyS0"),
            ("heartbeat", "serial"),
            ("heartbeat_timeout", "5"),
            ("args", "-device  virtio-rng-pci"),
        ]))
        .unwrap();
        assert_eq!((vm.memory_mb, vm.vcpus, vm.machine.as_str()), (128, 2, "pc"));
        assert_eq!(vm.disks[0].format, "qcow2");
        assert_eq!(vm.disks[1].format, "raw");
        assert_eq!(vm.heartbeat, Some(Heartbeat { pattern: DEFAULT_HEARTBEAT_PATTERN.into(), timeout_s: 5 }));
        assert_eq!(vm.extra_args, vec!["-device", "virtio-rng-pci"]);
        assert_eq!(vm.memory_needed_mb(), 128 + OVERHEAD_MB);
        assert!(vm.check_shared(&["/shared".into()]).is_ok());
        let outside = vm.check_shared(&["/other".into()]).unwrap_err();
        assert!(
            outside.contains("/shared/a.qcow2 is not on the cluster's shared storage (shared storage is /other)"),
            "{outside}"
        );
    }

    #[test]
    fn bad_definitions_say_what_is_wrong() {
        for (pairs, expected) in [
            (vec![("kernel", "/k"), ("colour", "red")], "unknown vm parameter 'colour'"),
            (vec![], "needs a kernel or a disk"),
            (vec![("kernel", "vmlinuz")], "must be absolute"),
            (vec![("disks", "/shared/../etc/passwd")], "must be absolute, without '.' or '..'"),
            (vec![("disks", "/shared/a,file=/etc/shadow")], "must be absolute"),
            (vec![("kernel", "/k"), ("memory", "lots")], "invalid memory amount"),
            (vec![("kernel", "/k"), ("memory", "8")], "16 MiB to 16 TiB"),
            (vec![("kernel", "/k"), ("vcpus", "0")], "invalid vcpus"),
            (vec![("kernel", "/k"), ("network", "bridge")], "invalid network"),
            (vec![("kernel", "/k"), ("heartbeat_timeout", "5")], "need heartbeat=serial"),
            (vec![("initrd", "/i"), ("disks", "/d")], "need a kernel"),
            (vec![("kernel", "/k"), ("probe", "ping")], "invalid probe"),
        ] {
            let err = VmSpec::parse(&params(&pairs)).unwrap_err();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
        let no_shared = VmSpec::parse(&params(&[("disks", "/d/a.img")])).unwrap().check_shared(&[]).unwrap_err();
        assert!(no_shared.contains("no shared storage is configured"), "{no_shared}");
    }

    #[test]
    fn a_shared_prefix_must_be_a_whole_directory() {
        let vm = VmSpec::parse(&params(&[("disks", "/shared-not/a.img")])).unwrap();
        assert!(vm.check_shared(&["/shared".into()]).is_err(), "/shared-not is not under /shared");
        assert_eq!(parse_shared_storage("/a/, /b").unwrap(), vec!["/a", "/b"]);
        assert!(parse_shared_storage("relative").is_err());
        assert!(parse_shared_storage("/").is_err());
    }
}
