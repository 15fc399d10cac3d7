//! `halo agent`: the node daemon.
//!
//! Layout: [`config`] and [`identity`] (what the agent is), [`runtime`] (membership, leader
//! routing, create/join), [`manager`] (decisions on the leader), [`executor`] (runs this
//! node's roles), [`guard`] and [`guard_link`] (the fence guard process and the agent's end of
//! it), [`heartbeat`] and [`peer`] (node-to-node I/O, leases), [`api`] and [`serve`] (HTTPS),
//! [`qmp`] (the QEMU Machine Protocol client), [`vm`] and [`vm_ops`] (VM roles: QEMU command
//! line, KVM probe, QMP operations and migration), [`survey`] and [`host`] (what `halo
//! validate` asks of each node), [`metrics`] (`/metrics`), [`cluster_log`] and [`log_api`] (the
//! agent's structured log and `halo log`), [`console`] (the web console). Decisions come from `halo-core`; the cluster database from
//! `halo-store`.

pub mod access;
pub mod address;
pub mod admission;
pub mod api;
pub mod bounded_log;
pub mod child;
pub mod clock;
pub mod cluster_log;
pub mod config;
pub mod console;
pub mod data_disk;
pub mod error;
pub mod events_api;
pub mod executor;
pub mod fence;
pub mod guard;
pub mod guard_link;
pub mod heartbeat;
pub mod host;
pub mod identity;
pub mod join;
pub mod local_peer;
pub mod log_api;
pub mod manager;
pub mod metrics;
pub mod ocf;
pub mod peer;
pub mod peer_identity;
pub mod probe;
pub mod probe_answer;
pub mod qmp;
pub mod renewal;
pub mod resource;
pub mod roles_api;
pub mod rotation_api;
pub mod runtime;
pub mod safe_fs;
pub mod serve;
pub mod throttle;
pub mod tokens_api;
pub mod validate_api;
pub mod vm;
pub mod vm_ops;
pub mod vm_tls;
pub mod watchdog;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};

pub use config::{AgentArgs, AgentConfig};
pub use runtime::Agent;

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
        // Handed to the heartbeat thread's own runtime (see `heartbeat::run`).
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
    tasks.spawn(serve::serve(api, agent.api_tls.clone(), api::api_router(agent.clone()), limits));
    for listener in peer_listeners {
        tasks.spawn(serve::serve(listener, agent.peer_tls.clone(), api::peer_router(agent.clone()), limits));
    }
    tasks.spawn(heartbeat::run(agent.clone(), sockets));
    tasks.spawn(manager::run(agent.clone()));
    tasks.spawn(runtime::declare_capacity(agent.clone()));
    tasks.spawn(validate_api::periodic(agent.clone()));
    tasks.spawn(renewal::run(agent.clone()));
    tasks.spawn(bounded_log::run(agent.clone()));
    tasks.spawn(data_disk::run(agent.clone()));
    if let Some(events) = guard_events {
        tasks.spawn(executor::run(agent.clone(), events));
        // Learn now, off the runtime, whether KVM works here: VM starts then need not wait.
        std::thread::spawn(|| {
            if vm::qemu_installed() {
                vm::kvm_if_known();
            }
        });
    }

    let failed = tokio::select! {
        () = shutdown => None,
        why = data_disk::database_failed(agent.clone()) => Some(why),
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
        let _ = member.raft.shutdown().await;
    }
    tasks.abort_all();
    Ok(())
}
