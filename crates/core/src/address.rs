//! The `ip` resource type: a floating IPv4 address that follows its role from node to node.
//! This module reads and checks the definition (pure); the agent adds and removes the address
//! and announces it, and the fence guard removes it when the node's lease runs out.
//!
//! Parameters:
//! - `address`: `A.B.C.D/PREFIX` (the prefix defaults to 32: no subnet route is added);
//! - `interface`: the network interface that carries it, the same name on every node;
//! - `announce`: gratuitous ARPs sent when it comes up, one a second (default 3, 0 to 10),
//!   so that switches and neighbours learn its new place at once.
//!
//! IPv6 addresses are refused for now: announcing them needs unsolicited neighbour
//! advertisements, which halo does not send yet.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::role::Timeouts;

pub const DEFAULT_ANNOUNCE: u8 = 3;
pub const MAX_ANNOUNCE: u8 = 10;
/// Adding or removing an address takes milliseconds; a monitor looks every 5 s.
pub const TIMEOUTS: Timeouts = Timeouts {
    start_ms: Some(10_000),
    stop_ms: Some(5_000),
    monitor_ms: Some(5_000),
    monitor_interval_ms: Some(5_000),
};

const KNOWN: &[&str] = &["address", "interface", "announce"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloatingAddress {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub interface: String,
    pub announce: u8,
}

impl FloatingAddress {
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Self, String> {
        if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown parameter '{unknown}' for an ip resource (known: {})", KNOWN.join(", ")));
        }
        let text = params.get("address").ok_or("an ip resource needs an 'address' parameter (A.B.C.D/PREFIX)")?;
        let (address, prefix_len) = parse_cidr(text)?;
        let interface = params.get("interface").ok_or("an ip resource needs an 'interface' parameter")?;
        check_interface(interface)?;
        let announce = match params.get("announce") {
            None => DEFAULT_ANNOUNCE,
            Some(n) => n
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= MAX_ANNOUNCE)
                .ok_or_else(|| format!("announce must be a number from 0 to {MAX_ANNOUNCE}, not '{n}'"))?,
        };
        Ok(Self { address, prefix_len, interface: interface.clone(), announce })
    }

    /// `A.B.C.D/PREFIX`, as `ip` takes it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.address, self.prefix_len)
    }
}

fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (address, prefix) = text.split_once('/').unwrap_or((text, "32"));
    let address: Ipv4Addr = address.parse().map_err(|_| {
        if address.contains(':') {
            format!("'{text}' is an IPv6 address; ip resources take IPv4 addresses only for now")
        } else {
            format!("'{text}' is not an IPv4 address (A.B.C.D/PREFIX)")
        }
    })?;
    let prefix_len = prefix
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| format!("'{prefix}' is not a prefix length (0-32)"))?;
    if address.is_unspecified() || address.is_broadcast() || address.is_multicast() || address.is_loopback() {
        return Err(format!("'{address}' cannot be a floating address"));
    }
    Ok((address, prefix_len))
}

/// What Linux accepts as an interface name: 1-15 bytes, no '/', ':' or whitespace.
fn check_interface(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_graphic() && c != '/' && c != ':');
    if ok { Ok(()) } else { Err(format!("'{name}' is not a network interface name")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_an_address_with_or_without_a_prefix() {
        let a = FloatingAddress::parse(&params(&[("address", "10.1.2.3/24"), ("interface", "eth0")])).unwrap();
        assert_eq!(a.cidr(), "10.1.2.3/24");
        assert_eq!(a.announce, DEFAULT_ANNOUNCE);
        let b = FloatingAddress::parse(&params(&[("address", "10.1.2.3"), ("interface", "br0"), ("announce", "0")]))
            .unwrap();
        assert_eq!((b.cidr().as_str(), b.announce), ("10.1.2.3/32", 0));
    }

    #[test]
    fn refuses_what_it_cannot_hold_and_says_why() {
        let error = |pairs: &[(&str, &str)]| FloatingAddress::parse(&params(pairs)).unwrap_err();
        assert!(error(&[("interface", "eth0")]).contains("needs an 'address'"));
        assert!(error(&[("address", "10.0.0.1/24")]).contains("needs an 'interface'"));
        assert!(error(&[("address", "fd00::1/64"), ("interface", "eth0")]).contains("IPv6"));
        assert!(error(&[("address", "10.0.0.1/33"), ("interface", "eth0")]).contains("prefix length"));
        assert!(error(&[("address", "127.0.0.5"), ("interface", "lo")]).contains("cannot be a floating"));
        assert!(error(&[("address", "10.0.0.1"), ("interface", "eth0; reboot")]).contains("not a network interface"));
        assert!(error(&[("address", "10.0.0.1"), ("interface", "a-very-long-interface")]).contains("interface"));
        assert!(error(&[("address", "10.0.0.1"), ("interface", "eth0"), ("announce", "99")]).contains("0 to 10"));
        assert!(error(&[("address", "10.0.0.1"), ("interface", "eth0"), ("nic", "eth1")]).contains("unknown"));
    }
}
