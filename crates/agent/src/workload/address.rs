//! The `ip` resource on a node: a floating address added to an interface with iproute2's `ip`
//! and announced with iputils' `arping`.
//!
//! Its actions run as `halo floating-ip ACTION ...`, started by the fence guard like an OCF
//! agent's, and answer with OCF exit codes, so the executor treats both alike. Its start
//! registers its stop with the guard as the undo to run at lease loss: a node whose agent hangs
//! drops the address itself before another node may take it (see `guard`).

use std::path::PathBuf;
use std::process::{Command, Stdio};

use halo_core::address::FloatingAddress;

use crate::workload::guard::{SpawnRequest, Undo};

/// OCF exit codes the actions answer with.
const SUCCESS: i32 = 0;
const GENERIC: i32 = 1;
const NOT_INSTALLED: i32 = 5;
const NOT_RUNNING: i32 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    Start,
    Stop,
    Monitor,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Monitor => "monitor",
        }
    }
}

/// The halo binary that runs the actions (the agent's own).
fn halo() -> String {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("halo")).display().to_string()
}

fn arguments(action: Action, address: &FloatingAddress) -> Vec<String> {
    vec![
        "floating-ip".into(),
        action.word().into(),
        "--address".into(),
        address.cidr(),
        "--interface".into(),
        address.interface.clone(),
        "--announce".into(),
        address.announce.to_string(),
    ]
}

/// The guard request for one action. A start carries its stop as the undo for lease loss.
/// `instance` marks the action and what it leaves running (the announcer) for a sweep.
pub fn request(
    address: &FloatingAddress,
    action: Action,
    instance: &str,
    stop_timeout_ms: u64,
    id: &str,
    log: Option<String>,
) -> SpawnRequest {
    SpawnRequest {
        id: id.to_string(),
        program: halo(),
        args: arguments(action, address),
        cwd: None,
        env: vec![("OCF_RESOURCE_INSTANCE".into(), instance.to_string())],
        log,
        // The announcer outlives the start action (see `start`).
        keep_group: true,
        undo: (action == Action::Start).then(|| Undo {
            key: instance.to_string(),
            args: arguments(Action::Stop, address),
            timeout_ms: stop_timeout_ms,
        }),
        private: false,
    }
}

/// The entry point of `halo floating-ip`: the OCF exit code (2: invalid arguments).
pub fn main(action: Action, address: &str, interface: &str, announce: u8) -> i32 {
    let params = [("address", address), ("interface", interface)].map(|(k, v)| (k.to_string(), v.to_string()));
    let mut params: std::collections::BTreeMap<String, String> = params.into();
    params.insert("announce".into(), announce.to_string());
    match FloatingAddress::parse(&params) {
        Ok(floating) => run(action, &floating),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// Carry out `action`; the OCF exit code.
pub fn run(action: Action, address: &FloatingAddress) -> i32 {
    let held = match held(address) {
        Ok(held) => held,
        // No such interface here: nothing is held, and nothing can be.
        Err(e) if action == Action::Start => {
            eprintln!("{e}");
            return NOT_INSTALLED;
        }
        Err(e) => {
            eprintln!("{e}");
            return if action == Action::Stop { SUCCESS } else { NOT_RUNNING };
        }
    };
    match action {
        Action::Monitor => {
            if held {
                SUCCESS
            } else {
                NOT_RUNNING
            }
        }
        Action::Stop => {
            if held && let Err(e) = ip(&["-4", "addr", "del", &address.cidr(), "dev", &address.interface]) {
                eprintln!("cannot remove {}: {e}", address.cidr());
                return GENERIC;
            }
            SUCCESS
        }
        Action::Start => {
            if !held && let Err(e) = ip(&["-4", "addr", "add", &address.cidr(), "dev", &address.interface]) {
                eprintln!("cannot add {}: {e}", address.cidr());
                return GENERIC;
            }
            match announce(address) {
                Ok(()) => SUCCESS,
                Err(e) => {
                    // Without announcements neighbours keep sending to the old node until their
                    // caches expire: not a working failover. Take the address back off.
                    eprintln!("{e}");
                    let _ = ip(&["-4", "addr", "del", &address.cidr(), "dev", &address.interface]);
                    NOT_INSTALLED
                }
            }
        }
    }
}

/// Why an address action could not be carried out (printed by the action, which exits with
/// an OCF code).
#[derive(Debug, thiserror::Error)]
enum AddressError {
    #[error("ip {args}: {source}")]
    CannotRunIp { args: String, source: std::io::Error },
    #[error("ip {args}: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run arping to announce {address} ({source}); on Debian: apt-get install iputils-arping")]
    CannotAnnounce { address: std::net::Ipv4Addr, source: std::io::Error },
}

/// Whether `address` is on its interface; an error if the interface does not exist.
fn held(address: &FloatingAddress) -> Result<bool, AddressError> {
    let listing = ip(&["-o", "-4", "addr", "show", "dev", &address.interface])?;
    Ok(holds(&listing, address))
}

/// Whether `ip -o -4 addr show` output lists the address (with any prefix).
fn holds(listing: &str, address: &FloatingAddress) -> bool {
    let wanted = address.address.to_string();
    listing.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.by_ref().any(|w| w == "inet")
            && words.next().and_then(|cidr| cidr.split('/').next()).is_some_and(|a| a == wanted)
    })
}

/// Gratuitous ARPs, one a second, by `arping` left running in the background: the start does
/// not wait for them. It carries the action's environment (the guard's marker and the
/// instance), so a stop's sweep or a fence kills it: an old owner never announces an address
/// it gave up.
fn announce(address: &FloatingAddress) -> Result<(), AddressError> {
    if address.announce == 0 {
        return Ok(());
    }
    Command::new("arping")
        .args(["-U", "-c", &address.announce.to_string(), "-I", &address.interface])
        .arg(address.address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|source| AddressError::CannotAnnounce { address: address.address, source })
}

/// Run `ip` with a time limit; its output, or what it said on failure.
fn ip(args: &[&str]) -> Result<String, AddressError> {
    let mut command = Command::new("ip");
    command.args(args).stdin(Stdio::null());
    let output = crate::child::output_within(&mut command, std::time::Duration::from_secs(5))
        .map_err(|source| AddressError::CannotRunIp { args: args.join(" "), source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        Err(AddressError::Ip { args: args.join(" "), stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> FloatingAddress {
        let params = [("address", text), ("interface", "va")].map(|(k, v)| (k.to_string(), v.to_string()));
        FloatingAddress::parse(&params.into()).unwrap()
    }

    #[test]
    fn reads_whether_the_address_is_held() {
        let listing = "2: va    inet 10.9.0.1/24 brd 10.9.0.255 scope global va\\       valid_lft forever\n\
                       2: va    inet 10.9.0.100/24 scope global secondary va\\       valid_lft forever\n";
        assert!(holds(listing, &address("10.9.0.100/24")));
        assert!(holds(listing, &address("10.9.0.100/32")), "whatever the prefix");
        assert!(!holds(listing, &address("10.9.0.10/24")), "not a prefix match");
        assert!(!holds("", &address("10.9.0.1/24")));
    }

    #[test]
    fn a_start_carries_its_stop_as_the_undo() {
        let a = address("10.9.0.100/24");
        let start = request(&a, Action::Start, "web.vip", 5000, "id", None);
        let undo = start.undo.expect("undo");
        assert_eq!((undo.key.as_str(), undo.timeout_ms), ("web.vip", 5000));
        assert_eq!(&undo.args[..2], &["floating-ip", "stop"]);
        assert!(undo.args.contains(&"10.9.0.100/24".to_string()));
        assert!(request(&a, Action::Monitor, "web.vip", 5000, "id", None).undo.is_none());
    }
}
