//! `GET /api/v1/validate`: the cluster's validation report. This node surveys every node (over
//! the peer transport) and `halo_core::validation` judges the survey with the cluster
//! database. `POST /api/v1/probe` and `/peer/v1/probe` answer one survey probe: the first for
//! the CLI before a cluster exists (and for admins), the second for a surveying peer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use halo_core::command::Command;
use halo_core::state::{ClusterState, NodeState};
use halo_core::validation::{self, ValidationRecord};
use halo_store::PeerNode;

use crate::clock;
use crate::cluster::agent::{Agent, LeaderRequest, Member};
use crate::error::AgentError;
use crate::transport::serve::{LocalAddr, RemoteAddr};
use halo_api::validation::{ProbeReply, ProbeRequest, ValidationView};
use halo_survey::{self as survey, Plan, Target, Transport};

type AppState = Arc<Agent>;

/// A probe takes at most a few seconds (connection attempts, a storage step); a node that
/// has not answered by then is reported as silent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/validate", get(validate))
}

/// Reachable with the admin token, or before the agent joins a cluster, with bootstrap trust.
pub fn probe_routes() -> Router<AppState> {
    Router::new().route("/api/v1/probe", post(probe))
}

pub fn peer_routes() -> Router<AppState> {
    Router::new().route("/peer/v1/probe", post(peer_probe))
}

/// Validate the cluster: inventory, network, storage, quorum and roles, each check with an
/// outcome, an explanation and a fix. Reads and probes; changes nothing.
#[utoipa::path(get, path = "/api/v1/validate", security(("bearer" = [])),
    responses((status = 200, body = ValidationView), (status = 503, body = halo_api::ErrorView)))]
pub async fn validate(State(agent): State<AppState>) -> Result<Json<ValidationView>, AgentError> {
    Ok(Json(validate_cluster(&agent).await?))
}

/// While this node leads, validate whenever `validation::due` says so and record the report
/// in the cluster database (where `halo status` shows its result and age).
pub async fn periodic(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(member) = agent.member() else { continue };
        if !member.consensus.is_leader() || !validation::due(&member.reader.state(), clock::wall_ms()) {
            continue;
        }
        let nodes = member.reader.state().nodes.values().map(|n| n.name.clone()).collect();
        let view = match validate_cluster(&agent).await {
            Ok(view) => view,
            Err(e) => {
                tracing::warn!("periodic validation could not run: {}", e);
                continue;
            }
        };
        let record = ValidationRecord {
            at_ms: view.generated_at_ms,
            by: agent.config.name.clone(),
            result: view.result,
            nodes,
            checks: view.checks,
        };
        tracing::info!("periodic validation: {}", record.summary());
        if let Err(e) = agent.on_leader(LeaderRequest::Write(Command::RecordValidation(Box::new(record)))).await {
            tracing::warn!("could not record the validation report: {}", e);
        }
    }
}

/// Survey the cluster's nodes and judge what they found with the cluster database.
pub async fn validate_cluster(agent: &Agent) -> Result<ValidationView, AgentError> {
    let member = agent.require_member()?;
    let state = member.reader.state();
    let (targets, peers) = targets(&state);
    let transport = ClusterTransport { agent, member, peers };
    let found = survey::survey(&transport, &targets, &plan(&state)).await;
    let checks = validation::judge(&state, halo_core::plan::PlanTiming::of(&state.settings), &found);
    Ok(ValidationView::new(
        state.cluster.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
        clock::wall_ms(),
        checks,
        found,
    ))
}

/// Every node of the cluster, and how to reach each over the peer transport.
fn targets(state: &ClusterState) -> (Vec<Target>, Vec<(u64, PeerNode)>) {
    state
        .nodes
        .values()
        .map(|n| {
            let peer = PeerNode::of(n);
            let target = Target {
                name: n.name.clone(),
                witness: n.witness,
                networks: peer.networks.clone(),
                down: (n.state == NodeState::Down).then(|| "the node is down".to_string()),
                learn: false,
            };
            (target, (n.id, peer))
        })
        .unzip()
}

/// What the cluster's roles and fence devices name (agents, VM files), and its shared storage.
fn plan(state: &ClusterState) -> Plan {
    let ocf: BTreeSet<String> = state
        .roles
        .values()
        .flat_map(|r| r.spec.resources.iter().filter(|res| res.kind.is_ocf()).map(|res| res.kind.to_string()))
        .collect();
    let fence: BTreeSet<String> = state.fence_devices.values().map(|d| d.agent.clone()).collect();
    let files: BTreeSet<String> = state
        .roles
        .values()
        .flat_map(|r| r.spec.vms().flatten().collect::<Vec<_>>())
        .flat_map(|vm| vm.files().map(|(_, path)| path.display().to_string()).collect::<Vec<_>>())
        .collect();
    Plan {
        ocf: ocf.into_iter().collect(),
        fence: fence.into_iter().collect(),
        files: files.into_iter().collect(),
        shared: state.settings.shared_storage.clone(),
    }
}

struct ClusterTransport<'a> {
    agent: &'a Agent,
    member: &'a Arc<Member>,
    peers: Vec<(u64, PeerNode)>,
}

impl Transport for ClusterTransport<'_> {
    async fn call(&self, node: usize, request: ProbeRequest) -> Result<ProbeReply, String> {
        let (id, peer) = self.peers.get(node).ok_or_else(|| format!("no node {node}"))?;
        if *id == self.member.id {
            return Ok(crate::survey::answer::answer(&self.agent.config, &self.agent.survey_locks, request).await);
        }
        self.member.peers.post(peer, "/peer/v1/probe", &request, PROBE_TIMEOUT).await.map_err(|e| e.to_string())
    }
}

/// Answer one survey probe (used by `halo validate --nodes` before the cluster exists).
#[utoipa::path(post, path = "/api/v1/probe", request_body = ProbeRequest, security(("bearer" = [])),
    responses((status = 200, body = ProbeReply), (status = 401, body = halo_api::ErrorView),
        (status = 403, body = halo_api::ErrorView)))]
pub async fn probe(
    State(agent): State<AppState>,
    Extension(remote): Extension<RemoteAddr>,
    Extension(local): Extension<LocalAddr>,
    headers: HeaderMap,
    Json(request): Json<ProbeRequest>,
) -> Result<Json<ProbeReply>, AgentError> {
    if agent.member().is_some() {
        let caller = crate::api::access::caller_of(&agent, crate::api::access::bearer(&headers))?;
        crate::api::access::require(&caller, halo_core::access::AccessRole::Operator, "a probe")?;
    } else {
        crate::api::require_bootstrap_trust(&agent, remote, local, &headers)?;
    }
    Ok(Json(crate::survey::answer::answer(&agent.config, &agent.survey_locks, request).await))
}

async fn peer_probe(State(agent): State<AppState>, Json(request): Json<ProbeRequest>) -> Json<ProbeReply> {
    Json(crate::survey::answer::answer(&agent.config, &agent.survey_locks, request).await)
}
