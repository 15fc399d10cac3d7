//! `halo agent`: the node daemon, laid out by concern. Decisions come from `halo-core`, the
//! cluster database from `halo-store`, the API's shapes from `halo-api`.
//!
//! - [`api`]: the HTTPS face: REST routes, the peer routes, the web console, `/metrics`.
//! - [`cluster`]: this node in its cluster: the [`Agent`], bootstrap (create, join), leader
//!   routing, admission, the leader's decisions (`manager`), heartbeats and the lease,
//!   certificate renewal, node fencing, the data disk.
//! - [`transport`]: who this node is (identity, certificates) and how it talks to others:
//!   TLS listeners, the peer client, per-address limits.
//! - [`workload`]: what runs roles: the fence guard and the agent's link to it, the executor,
//!   one module per resource kind (process, OCF, floating IP, VM with its QMP client), probes.
//! - [`survey`]: this node's answers to validation probes.
//! - [`observe`]: the structured agent log, metrics counters, the logs' size bound.
//! - Shared basics: [`config`], [`clock`], [`child`] (processes that die with their starter),
//!   [`safe_fs`], [`host`] (what this machine has), [`error`].

pub mod api;
pub mod child;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod host;
pub mod observe;
pub mod safe_fs;
pub mod survey;
pub mod transport;
pub mod workload;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};

pub use cluster::agent::Agent;
pub use config::{AgentArgs, AgentConfig};

/// Run an agent until `shutdown` resolves. Binds every listener first, so a taken address is
/// reported at once and nothing starts half-way.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    halo_security::install_crypto_provider();
    let (agent, guard_events) = Agent::new(config)?;
    let agent = Arc::new(agent);
    let cfg = &agent.config;
    // An unjoined agent's certificate and its fingerprint file exist before its port opens:
    // whoever can connect can pin it.
    let unjoined = agent.identity().member.is_none();
    let fingerprint = if unjoined { Some(agent.use_bootstrap_tls()?) } else { None };
    let api = TcpListener::bind(&cfg.api).await.with_context(|| format!("cannot listen on API address {}", cfg.api))?;
    let mut peer_listeners = Vec::new();
    let mut sockets = Vec::new();
    for net in &cfg.networks {
        peer_listeners.push(
            TcpListener::bind(net).await.with_context(|| format!("cannot listen on network address {net} (TCP)"))?,
        );
        let socket =
            UdpSocket::bind(net).await.with_context(|| format!("cannot listen on network address {net} (UDP)"))?;
        // Handed to the heartbeat thread's own runtime (see `cluster::heartbeat::run`).
        sockets.push(socket.into_std().with_context(|| format!("heartbeat socket on {net}"))?);
    }

    match agent.identity().member {
        Some(member) => {
            let tls = agent.data.load_node_tls()?;
            agent.start_member(member.node_id, tls, member.raft, std::collections::BTreeSet::new()).await?;
            tracing::info!(node = %cfg.name, cluster = %member.cluster, "agent started as member");
        }
        None => {
            let fingerprint = fingerprint.unwrap_or_default();
            tracing::info!(
                node = %cfg.name, api = %cfg.api, %fingerprint,
                "agent started; waiting for `halo cluster create` or `join` (pin it: --fingerprint {fingerprint})"
            );
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    let limits = cfg.connections;
    tasks.spawn(transport::serve::serve(api, agent.api_tls.clone(), api::api_router(agent.clone()), limits));
    for listener in peer_listeners {
        tasks.spawn(transport::serve::serve(listener, agent.peer_tls.clone(), api::peer_router(agent.clone()), limits));
    }
    tasks.spawn(cluster::heartbeat::run(agent.clone(), sockets));
    tasks.spawn(cluster::manager::run(agent.clone()));
    tasks.spawn(cluster::agent::declare_capacity(agent.clone()));
    tasks.spawn(api::validate::periodic(agent.clone()));
    tasks.spawn(cluster::renewal::run(agent.clone()));
    let disk = agent.clone();
    tasks.spawn(observe::bounded_log::run(cfg.data_dir.clone(), move || disk.data_disk.low()));
    tasks.spawn(cluster::data_disk::run(agent.clone()));
    if let Some(events) = guard_events {
        tasks.spawn(workload::executor::run(agent.clone(), events));
        // Learn now, off the runtime, whether KVM works here: VM starts then need not wait.
        std::thread::spawn(|| {
            if workload::vm::qemu_installed() {
                workload::vm::kvm_if_known();
            }
        });
    }

    let failed = tokio::select! {
        () = shutdown => None,
        why = cluster::data_disk::database_failed(agent.clone()) => Some(why),
    };
    if let Some(why) = failed {
        // Like a crash: the guard stops the roles when the lease runs out; nothing is asked
        // of a database that cannot write.
        tracing::error!("{why}");
        tasks.abort_all();
        anyhow::bail!(why);
    }
    tracing::info!("shutting down");
    agent.begin_shutdown();
    if let Some(member) = agent.member() {
        member.consensus.shutdown().await;
    }
    tasks.abort_all();
    Ok(())
}
