//! The agent process: its listeners, its membership in a cluster, and the routing of requests
//! that only the Raft leader may carry out.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use halo_api::cluster::DatabaseView;
use halo_api::cluster::NetworkView;
use halo_api::cluster::NodeView;
use halo_api::cluster::StatusView;
use halo_api::membership::AdmissionRequest;
use halo_api::membership::AdmissionResponse;
use halo_api::roles::RoleDetailView;
use halo_api::roles::RoleView;
use halo_core::command::{Command, CommandResult};
use halo_core::heartbeat::{Endpoint, first_sequence};
use halo_core::settings::ClusterSettings;
use halo_core::state::{ClusterInfo, ClusterState, NetworkRecord, NetworkState, NodeRecord, NodeState};
use halo_core::timing::{Profile, RaftTiming};
use halo_security::ca::{self, ClusterCa};
use halo_store::{Consensus, ConsensusError, Database, LogStore, PeerNode, StateMachine, StateReader};
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, mpsc};

use crate::clock;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::transport::identity::{DataDir, Identity, Membership, NodeTls};
use crate::transport::peer::{PeerClients, PeerError};
use crate::transport::serve::TlsSlot;
use crate::workload::guard::ToGuard;
use crate::workload::guard_link::{GuardEvent, GuardLink};

/// How long a client write may wait for a commit before we report the cluster as not quorate.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Agent {
    pub config: AgentConfig,
    pub data: DataDir,
    pub identity: Mutex<Identity>,
    pub api_tls: TlsSlot,
    pub peer_tls: TlsSlot,
    /// This node's end of the heartbeat protocol: failure detector, round trips, the leases it
    /// grants while it leads and the one it holds (`halo_core::heartbeat::Endpoint`).
    pub heartbeats: Arc<Mutex<Endpoint>>,
    /// This run of the agent (see `DataDir::next_incarnation`).
    incarnation: u32,
    member: OnceCell<Arc<Member>>,
    /// Serializes create and join: an agent bootstraps once.
    pub bootstrap: tokio::sync::Mutex<()>,
    /// The fence guard that enforces the lease; none on a witness, which runs nothing.
    pub guard: Option<Arc<GuardLink>>,
    /// Fence-agent attempts against silent nodes (used while this node leads).
    pub fencing: Arc<crate::cluster::fence::Fencing>,
    /// Test locks held for a validation survey's storage test.
    pub survey_locks: crate::survey::answer::HeldLocks,
    /// What `/metrics` accumulates between scrapes.
    pub metrics: crate::observe::metrics::Metrics,
    /// What the agent last saw of its data directory's disk.
    pub data_disk: crate::cluster::data_disk::DataDisk,
    /// Set once the agent is stopping: it starts nothing new from then on.
    shutting_down: std::sync::atomic::AtomicBool,
}

/// A lease extension smaller than this is not worth waking the fence guard for.
const GUARD_LEASE_STEP_MS: u64 = 50;

/// A node that belongs to a cluster.
pub struct Member {
    pub id: u64,
    /// Raft on this node (halo-store's words: no openraft type reaches the agent).
    pub consensus: Consensus,
    pub reader: StateReader,
    pub peers: PeerClients,
    /// This node's certificate and key as in use (renewed by `renewal`).
    pub tls: std::sync::RwLock<NodeTls>,
    /// The Raft timing this member runs (its cluster's).
    pub raft_timing: RaftTiming,
    /// Certificates no node may use, as the cluster database lists them (shared with the TLS
    /// verifiers of both directions).
    pub revoked: halo_security::revocation::Revoked,
}

/// How long a read waits for the leader before answering from this node's copy.
const READ_BUDGET: Duration = Duration::from_secs(2);

/// Requests only the leader may carry out; followers forward them over the peer transport.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderRequest {
    Write(Command),
    Admit(AdmissionRequest),
    Remove {
        name: String,
    },
    Status,
    ShowRole {
        name: String,
    },
    ShowCluster,
    /// A node asks for a new certificate for a key it made (`renewal`); only that node may.
    Renew {
        node: String,
        csr_pem: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum LeaderReply {
    Written(CommandResult),
    Renewed { cert_pem: String },
    Admitted(AdmissionResponse),
    Removed,
    Status(Box<StatusView>),
    Role(Box<RoleDetailView>),
    Cluster(Box<halo_api::cluster::ClusterView>),
}

impl Agent {
    /// Returns the agent and, unless it is a witness, the fence guard's events for the executor.
    pub fn new(config: AgentConfig) -> anyhow::Result<(Self, Option<mpsc::UnboundedReceiver<GuardEvent>>)> {
        let data = DataDir::open(&config.data_dir)?;
        let identity = data.load_or_create_identity(&config.name)?;
        let incarnation = data.next_incarnation()?;
        let (guard, events) = if config.witness {
            (None, None)
        } else {
            let (link, events) = GuardLink::start(config.data_dir.clone(), config.watchdog.clone());
            (Some(link), Some(events))
        };
        let agent = Self {
            data,
            identity: Mutex::new(identity),
            api_tls: Arc::new(std::sync::RwLock::new(None)),
            peer_tls: Arc::new(std::sync::RwLock::new(None)),
            // Replaced by the node's own once it is a member (`start_member`).
            heartbeats: Arc::new(Mutex::new(Endpoint::new(0, first_sequence(incarnation), 0))),
            incarnation,
            member: OnceCell::new(),
            bootstrap: tokio::sync::Mutex::new(()),
            fencing: Arc::default(),
            survey_locks: Default::default(),
            metrics: Default::default(),
            data_disk: Default::default(),
            shutting_down: Default::default(),
            guard,
            config,
        };
        Ok((agent, events))
    }

    /// The heartbeat endpoint, even if a panic poisoned its lock (it holds no invariant a
    /// half-done step could break that the next step does not repair).
    pub fn heartbeats(&self) -> std::sync::MutexGuard<'_, Endpoint> {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tell the fence guard about the lease this node now holds, if it grew enough to be
    /// worth waking it for. Called after every heartbeat step.
    pub fn sync_guard(&self, deadline_ms: Option<u64>, cleanup_ms: u64) {
        let (Some(guard), Some(deadline_ms)) = (&self.guard, deadline_ms) else { return };
        if guard.deadline_ms().is_none_or(|d| deadline_ms >= d + GUARD_LEASE_STEP_MS)
            || guard.cleanup_ms() != cleanup_ms
        {
            guard.send(ToGuard::Lease { deadline_ms, cleanup_ms });
        }
    }

    /// The agent is stopping: from now on it starts nothing (what runs is left to the guard
    /// and the lease).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether this node may start roles now: it holds a lease (as the fence guard enforces
    /// it, with time left to undo what a start holds), its copy of the database has caught up with what the leader had committed when it
    /// granted, and it is not stopping.
    pub fn may_start_roles(&self, applied_index: u64, now_ms: u64) -> bool {
        let cleanup_ms = self.guard.as_ref().map_or(0, |g| g.cleanup_ms());
        !self.stopping()
            && self.lease_remaining_ms(now_ms) > cleanup_ms
            && self.heartbeats().may_start(applied_index, now_ms)
    }

    /// This node's smoothed heartbeat round trip to `peer` on `network`, in µs; none when that
    /// path has been silent for longer than the node timeout (its last figure is stale).
    pub fn round_trip_us(&self, peer: u64, network: usize) -> Option<u64> {
        let max_age_us = self.member()?.reader.state().settings.node_timeout_ms.saturating_mul(1000);
        self.heartbeats().round_trip(peer, network, clock::monotonic_us(), max_age_us).map(|r| r.smoothed_us)
    }

    /// How long ago this node's lease was last renewed (none: never granted).
    pub fn lease_age_ms(&self, now_ms: u64) -> Option<u64> {
        self.heartbeats().lease().age_ms(now_ms)
    }

    /// How much longer this node may run roles: what the fence guard enforces.
    pub fn lease_remaining_ms(&self, now_ms: u64) -> u64 {
        self.guard.as_ref().and_then(|g| g.deadline_ms()).map_or(0, |d| d.saturating_sub(now_ms))
    }

    pub fn member(&self) -> Option<&Arc<Member>> {
        self.member.get()
    }

    pub fn identity(&self) -> Identity {
        self.identity.lock().map(|i| i.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn hosts(&self) -> Vec<String> {
        let mut all = vec![self.config.api.as_str()];
        all.extend(self.config.networks.iter().map(String::as_str));
        ca::hosts_of(all)
    }

    fn peer_node(&self) -> PeerNode {
        PeerNode {
            name: self.config.name.clone(),
            api: self.config.api.clone(),
            networks: self.config.networks.clone(),
        }
    }

    /// Serve the API with the bootstrap certificate until the agent joins a cluster. Returns
    /// its fingerprint, also written to `DATA_DIR/bootstrap.fingerprint` for the admin to pin.
    pub fn use_bootstrap_tls(&self) -> anyhow::Result<String> {
        let (cert, key) = self.data.bootstrap_tls(&self.config.name, &self.hosts())?;
        let fingerprint = ca::fingerprint(&cert)?;
        self.data.write("bootstrap.fingerprint", &format!("{fingerprint}\n"))?;
        set_slot(&self.api_tls, Some(halo_security::tls::server_config(&cert, &key)?));
        Ok(fingerprint)
    }

    /// Both listeners present `tls`; the peer listener checks clients against the CA and
    /// `revoked`.
    fn serve_node_tls(&self, tls: &NodeTls, revoked: &halo_security::revocation::Revoked) -> anyhow::Result<()> {
        set_slot(
            &self.peer_tls,
            Some(halo_security::tls::peer_server_config(&tls.cert_pem, &tls.key_pem, &tls.ca_pem, revoked)?),
        );
        set_slot(&self.api_tls, Some(halo_security::tls::server_config(&tls.cert_pem, &tls.key_pem)?));
        Ok(())
    }

    /// Put a renewed certificate in use: new connections to and from this node present it.
    pub fn use_node_tls(&self, member: &Member, tls: NodeTls) -> anyhow::Result<()> {
        self.serve_node_tls(&tls, &member.revoked)?;
        member.peers.reload(&tls, &member.revoked)?;
        match member.tls.write() {
            Ok(mut current) => *current = tls,
            Err(_) => anyhow::bail!("node TLS lock poisoned"),
        }
        Ok(())
    }

    /// Become a member: open the database, start Raft, switch the listeners to cluster TLS.
    /// Raft runs with the cluster's timing: as this node's copy of the database has it, else
    /// as the caller knows it (`raft`: from `create`, the admission, or the membership file).
    /// `revoked`: the serials the leader named at admission, in force until this node has the
    /// cluster's state (`peer_identity::follow_revocations`).
    pub async fn start_member(
        &self,
        node_id: u64,
        tls: NodeTls,
        raft: Option<RaftTiming>,
        revoked: BTreeSet<String>,
    ) -> anyhow::Result<Arc<Member>> {
        let db = Database::open(&self.data.database_path())?;
        let machine = StateMachine::open(db.clone())?;
        let reader = machine.reader();
        let stored = reader.state();
        let t = if stored.cluster.is_some() { stored.settings.raft } else { raft.unwrap_or_default() };
        if let Some(mine) = self.config.timing
            && mine != t
        {
            anyhow::bail!(
                "this agent's [timing] ({}) differs from its cluster's ({}); every node runs the same Raft \
                 timing, fixed when the cluster was created: remove [timing] from the agent's configuration",
                describe(&mine),
                describe(&t)
            );
        }
        *self.heartbeats() =
            Endpoint::new(node_id, first_sequence(self.incarnation), reader.state().settings.node_timeout_ms);
        let revoked_set = halo_security::revocation::Revoked::default();
        let seed = if stored.cluster.is_some() { stored.revoked.keys().cloned().collect() } else { revoked };
        revoked_set.replace(seed.clone());
        let peers = PeerClients::new(&tls, &self.config.networks, self.heartbeats.clone(), &revoked_set)?;
        let log = LogStore::new(db, node_id, clock::monotonic_ms()).context("reading the Raft vote")?;
        let consensus = Consensus::start(node_id, t, peers.clone(), log, machine).await.context("starting Raft")?;
        self.serve_node_tls(&tls, &revoked_set)?;
        tokio::spawn(crate::transport::peer_identity::follow_revocations(reader.clone(), revoked_set.clone(), seed));
        let member = Arc::new(Member {
            id: node_id,
            consensus,
            reader,
            peers,
            tls: std::sync::RwLock::new(tls),
            raft_timing: t,
            revoked: revoked_set,
        });
        self.member.set(member.clone()).map_err(|_| anyhow::anyhow!("agent is already a member"))?;
        Ok(member)
    }

    /// `halo cluster create`: this agent becomes the first node of a new cluster.
    /// `profile` sets the lease timing and, unless this agent's `[timing]` says otherwise, the
    /// Raft timing.
    pub async fn create_cluster(&self, name: &str, profile: Profile) -> Result<(String, String), AgentError> {
        let _guard = self.bootstrap.lock().await;
        self.refuse_if_member()?;
        halo_core::state::validate_node_name(name).map_err(|_| {
            AgentError::bad_request(format!("invalid cluster name '{name}': use letters, digits, '-', '_' or '.'"))
        })?;
        let ca = ClusterCa::generate(name).map_err(|e| AgentError::internal(e.to_string()))?;
        let key = ca::generate_node_key().map_err(|e| AgentError::internal(e.to_string()))?;
        let csr = ca::certificate_request(&key, &self.config.name).map_err(|e| AgentError::internal(e.to_string()))?;
        let now = clock::wall_ms();
        let lifetime = ClusterSettings::default().certificate_lifetime_ms;
        let cert = ca
            .issue_node_certificate(&csr, &self.config.name, &self.hosts(), now, lifetime)
            .map_err(|e| AgentError::internal(e.to_string()))?;
        let admin_token = halo_security::random_secret();
        let cluster = ClusterInfo {
            name: name.to_string(),
            id: halo_security::random_secret()[..32].to_string(),
            created_at_ms: now,
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: ca.key_pem.clone(),
            admin_token_sha256: halo_security::sha256_hex(&admin_token),
            heartbeat_key_hex: halo_security::random_secret(),
            ca_rotation: None,
        };
        let first_certificate = halo_core::state::CertificateRecord {
            serial: cert.serial,
            not_after_ms: cert.not_after_ms,
            ca_sha256: String::new(),
        };
        let tls = NodeTls { cert_pem: cert.pem, key_pem: key, ca_pem: ca.cert_pem.clone() };
        self.data.save_node_tls(&tls)?;
        let raft = self.config.timing.unwrap_or(profile.raft());
        let membership =
            Membership { node_id: 1, cluster: name.to_string(), cluster_id: cluster.id.clone(), raft: Some(raft) };
        self.save_membership(membership)?;
        let member = self
            .start_member(1, tls, Some(raft), BTreeSet::new())
            .await
            .map_err(|e| AgentError::internal(format!("{e:#}")))?;
        member
            .consensus
            .initialize(self.peer_node())
            .await
            .map_err(|e| AgentError::internal(format!("initializing Raft: {e}")))?;
        let first_node = NodeRecord {
            id: 1,
            name: self.config.name.clone(),
            api: self.config.api.clone(),
            networks: self.networks_record(),
            state: NodeState::Up,
            witness: self.config.witness,
            voter: true,
            joined_at_ms: now,
            state_since_ms: now,
            drain: false,
            capacity: Some(self.config.capacity),
            fence_request: None,
            data_disk_low: None,
        };
        let command = Command::CreateCluster {
            cluster: Box::new(cluster),
            first_node,
            settings: ClusterSettings::of(profile, raft),
            first_certificate: Some(first_certificate),
        };
        // The single-node cluster elects itself at once; wait for that, then commit.
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        loop {
            match self.write_as_leader(&member, command.clone()).await {
                Ok(CommandResult::Rejected(r)) => return Err(AgentError::conflict(r.to_string())),
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("waiting to become leader: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((admin_token, ca.cert_pem))
    }

    /// `halo cluster join`: ask a member (any peer in the token) to admit this agent.
    pub async fn join_cluster(&self, token_text: &str) -> Result<AdmissionResponse, AgentError> {
        let _guard = self.bootstrap.lock().await;
        self.refuse_if_member()?;
        let token =
            halo_security::token::JoinToken::decode(token_text).map_err(|e| AgentError::bad_request(e.to_string()))?;
        if token.expires_at_ms <= clock::wall_ms() {
            return Err(AgentError::bad_request("join token has expired; issue a new one with `halo cluster token`"));
        }
        let key = ca::generate_node_key().map_err(|e| AgentError::internal(e.to_string()))?;
        let request = AdmissionRequest {
            token_id: token.id.clone(),
            token_secret: token.secret.clone(),
            name: self.config.name.clone(),
            api: self.config.api.clone(),
            networks: self.config.networks.clone(),
            witness: self.config.witness,
            capacity: Some(self.config.capacity),
            csr_pem: ca::certificate_request(&key, &self.config.name)
                .map_err(|e| AgentError::internal(e.to_string()))?,
            raft: self.config.timing,
        };
        let mut failures = Vec::new();
        let mut admitted = None;
        for peer in &token.peers {
            match crate::cluster::join::request_admission(peer, &token.ca_sha256, &request).await {
                Ok(response) => {
                    admitted = Some(response);
                    break;
                }
                Err(crate::cluster::join::JoinError::Refused(e)) => return Err(e),
                Err(crate::cluster::join::JoinError::Unreachable(e)) => failures.push(format!("{peer}: {e}")),
            }
        }
        let Some(admitted) = admitted else {
            return Err(AgentError::PeerUnreachable(format!(
                "could not reach any cluster peer named in the token ({})",
                failures.join("; ")
            )));
        };
        let tls = NodeTls { cert_pem: admitted.cert_pem.clone(), key_pem: key, ca_pem: admitted.ca_cert_pem.clone() };
        self.data.save_node_tls(&tls)?;
        self.save_membership(Membership {
            node_id: admitted.id,
            cluster: admitted.cluster.clone(),
            cluster_id: admitted.cluster_id.clone(),
            raft: Some(admitted.raft),
        })?;
        self.start_member(admitted.id, tls, Some(admitted.raft), admitted.revoked.iter().cloned().collect())
            .await
            .map_err(|e| AgentError::internal(format!("{e:#}")))?;
        Ok(admitted)
    }

    fn refuse_if_member(&self) -> Result<(), AgentError> {
        if let Some(m) = &self.identity().member {
            return Err(AgentError::conflict(format!(
                "node '{}' already belongs to cluster '{}'; a node belongs to one cluster at a time",
                self.config.name, m.cluster
            )));
        }
        Ok(())
    }

    fn save_membership(&self, membership: Membership) -> Result<(), AgentError> {
        let mut identity = self.identity();
        identity.member = Some(membership);
        self.data.save_identity(&identity)?;
        if let Ok(mut i) = self.identity.lock() {
            *i = identity;
        }
        Ok(())
    }

    fn networks_record(&self) -> Vec<NetworkRecord> {
        self.config.networks.iter().map(|a| NetworkRecord { address: a.clone(), state: NetworkState::Up }).collect()
    }

    pub fn require_member(&self) -> Result<&Arc<Member>, AgentError> {
        self.member().ok_or_else(|| {
            AgentError::conflict(format!(
                "node '{}' is not part of a cluster yet: run `halo cluster create` or `halo cluster join` against it",
                self.config.name
            ))
        })
    }

    /// Carry out `request` on the leader: here if we lead, otherwise forwarded to it.
    pub async fn on_leader(&self, request: LeaderRequest) -> Result<LeaderReply, AgentError> {
        let member = self.require_member()?;
        if member.consensus.is_leader() {
            return self.handle_as_leader(member, request).await;
        }
        let raft = member.consensus.status();
        let Some(leader) = raft.leader else {
            return Err(no_quorum(&format!("no leader is elected (term {})", raft.term)));
        };
        let node = raft
            .leader_node
            .ok_or_else(|| AgentError::unavailable(format!("leader {leader} is not in the membership yet")))?;
        let timeout = WRITE_TIMEOUT + Duration::from_secs(10);
        match member.peers.post::<_, LeaderReply>(&node, "/peer/v1/leader", &request, timeout).await {
            Ok(reply) => Ok(reply),
            Err(PeerError::Status(status, body)) => {
                let message = serde_json::from_str::<halo_api::ErrorView>(&body).map(|e| e.error).unwrap_or(body);
                Err(AgentError::from_status(status, message))
            }
            Err(e) => Err(no_quorum(&format!("the leader '{}' cannot be reached: {e}", node.name))),
        }
    }

    /// Entry point of forwarded requests: refuses (instead of forwarding again) if we no longer lead.
    /// `from`: the node that forwarded it, by its certificate.
    pub async fn handle_forwarded(
        &self,
        request: LeaderRequest,
        from: Option<&crate::transport::peer_identity::PeerIdentity>,
    ) -> Result<LeaderReply, AgentError> {
        let member = self.require_member()?;
        if let LeaderRequest::Renew { node, .. } = &request
            && from.is_none_or(|f| &f.0.name != node)
        {
            return Err(AgentError::forbidden(format!("only node '{node}' may renew its certificate")));
        }
        if !member.consensus.is_leader() {
            return Err(AgentError::unavailable("leadership moved while the request was in flight; retry"));
        }
        self.handle_as_leader(member, request).await
    }

    async fn handle_as_leader(&self, member: &Arc<Member>, request: LeaderRequest) -> Result<LeaderReply, AgentError> {
        match request {
            LeaderRequest::Write(command) => {
                self.require_quorum(member)?;
                match self.write_as_leader(member, command).await? {
                    CommandResult::Rejected(r) => Err(rejection_error(&r)),
                    result => Ok(LeaderReply::Written(result)),
                }
            }
            LeaderRequest::Admit(request) => self.admit(member, request).await.map(LeaderReply::Admitted),
            LeaderRequest::Remove { name } => self.remove(member, &name).await.map(|()| LeaderReply::Removed),
            LeaderRequest::Renew { node, csr_pem } => {
                self.renew(member, &node, &csr_pem).await.map(|cert_pem| LeaderReply::Renewed { cert_pem })
            }
            LeaderRequest::Status => {
                self.confirm_leadership(member).await?;
                Ok(LeaderReply::Status(Box::new(self.local_status(member))))
            }
            LeaderRequest::ShowRole { name } => {
                self.confirm_leadership(member).await?;
                Ok(LeaderReply::Role(Box::new(self.local_role(&name)?)))
            }
            LeaderRequest::ShowCluster => {
                self.confirm_leadership(member).await?;
                Ok(LeaderReply::Cluster(Box::new(self.local_cluster()?)))
            }
        }
    }

    /// Before a leader answers a read: it still leads (a quorum says so now), and everything
    /// acknowledged before the read is applied here. A deposed leader that has not noticed
    /// yet (a node that was hung) learns it here instead of answering with what it had.
    async fn confirm_leadership(&self, member: &Member) -> Result<(), AgentError> {
        tokio::time::timeout(WRITE_TIMEOUT, member.consensus.confirm_leadership())
            .await
            .map_err(|_| no_quorum("the leader could not confirm it still leads"))?
            .map_err(|e| AgentError::unavailable(format!("the leader cannot serve a consistent read: {e}")))?;
        Ok(())
    }

    /// A read answered by the leader, within `READ_BUDGET`. When this node believed it led
    /// and learned otherwise while confirming it (it was hung, and deposed meanwhile), the
    /// read is asked again: by then this node knows who leads. None when no leader answered
    /// (the caller answers from its own copy, saying so).
    pub async fn read_from_leader(&self, request: LeaderRequest) -> Option<Result<LeaderReply, AgentError>> {
        let deadline = tokio::time::Instant::now() + READ_BUDGET;
        let mut asked_again = false;
        loop {
            let believed_leading = self.member().is_some_and(|m| m.consensus.is_leader());
            match tokio::time::timeout_at(deadline, self.on_leader(request.clone())).await {
                Ok(Ok(reply)) => return Some(Ok(reply)),
                Ok(Err(e @ AgentError::NotFound(_))) => return Some(Err(e)),
                Ok(Err(e)) if believed_leading && !asked_again => {
                    tracing::debug!("leader read: {}; asking the leader there is now", e);
                    asked_again = true;
                    // Raft's view catches up with what the confirmation learned.
                    while self.member().is_some_and(|m| m.consensus.is_leader())
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                _ => return None,
            }
        }
    }

    /// Fail fast when the leader has not heard from a quorum recently, instead of hanging.
    pub(crate) fn require_quorum(&self, member: &Member) -> Result<(), AgentError> {
        if member.consensus.has_quorum(member.raft_timing.election_timeout_max_ms) {
            Ok(())
        } else {
            let voters = member.consensus.status().voters.len();
            Err(no_quorum(&format!("this leader has not heard from a majority of the {voters} voters")))
        }
    }

    pub async fn write_as_leader(&self, member: &Member, command: Command) -> Result<CommandResult, AgentError> {
        match tokio::time::timeout(WRITE_TIMEOUT, member.consensus.write(command)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ConsensusError::NotLeader)) => {
                Err(AgentError::unavailable("this node is no longer the leader; retry"))
            }
            Ok(Err(e)) => Err(AgentError::unavailable(format!("write failed: {e}"))),
            Err(_) => Err(no_quorum(&format!("the write was not committed within {} s", WRITE_TIMEOUT.as_secs()))),
        }
    }

    async fn remove(&self, member: &Arc<Member>, name: &str) -> Result<(), AgentError> {
        self.require_quorum(member)?;
        let state = member.reader.state();
        let node = state.node_by_name(name).ok_or_else(|| AgentError::not_found(format!("no node named '{name}'")))?;
        if node.id == member.id {
            return Err(AgentError::conflict(format!(
                "node '{name}' is the current leader; stop its agent first so another node takes over, then remove it"
            )));
        }
        if let Some(role) = state.roles.values().find(|r| r.owner == Some(node.id)) {
            return Err(AgentError::conflict(format!(
                "node '{name}' still owns role '{}'; move or stop its roles first",
                role.spec.name
            )));
        }
        tokio::time::timeout(WRITE_TIMEOUT, member.consensus.remove(node.id))
            .await
            .map_err(|_| no_quorum("the membership change was not committed in time"))?
            .map_err(|e| AgentError::unavailable(format!("membership change failed: {e}")))?;
        // The removed node knew the heartbeat key: every node switches to a new one.
        let command = Command::RemoveNode {
            node: node.id,
            heartbeat_key_hex: Some(halo_security::random_secret()),
            now_ms: clock::wall_ms(),
        };
        match self.write_as_leader(member, command).await? {
            CommandResult::Rejected(r) => Err(rejection_error(&r)),
            _ => Ok(()),
        }
    }

    /// One role as this node's copy of the database has it.
    /// The cluster's name and settings from this node's copy of the database.
    pub fn local_cluster(&self) -> Result<halo_api::cluster::ClusterView, AgentError> {
        let state = self.require_member()?.reader.state();
        let cluster = state.cluster.as_ref().ok_or_else(|| AgentError::conflict("no cluster"))?;
        Ok(halo_api::cluster::ClusterView {
            name: cluster.name.clone(),
            id: cluster.id.clone(),
            created_at_ms: cluster.created_at_ms,
            max_voters: state.settings.max_voters,
            heartbeat_interval_ms: state.settings.heartbeat_interval_ms,
            node_timeout_ms: state.settings.node_timeout_ms,
            properties: state.properties.clone(),
            lease_ms: state.settings.lease_ms,
            lease_margin_ms: state.settings.lease_margin_ms,
            raft: state.settings.raft,
        })
    }

    pub fn local_role(&self, name: &str) -> Result<RoleDetailView, AgentError> {
        let state = self.require_member()?.reader.state();
        let record = state.roles.get(name).ok_or_else(|| AgentError::not_found(format!("no role named '{name}'")))?;
        Ok(RoleDetailView::of(&state, record))
    }

    /// Status as this node sees it; on the leader this is authoritative.
    pub fn local_status(&self, member: &Member) -> StatusView {
        let state = member.reader.state();
        let raft = member.consensus.status();
        let leader_id = raft.leader;
        let voters = raft.voters.len();
        let quorum = raft.leading && member.consensus.has_quorum(member.raft_timing.election_timeout_max_ms);
        StatusView {
            cluster: state.cluster.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            leader: leader_id.and_then(|id| state.nodes.get(&id).map(|n| n.name.clone())),
            quorum,
            term: raft.term,
            voters,
            nodes: {
                let index = halo_core::placement::Index::of(&state);
                state.nodes.values().map(|n| node_view(&state, &index, n, leader_id)).collect()
            },
            roles: state.roles.values().map(|r| RoleView::of(&state, r)).collect(),
            answered_by: self.config.name.clone(),
            database: DatabaseView {
                applied_index: raft.applied_index,
                snapshot_index: raft.snapshot_index,
                purged_index: raft.purged_index,
                snapshot_bytes: member.reader.snapshot_bytes().unwrap_or_else(|e| {
                    tracing::warn!("cannot read the snapshot's size: {e}");
                    None
                }),
            },
            validation: state.last_validation.as_ref().map(halo_api::validation::ValidationSummaryView::of),
        }
    }
}

/// The executor's view of this node: its parts, and the cluster only through reports.
impl crate::workload::Node for Agent {
    fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn data(&self) -> &DataDir {
        &self.data
    }

    fn metrics(&self) -> &crate::observe::metrics::Metrics {
        &self.metrics
    }

    fn guard(&self) -> Option<&GuardLink> {
        self.guard.as_deref()
    }

    fn membership(&self) -> Option<(u64, StateReader)> {
        self.member().map(|m| (m.id, m.reader.clone()))
    }

    fn may_start_roles(&self, applied_index: u64, now_ms: u64) -> bool {
        Agent::may_start_roles(self, applied_index, now_ms)
    }

    fn lease_remaining_ms(&self, now_ms: u64) -> u64 {
        Agent::lease_remaining_ms(self, now_ms)
    }

    fn stopping(&self) -> bool {
        Agent::stopping(self)
    }

    fn node_tls(&self) -> Option<NodeTls> {
        self.member().map(|m| m.node_tls())
    }

    fn report(
        &self,
        command: Command,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AgentError>> + Send + '_>> {
        Box::pin(async move { self.on_leader(LeaderRequest::Write(command)).await.map(drop) })
    }
}

impl Member {
    /// This node's certificate and key as in use now.
    pub fn node_tls(&self) -> NodeTls {
        self.tls.read().map(|t| t.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// What this node says as a voter now: its vote, and the last leader before it.
    pub fn voter_report(&self) -> Option<halo_core::former_leader::VoterReport> {
        self.consensus.voter_report(clock::monotonic_ms())
    }
}

/// Keep this node's record in the cluster database saying what it offers to roles (the
/// configuration may have changed since it joined). Ends once the record agrees.
pub async fn declare_capacity(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(member) = agent.member().cloned() else { continue };
        let state = member.reader.state();
        let Some(record) = state.nodes.get(&member.id) else { continue };
        let wanted = Some(agent.config.capacity);
        if record.capacity == wanted {
            return;
        }
        let command = Command::SetNodeCapacity { node: member.id, capacity: wanted };
        if let Err(e) = agent.on_leader(LeaderRequest::Write(command)).await {
            tracing::debug!("declaring capacity: {}", e);
        }
    }
}

/// `index`: what the roles take of each node.
pub fn node_view(
    state: &ClusterState,
    index: &halo_core::placement::Index,
    n: &NodeRecord,
    leader: Option<u64>,
) -> NodeView {
    NodeView {
        name: n.name.clone(),
        id: n.id,
        state: n.state,
        api: n.api.clone(),
        voter: n.voter,
        witness: n.witness,
        leader: leader == Some(n.id),
        networks: n
            .networks
            .iter()
            .enumerate()
            .map(|(index, net)| NetworkView { index, address: net.address.clone(), state: net.state })
            .collect(),
        state_since_ms: n.state_since_ms,
        capacity: n.capacity,
        used: index.used_on(n.id),
        fence_request: n.fence_request.clone(),
        certificate_expires_ms: state.certificates.get(&n.id).and_then(|c| c.iter().map(|c| c.not_after_ms).max()),
        data_disk_low: n.data_disk_low,
    }
}

pub(crate) fn describe(t: &RaftTiming) -> String {
    format!(
        "raft_heartbeat_ms={}, election_timeout_min_ms={}, election_timeout_max_ms={}",
        t.raft_heartbeat_ms, t.election_timeout_min_ms, t.election_timeout_max_ms
    )
}

fn no_quorum(detail: &str) -> AgentError {
    AgentError::unavailable(format!(
        "no quorum: {detail}; the cluster refuses changes until a majority of voters is reachable"
    ))
}

pub(crate) fn rejection_error(r: &halo_core::command::Rejection) -> AgentError {
    use halo_core::command::Rejection as R;
    match r {
        R::UnknownToken | R::TokenExpired | R::TokenUsed(_) => AgentError::forbidden(r.to_string()),
        R::UnknownNodeId(_) | R::UnknownRole(_) | R::UnknownApiToken(_) => AgentError::not_found(r.to_string()),
        R::CannotMove { .. } | R::RoleNotRunning(_) | R::WitnessRunsNoRoles(_) => AgentError::conflict(r.to_string()),
        R::InvalidProperty { .. }
        | R::InvalidNodeName(_)
        | R::InvalidNode { .. }
        | R::InvalidRole { .. }
        | R::InvalidTokenName(_) => AgentError::bad_request(r.to_string()),
        _ => AgentError::conflict(r.to_string()),
    }
}

fn set_slot(slot: &TlsSlot, config: Option<Arc<rustls::ServerConfig>>) {
    if let Ok(mut s) = slot.write() {
        *s = config;
    }
}
