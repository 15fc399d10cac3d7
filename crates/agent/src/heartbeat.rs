//! Heartbeat I/O: one UDP socket per local network, sending to every peer on the same network
//! and feeding what it hears into the failure detector. The decisions live in halo-core.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use halo_core::heartbeat::{DATAGRAM_LEN, Heartbeat, HeartbeatCodec};
use halo_core::membership::FailureDetector;
use tokio::net::UdpSocket;

use crate::clock;
use crate::runtime::Agent;

pub async fn run(agent: Arc<Agent>, socket: UdpSocket, network: usize) {
    let mut sequence = 0u64;
    let mut buf = [0u8; 512];
    let mut codec: Option<(String, HeartbeatCodec)> = None;
    let mut next_send = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_send) => {
                let Some(member) = agent.member() else {
                    next_send += Duration::from_millis(200);
                    continue;
                };
                let state = member.reader.state();
                let Some(cluster) = &state.cluster else {
                    next_send += Duration::from_millis(100);
                    continue;
                };
                if codec.as_ref().is_none_or(|(id, _)| id != &cluster.id) {
                    let key = hex::decode(&cluster.heartbeat_key_hex).unwrap_or_default();
                    codec = Some((cluster.id.clone(), HeartbeatCodec::new(&key, &cluster.id)));
                }
                let interval = Duration::from_millis(state.settings.heartbeat_interval_ms);
                next_send = tokio::time::Instant::now() + interval;
                let Some((_, codec)) = &codec else { continue };
                sequence += 1;
                let now = clock::monotonic_ms();
                watch_members(&agent.detector, &state, member.id, now);
                let datagram = codec.encode(&Heartbeat { from: member.id, network: network as u8, sequence, sent_at_ms: now });
                for node in state.nodes.values().filter(|n| n.id != member.id) {
                    if let Some(net) = node.networks.get(network) {
                        // Losses are expected (that is what the detector is for); never block on them.
                        let _ = socket.try_send_to(&datagram, match net.address.parse() {
                            Ok(a) => a,
                            Err(_) => continue,
                        });
                    }
                }
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((len, _from)) = received else { continue };
                if len != DATAGRAM_LEN { continue; }
                if let Some((_, codec)) = &codec
                    && let Ok(hb) = codec.decode(&buf[..len])
                        && let Ok(mut d) = agent.detector.lock() {
                            d.heard(hb.from, network, clock::monotonic_ms());
                        }
            }
        }
    }
}

/// Keep the detector's watch list equal to the current members.
fn watch_members(detector: &Arc<Mutex<FailureDetector>>, state: &halo_core::state::ClusterState, me: u64, now: u64) {
    if let Ok(mut d) = detector.lock() {
        d.set_timeout_ms(state.settings.node_timeout_ms);
        for node in state.nodes.values().filter(|n| n.id != me) {
            d.watch(node.id, node.networks.len(), now);
        }
        d.retain(|id| state.nodes.contains_key(&id));
    }
}
