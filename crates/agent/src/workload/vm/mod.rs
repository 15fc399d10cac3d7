//! Running a `vm` resource on this node: its files, its QEMU command line, and whether KVM
//! works here. The QEMU process is a workload of the fence guard like any other (it dies with
//! the lease); everything halo says to it goes through QMP ([`ops`]), over the QMP client ([`qmp`]); live migration is mutual TLS ([`tls`]).

pub mod error;
pub mod ops;
pub mod qmp;
pub mod tls;

use error::VmError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use halo_core::vm::{Accel, VmSpec};

use crate::child::DiesWithParent;

pub const QEMU: &str = "qemu-system-x86_64";

/// Where one VM's QMP socket and serial console log live on this node, and the socket a quick
/// migration's state goes through (all in the private data directory).
#[derive(Debug, Clone)]
pub struct VmFiles {
    pub dir: PathBuf,
    pub qmp: PathBuf,
    pub serial: PathBuf,
    pub state_socket: PathBuf,
}

impl VmFiles {
    pub fn new(data_dir: &Path, role: &str, resource: &str) -> Result<Self, VmError> {
        let dir = data_dir.join("vms").join(format!("{role}.{resource}"));
        let qmp = dir.join("qmp.sock");
        // A Unix socket path must fit in sockaddr_un.
        if qmp.as_os_str().len() > 100 {
            return Err(VmError::PathTooLong(qmp));
        }
        Ok(Self { serial: dir.join("serial.log"), state_socket: dir.join("mig.sock"), qmp, dir })
    }

    /// Where a migration's TLS credentials are put for the moment QEMU loads them.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }
}

/// How this QEMU starts: booting, or waiting for a migrated guest.
#[derive(Debug, Clone, PartialEq)]
pub enum Boot {
    Fresh,
    /// A live migration's target: waits for the stream from node `from` (`migrate-incoming`),
    /// and stays paused once it has it until halo says `cont`.
    Incoming {
        from: String,
    },
    /// A quick migration's target: restores the saved state from this file (halo streams it
    /// in through `state_socket`), then runs.
    Restore(String),
}

/// The QEMU command line for `vm`.
pub fn command_line(vm: &VmSpec, files: &VmFiles, accel: &str, boot: &Boot) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-name".into(),
        files.dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
        "-accel".into(),
        accel.into(),
        "-machine".into(),
        vm.machine.clone(),
        "-m".into(),
        format!("{}M", vm.memory_mb),
        "-smp".into(),
        vm.vcpus.to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", files.qmp.display()),
        // Kept across restarts; halo reads the guest's heartbeat from it.
        "-chardev".into(),
        format!("file,id=serial0,path={},append=on", files.serial.display()),
        "-serial".into(),
        "chardev:serial0".into(),
        // A guest that reboots is still the same running guest; one that panics is a failure.
        "-action".into(),
        "panic=pause".into(),
    ];
    if let Some(kernel) = &vm.kernel {
        args.extend(["-kernel".into(), kernel.display().to_string()]);
    }
    if let Some(initrd) = &vm.initrd {
        args.extend(["-initrd".into(), initrd.display().to_string()]);
    }
    if let Some(append) = &vm.append {
        args.extend(["-append".into(), append.clone()]);
    }
    for (i, disk) in vm.disks.iter().enumerate() {
        args.extend([
            "-drive".into(),
            format!("file={},format={},if=virtio,id=disk{i}", disk.path.display(), disk.format),
        ]);
    }
    if vm.user_network {
        args.extend(["-nic".into(), "user,model=virtio-net-pci".into()]);
    }
    match boot {
        Boot::Fresh => {}
        Boot::Incoming { .. } => args.extend(["-incoming".into(), "defer".into(), "-S".into()]),
        Boot::Restore(_) => args.extend(["-incoming".into(), "defer".into()]),
    }
    if vm.sandbox {
        args.extend([
            "-sandbox".into(),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
        ]);
    }
    args.extend(vm.extra_args.iter().cloned());
    args
}

/// The accelerator for `vm` on this node; none while the KVM probe has not answered yet. The
/// probe runs on a thread of its own (started by the first question), so no caller waits.
pub fn accelerator(vm: &VmSpec) -> Option<&'static str> {
    match vm.accel {
        Accel::Kvm => Some("kvm"),
        Accel::Tcg => Some("tcg"),
        Accel::Auto => kvm_if_known().map(|works| if works { "kvm" } else { "tcg" }),
    }
}

static KVM: OnceLock<bool> = OnceLock::new();
static PROBE: std::sync::Once = std::sync::Once::new();

/// Whether KVM works here, if the probe has answered; otherwise starts it (once) and says none.
pub fn kvm_if_known() -> Option<bool> {
    if let Some(&works) = KVM.get() {
        return Some(works);
    }
    PROBE.call_once(|| {
        // This thread waits for the probe's QEMU and kills it, so the QEMU dies with it too.
        std::thread::spawn(kvm_works);
    });
    None
}

/// Whether KVM really runs guests here. `/dev/kvm` existing is not enough: nested setups
/// expose one that QEMU cannot use, failing only once the guest's CPU starts. So the probe
/// runs the firmware with the host's CPU model and checks that it gets as far as saying it
/// runs on KVM. Blocking (at most ~3 s), once per agent: never call it on the runtime (the
/// executor asks [`kvm_if_known`]; the survey runs it with `spawn_blocking`).
pub fn kvm_works() -> bool {
    *KVM.get_or_init(|| {
        let works = probe_kvm();
        tracing::info!(
            "KVM {}: VMs with accel=auto use {}",
            if works { "works" } else { "does not work here" },
            if works { "KVM" } else { "TCG" }
        );
        works
    })
}

fn probe_kvm() -> bool {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let log = std::env::temp_dir().join(format!("halo-kvm-probe-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let child = std::process::Command::new(QEMU)
        .args(["-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none"])
        .args(["-monitor", "none", "-chardev"])
        .arg(format!("file,id=fw,path={}", log.display()))
        .args(["-device", "isa-debugcon,iobase=0x402,chardev=fw"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .dies_with_parent()
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut works = false;
    while Instant::now() < deadline {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Running on KVM")) {
            // Give a failing CPU setup the moment it needs to abort.
            std::thread::sleep(Duration::from_millis(300));
            works = matches!(child.try_wait(), Ok(None));
            break;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    works
}

/// Whether `qemu-system-x86_64` is installed here.
pub fn qemu_installed() -> bool {
    qemu_version().is_some()
}

/// The first line of `qemu-system-x86_64 --version`, if it is installed here.
pub fn qemu_version() -> Option<String> {
    let out = crate::child::output_within(std::process::Command::new(QEMU).arg("--version"), Duration::from_secs(10))
        .ok()
        .filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(|l| l.trim().to_string())
}

/// The guest's heartbeat, read from the tail of its serial console log.
#[derive(Debug)]
pub struct SerialWatch {
    offset: u64,
    pattern: String,
    carry: String,
}

impl SerialWatch {
    /// Watches what the guest writes from now on.
    pub fn from_end(path: &Path, pattern: &str) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Self { offset, pattern: pattern.to_string(), carry: String::new() }
    }

    /// Whether a heartbeat line arrived since the last call.
    pub fn beat(&mut self, path: &Path) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = std::fs::File::open(path) else { return false };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0; // truncated by someone
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return false;
        }
        // Bounded: a chatty guest cannot make halo read without end.
        let mut bytes = Vec::new();
        let _ = file.take(1 << 20).read_to_end(&mut bytes);
        self.offset += bytes.len() as u64;
        let text = format!("{}{}", self.carry, String::from_utf8_lossy(&bytes));
        let (complete, rest) = text.rsplit_once('\n').unwrap_or(("", &text));
        self.carry = rest.chars().rev().take(4096).collect::<Vec<_>>().into_iter().rev().collect();
        complete.lines().any(|line| line.contains(&self.pattern))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_command_line_has_what_the_definition_says() {
        let params: BTreeMap<String, String> = [
            ("memory", "128M"),
            ("vcpus", "2"),
            ("kernel", "/s/vmlinuz"),
            ("append", "console=ttyS0 quiet"),
            ("disks", "/s/a.qcow2"),
            ("args", "-device virtio-rng-pci"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let vm = VmSpec::parse(&params).unwrap();
        let files = VmFiles::new(Path::new("/d"), "web", "vm").unwrap();
        let line = command_line(&vm, &files, "tcg", &Boot::Incoming { from: "n1".into() }).join(" ");
        for part in [
            "-accel tcg",
            "-m 128M",
            "-smp 2",
            "-qmp unix:/d/vms/web.vm/qmp.sock,server=on,wait=off",
            "-append console=ttyS0 quiet",
            "-drive file=/s/a.qcow2,format=qcow2,if=virtio,id=disk0",
            "-incoming defer -S",
            "-device virtio-rng-pci",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
        let restore = command_line(&vm, &files, "tcg", &Boot::Restore("/s/it's.state".into())).join(" ");
        // The state comes in through a socket: QEMU never starts a process, not even to restore.
        assert!(restore.contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"));
        assert!(restore.contains("-incoming defer") && !restore.contains("exec:") && !restore.contains("-S"));
        let fresh = command_line(&vm, &files, "tcg", &Boot::Fresh).join(" ");
        assert!(fresh.contains("spawn=deny") && !fresh.contains("-incoming"), "{fresh}");
        assert!(VmFiles::new(Path::new(&"/x".repeat(60)), "r", "v").is_err());
    }

    #[test]
    fn heartbeats_are_seen_once_whole_lines_arrive() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        std::fs::write(&path, "HALO-HEARTBEAT 1.0\n").unwrap();
        let mut watch = SerialWatch::from_end(&path, "HALO-HEARTBEAT");
        assert!(!watch.beat(&path), "what was there before does not count");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(f, "booting\nHALO-HEART").unwrap();
        assert!(!watch.beat(&path), "half a line is not a beat");
        writeln!(f, "BEAT 2.0").unwrap();
        assert!(watch.beat(&path));
        assert!(!watch.beat(&path), "nothing new");
    }
}
