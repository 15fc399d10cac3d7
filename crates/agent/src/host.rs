//! What this machine is and has: memory, free space, operating system, network interfaces and
//! programs on the PATH. Read from /proc, /etc and the kernel; each function answers for now.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A `/proc/meminfo` field (`MemTotal`, `MemAvailable`...), in MiB.
pub fn meminfo_mb(field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/meminfo"))?;
    Ok(kb / 1024)
}

/// Space an unprivileged writer may still use in the file system holding `path`, in MiB.
pub fn free_space_mb(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64 / (1024 * 1024))
}

/// The distribution's name (`PRETTY_NAME` of /etc/os-release), e.g. "Debian GNU/Linux 12 (bookworm)".
pub fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown OS".into())
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

/// The interface that holds `ip`, or else the one whose subnet contains it (how 127.x.y.z
/// addresses reach `lo`).
pub fn interface_of(ip: IpAddr) -> Option<String> {
    let addrs: Vec<_> = nix::ifaddrs::getifaddrs().ok()?.collect();
    let v4 = |a: &Option<nix::sys::socket::SockaddrStorage>| {
        a.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| u32::from(s.ip()))
    };
    let v6 = |a: &Option<nix::sys::socket::SockaddrStorage>| {
        a.as_ref().and_then(|s| s.as_sockaddr_in6()).map(|s| u128::from(s.ip()))
    };
    let exact = addrs.iter().find(|i| match ip {
        IpAddr::V4(ip) => v4(&i.address) == Some(u32::from(ip)),
        IpAddr::V6(ip) => v6(&i.address) == Some(u128::from(ip)),
    });
    let containing = || {
        addrs.iter().find(|i| match ip {
            IpAddr::V4(ip) => matches!((v4(&i.address), v4(&i.netmask)),
                (Some(a), Some(m)) if a & m == u32::from(ip) & m),
            IpAddr::V6(ip) => matches!((v6(&i.address), v6(&i.netmask)),
                (Some(a), Some(m)) if a & m == u128::from(ip) & m),
        })
    };
    exact.or_else(containing).map(|i| i.interface_name.clone())
}

/// Where `program` would be run from: itself if it is a path, else the first match on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        assert!(meminfo_mb("MemTotal").expect("MemTotal") > 0);
        assert!(meminfo_mb("MemAvailable").expect("MemAvailable") > 0);
        assert!(meminfo_mb("NoSuchField").is_err());
        assert!(free_space_mb(Path::new("/")).expect("statvfs") > 0);
        assert!(free_space_mb(Path::new("/no/such/dir")).is_err());
        assert!(!kernel_release().is_empty());
        assert_eq!(interface_of("127.0.0.1".parse().expect("ip")).as_deref(), Some("lo"));
        // Not assigned to lo, but inside its 127.0.0.0/8.
        assert_eq!(interface_of("127.9.8.7".parse().expect("ip")).as_deref(), Some("lo"));
        assert!(find_program("sh").is_some());
        assert!(find_program("fence_no_such_agent").is_none());
    }
}
