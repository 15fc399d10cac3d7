//! Heartbeat I/O: one UDP socket per local network. A single sender wakes once per interval
//! and sends on every network to every peer (one wake-up, not one per network); a receiver per
//! socket feeds what it hears into the failure detector. The leader answers each heartbeat with
//! a lease grant while Raft confirms its leadership; a node's grants become its lease (see
//! `halo_core::lease`). The decisions live in halo-core.

use std::sync::Arc;
use std::time::Duration;

use halo_core::heartbeat::{DATAGRAM_LEN, Datagram, Heartbeat, HeartbeatCodec, LeaseGrant};
use halo_core::state::ClusterState;
use tokio::net::UdpSocket;

use crate::clock;
use crate::runtime::Agent;

/// Run the heartbeats on a thread and runtime of their own, so that nothing else the agent
/// does (a slow request, a burst of log appends) can delay a heartbeat, a grant or a lease
/// renewal. Returns when they end; dropping the returned future stops them.
pub async fn run(agent: Arc<Agent>, sockets: Vec<std::net::UdpSocket>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("heartbeat".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(async move {
                tokio::select! {
                    () = run_here(agent, sockets) => {}
                    _ = stopped => {}
                }
            }),
            Err(e) => tracing::error!("cannot start the heartbeat runtime: {e}"),
        }
        let _ = done.send(());
    });
    if let Err(e) = thread {
        tracing::error!("cannot start the heartbeat thread: {e}");
        return;
    }
    let _ = finished.await;
    drop(stop);
}

/// The sender and one receiver per network; returns when any of them ends.
async fn run_here(agent: Arc<Agent>, sockets: Vec<std::net::UdpSocket>) {
    let mut bound = Vec::new();
    for socket in sockets {
        match UdpSocket::from_std(socket) {
            Ok(socket) => bound.push(Arc::new(socket)),
            Err(e) => {
                tracing::error!("heartbeat socket: {e}");
                return;
            }
        }
    }
    let sockets = bound;
    let mut tasks = tokio::task::JoinSet::new();
    for (network, socket) in sockets.iter().enumerate() {
        tasks.spawn(receive(agent.clone(), socket.clone(), network));
    }
    tasks.spawn(send(agent, sockets));
    tasks.join_next().await;
}

/// The codec follows the cluster's id and key, which exist only once the cluster does.
fn codec_for(state: &ClusterState, current: &mut Option<(String, HeartbeatCodec)>) -> Option<HeartbeatCodec> {
    let cluster = state.cluster.as_ref()?;
    if current.as_ref().is_none_or(|(id, _)| id != &cluster.id) {
        let key = hex::decode(&cluster.heartbeat_key_hex).unwrap_or_default();
        *current = Some((cluster.id.clone(), HeartbeatCodec::new(&key, &cluster.id)));
    }
    current.as_ref().map(|(_, c)| c.clone())
}

async fn send(agent: Arc<Agent>, sockets: Vec<Arc<UdpSocket>>) {
    let mut sequence = 0u64;
    let mut codec = None;
    loop {
        let Some(member) = agent.member() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let state = member.reader.state();
        let Some(current) = codec_for(&state, &mut codec) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        sequence += 1;
        let now_us = clock::monotonic_us();
        let now = now_us / 1000;
        watch_members(&agent, &state, member.id, now);
        // The leader's own (shorter) lease runs from the last time a quorum confirmed its
        // leadership; a leader that must be fenced stops renewing it.
        let timing = agent.lease_timing(&state);
        if let Some((ago, committed)) = member.leadership()
            && timing.may_grant(Some(ago))
            && state.nodes.get(&member.id).is_some_and(|n| n.fence_request.is_none())
        {
            agent.lease_granted(now.saturating_sub(ago), timing.leader_lease_ms(), committed, now);
            agent.granted_to(member.id, now.saturating_sub(ago));
        }
        send_round(&agent, &sockets, &current, &state, member.id, sequence, now_us);
        tokio::time::sleep(Duration::from_millis(state.settings.heartbeat_interval_ms)).await;
    }
}

/// One heartbeat to every peer on every network, each echoing the last one heard from it there.
fn send_round(
    agent: &Agent,
    sockets: &[Arc<UdpSocket>],
    codec: &HeartbeatCodec,
    state: &ClusterState,
    me: u64,
    sequence: u64,
    now_us: u64,
) {
    let mut round_trips = agent.round_trips.lock().unwrap_or_else(|p| p.into_inner());
    round_trips.sent(sequence, now_us);
    for (network, socket) in sockets.iter().enumerate() {
        for node in state.nodes.values().filter(|n| n.id != me) {
            let Some(Ok(address)) = node.networks.get(network).map(|n| n.address.parse()) else { continue };
            let echo = round_trips.echo_for(node.id, network, now_us);
            let heartbeat = Heartbeat { from: me, network: network as u8, sequence, sent_at_ms: now_us / 1000, echo };
            // Losses are expected (that is what the detector is for); never block on them.
            let _ = socket.try_send_to(&codec.encode(&Datagram::Heartbeat(heartbeat)), address);
        }
    }
}

async fn receive(agent: Arc<Agent>, socket: Arc<UdpSocket>, network: usize) {
    let mut buf = [0u8; 512];
    let mut codec = None;
    loop {
        let Ok((len, _from)) = socket.recv_from(&mut buf).await else { continue };
        if len != DATAGRAM_LEN {
            continue;
        }
        let Some(member) = agent.member() else { continue };
        let state = member.reader.state();
        let Some(current) = codec_for(&state, &mut codec) else { continue };
        let now_us = clock::monotonic_us();
        let now = now_us / 1000;
        match current.decode(&buf[..len]) {
            Ok(Datagram::Heartbeat(hb)) => {
                if let Ok(mut d) = agent.detector.lock() {
                    d.heard(hb.from, network, now);
                }
                if let Ok(mut r) = agent.round_trips.lock() {
                    r.heard(hb.from, network, hb.sequence, hb.echo, now_us);
                }
                if let Some((grant, address)) = grant_for(&agent, member, &state, &hb) {
                    agent.granted_to(hb.from, now);
                    let _ = socket.try_send_to(&current.encode(&Datagram::LeaseGrant(grant)), address);
                }
            }
            Ok(Datagram::LeaseGrant(grant)) if grant.to == member.id => {
                if let Ok(mut d) = agent.detector.lock() {
                    d.heard(grant.from, network, now);
                }
                agent.lease_granted(grant.sent_at_ms, grant.lease_ms, grant.committed_index, now);
            }
            _ => {}
        }
    }
}

/// The leader's answer to a heartbeat: a lease, while a quorum recently confirmed it leads,
/// unless the node is to be fenced. Sent to the node's registered address on that network,
/// never to the packet's source.
fn grant_for(
    agent: &Agent,
    member: &crate::runtime::Member,
    state: &ClusterState,
    hb: &Heartbeat,
) -> Option<(LeaseGrant, std::net::SocketAddr)> {
    let node = state.nodes.get(&hb.from).filter(|n| !n.witness && n.fence_request.is_none())?;
    let (ago, committed_index) = member.leadership()?;
    if !agent.lease_timing(state).may_grant(Some(ago)) {
        return None;
    }
    let address = node.networks.get(hb.network as usize)?.address.parse().ok()?;
    let grant = LeaseGrant {
        from: member.id,
        to: hb.from,
        network: hb.network,
        sequence: hb.sequence,
        sent_at_ms: hb.sent_at_ms,
        lease_ms: state.settings.lease_ms,
        committed_index,
    };
    Some((grant, address))
}

/// Keep the detector's watch list (and the round trips) equal to the current members.
fn watch_members(agent: &Agent, state: &ClusterState, me: u64, now: u64) {
    if let Ok(mut d) = agent.detector.lock() {
        d.set_timeout_ms(state.settings.node_timeout_ms);
        for node in state.nodes.values().filter(|n| n.id != me) {
            d.watch(node.id, node.networks.len(), now);
        }
        d.retain(|id| state.nodes.contains_key(&id));
    }
    if let Ok(mut r) = agent.round_trips.lock() {
        r.retain(|id| state.nodes.contains_key(&id));
    }
}
