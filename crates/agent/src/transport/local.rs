//! Which local user is on the other end of a loopback TCP connection: the kernel's socket
//! table (`/proc/net/tcp`, `/proc/net/tcp6`) lists the owner of the client's socket. An
//! unjoined agent trusts root and its own user this way, as it would over a Unix socket
//! with a peer-credential check; any other local user needs the bootstrap secret.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid owning the local socket `client` that is connected to `server`, if the kernel
/// lists it (it does for every TCP socket of this network namespace).
pub fn uid_of_client(client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let table = match client {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    find_uid(&text, client, server)
}

/// The uid column of the row whose local address is `client` and remote is `server`.
fn find_uid(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (parse(local)? == client && parse(remote)? == server).then(|| uid.parse().ok()).flatten()
    })
}

/// `0100007F:1F90`: the address as the kernel prints it (each 32-bit word of it as a number
/// in this machine's byte order), then the port, in hex.
fn parse(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| u32::from_str_radix(address.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes);
    let ip = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_loopback_client_socket_is_read_from_the_kernel_table() {
        // As /proc/net/tcp has it on a little-endian machine.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F48 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:C350 0100007F:1F48 01 00000000:00000000 00:00000000 00000000  1000        0 2 1
   2: 0100007F:1F48 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1";
        if cfg!(target_endian = "little") {
            let client: SocketAddr = "127.0.0.1:50000".parse().expect("address");
            let server: SocketAddr = "127.0.0.1:8008".parse().expect("address");
            assert_eq!(find_uid(table, client, server), Some(1000));
            assert_eq!(find_uid(table, server, client), Some(0), "the server's own end");
            assert_eq!(find_uid(table, "127.0.0.1:1".parse().expect("address"), server), None);
        }
    }

    #[test]
    fn this_process_is_found_as_the_owner_of_its_own_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
        let server = listener.local_addr().expect("address");
        let stream = std::net::TcpStream::connect(server).expect("connect");
        let client = stream.local_addr().expect("address");
        assert_eq!(uid_of_client(client, server), Some(nix::unistd::geteuid().as_raw()));
    }
}
