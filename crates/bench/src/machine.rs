//! What the numbers were measured on: they mean little without the machine and the versions.

use std::collections::BTreeMap;
use std::process::Command;

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub kernel: String,
    /// halo's commit, Pacemaker's, Corosync's and QEMU's versions, as each reports itself.
    pub versions: BTreeMap<String, String>,
}

impl Machine {
    /// Read off this machine. What cannot be read is left empty rather than guessed.
    pub fn detect() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = field(&cpuinfo, "model name").unwrap_or_default();
        let memory_kib: f64 = field(&read("/proc/meminfo"), "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let mut versions = BTreeMap::new();
        let probes: [(&str, &str, &[&str]); 4] = [
            ("halo", "git", &["describe", "--always", "--dirty"]),
            ("pacemaker", "pacemakerd", &["--version"]),
            ("corosync", "corosync", &["-v"]),
            ("qemu", "qemu-system-x86_64", &["--version"]),
        ];
        for (name, program, args) in probes {
            if let Some(v) = first_line(program, args) {
                versions.insert(name.to_string(), v);
            }
        }
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            versions,
        }
    }

    /// "2 cores, Intel(R) Xeon(R) ..., 23.5 GiB, Debian GNU/Linux 12, Linux 6.1"
    pub fn words(&self) -> String {
        let mut parts = vec![format!("{} cores", self.cores)];
        if !self.cpu.is_empty() {
            parts.push(self.cpu.clone());
        }
        parts.push(format!("{} GiB", self.memory_gib));
        if !self.os.is_empty() {
            parts.push(self.os.clone());
        }
        if !self.kernel.is_empty() {
            parts.push(format!("Linux {}", self.kernel));
        }
        parts.join(", ")
    }
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_string())
    })
}

fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout }).into_owned();
    text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_name() {
        let info = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\n";
        assert_eq!(field(info, "model name").as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(field(info, "model"), None);
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1 && m.memory_gib > 0.0, "{m:?}");
        assert!(m.words().contains("cores"));
    }
}
