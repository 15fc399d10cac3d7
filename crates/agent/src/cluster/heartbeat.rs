//! Heartbeat I/O: one UDP socket per local network. A single sender wakes once per interval
//! and sends on every network to every peer (one wake-up, not one per network); a receiver per
//! socket hands what it hears to the endpoint and sends back the grant it answers with.
//! Everything the datagrams mean (freshness, the failure detector, the grant rule, the leases)
//! is `halo_core::heartbeat::Endpoint`, which the simulator runs too; this file only moves
//! bytes, reads the clock and tells the fence guard about the lease.

use std::sync::Arc;
use std::time::Duration;

use halo_core::heartbeat::{DATAGRAM_LEN, HeartbeatCodec, KeyRing, Leadership, Outgoing, View};
use halo_core::state::ClusterState;
use tokio::net::UdpSocket;

use crate::clock;
use crate::cluster::agent::{Agent, Member};

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
    for network in 0..sockets.len() {
        tasks.spawn(receive(agent.clone(), sockets.clone(), network));
    }
    tasks.spawn(send(agent, sockets));
    tasks.join_next().await;
}

/// The keys follow the cluster's id and key, which exist only once the cluster does. After a
/// key change the previous key is heard for two node timeouts (at least 5 s), the time every
/// node takes to apply the change.
fn keys_for<'a>(state: &ClusterState, ring: &'a mut Option<KeyRing>, now_us: u64) -> Option<&'a KeyRing> {
    let cluster = state.cluster.as_ref()?;
    let grace_us = state.settings.node_timeout_ms.saturating_mul(2).max(5_000).saturating_mul(1000);
    if ring.as_ref().is_some_and(|r| !r.is_for(&cluster.id, &cluster.heartbeat_key_hex)) {
        tracing::info!("heartbeat key changed; the previous one is heard for {} ms more", grace_us / 1000);
    }
    if let Err(e) = KeyRing::follow(ring, &cluster.id, &cluster.heartbeat_key_hex, now_us, grace_us) {
        tracing::error!("cannot use the cluster's heartbeat key: {e}");
        return None;
    }
    ring.as_ref()
}

/// What the endpoint needs to know of the cluster and of this node's leadership now.
fn view<'a>(member: &Member, state: &'a ClusterState) -> View<'a> {
    let leadership = member
        .consensus
        .leadership()
        .map(|(acked_ago_ms, committed_index)| Leadership { acked_ago_ms, committed_index });
    View { state, timing: state.settings.lease_timing(), leadership, report: None }
}

async fn send(agent: Arc<Agent>, sockets: Vec<Arc<UdpSocket>>) {
    let mut keys = None;
    // Whether this node held a lease at the last beat: one that ran out since is a lapse.
    let mut held = false;
    loop {
        let Some(member) = agent.member() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let state = member.reader.state();
        let now_us = clock::monotonic_us();
        let Some(current) = keys_for(&state, &mut keys, now_us).map(KeyRing::sending) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // Only what is sent carries this node's voter report.
        let view = View { report: member.voter_report(), ..view(member, &state) };
        let (out, deadline) = {
            let mut heartbeats = agent.heartbeats();
            let out = heartbeats.beat(&view, now_us);
            (out, heartbeats.lease().deadline_ms())
        };
        agent.sync_guard(deadline, view.timing.cleanup_ms());
        let holds = deadline.is_some_and(|d| d > now_us / 1000);
        if held && !holds {
            agent.metrics.lease_lapses.inc();
            tracing::warn!("this node's lease ran out: it may run no roles until the leader grants it one again");
        }
        held = holds;
        for outgoing in out {
            transmit(&sockets, current, &state, outgoing);
        }
        tokio::time::sleep(Duration::from_millis(state.settings.heartbeat_interval_ms)).await;
    }
}

/// Send one datagram from our socket on its network to the receiver's registered address
/// there (never to where a packet came from). Losses are expected (that is what the detector
/// is for): never block on them.
fn transmit(sockets: &[Arc<UdpSocket>], codec: &HeartbeatCodec, state: &ClusterState, outgoing: Outgoing) {
    let Some(socket) = sockets.get(outgoing.network) else { return };
    let address = state.nodes.get(&outgoing.to).and_then(|n| n.networks.get(outgoing.network));
    let Some(Ok(address)) = address.map(|a| a.address.parse::<std::net::SocketAddr>()) else { return };
    let _ = socket.try_send_to(&codec.encode(&outgoing.datagram), address);
}

async fn receive(agent: Arc<Agent>, sockets: Vec<Arc<UdpSocket>>, network: usize) {
    let mut buf = [0u8; 512];
    let mut keys = None;
    let Some(socket) = sockets.get(network).cloned() else { return };
    loop {
        let Ok((len, _from)) = socket.recv_from(&mut buf).await else { continue };
        if len != DATAGRAM_LEN {
            continue;
        }
        let Some(member) = agent.member() else { continue };
        let state = member.reader.state();
        let now_us = clock::monotonic_us();
        let Some(ring) = keys_for(&state, &mut keys, now_us) else { continue };
        let Ok(datagram) = ring.decode(&buf[..len], now_us) else { continue };
        let current = ring.sending().clone();
        let view = view(member, &state);
        let (answer, deadline) = {
            let mut heartbeats = agent.heartbeats();
            let answer = heartbeats.receive(datagram, network, &view, now_us);
            (answer, heartbeats.lease().deadline_ms())
        };
        agent.sync_guard(deadline, view.timing.cleanup_ms());
        if let Some(answer) = answer {
            transmit(&sockets, &current, &state, answer);
        }
    }
}
