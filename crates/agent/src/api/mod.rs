//! The REST API under `/api/v1` (HTTPS, bearer token) and the peer routes (mutual TLS).
//! Handlers only parse input, build a typed request and render the answer.
//!
//! One module per concern: [`roles`], [`events`], [`log`], [`validate`], [`tokens`],
//! [`rotation`]; [`access`] decides who may call what; [`console`] is the web console.

pub mod access;
pub mod console;
pub mod events;
pub mod log;
pub mod metrics;
pub mod roles;
pub mod rotation;
pub mod tokens;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use halo_api::ErrorView;
use halo_api::{access::*, cluster::*, membership::*, roles::*};
use halo_core::access::Caller;
use halo_core::command::Command;
use halo_security::token::JoinToken;
use halo_store::rpc::{RaftMessage, RaftRoute};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use crate::clock;
use crate::cluster::agent::{Agent, LeaderReply, LeaderRequest};
use crate::error::AgentError;
use crate::transport::peer_identity::PeerIdentity;
use crate::transport::serve::{LocalAddr, RemoteAddr};

type AppState = Arc<Agent>;
type ApiResult<T> = Result<Json<T>, AgentError>;

/// Longest a join token may live: a token is a credential.
const MAX_TOKEN_TTL_SECONDS: u64 = 7 * 24 * 3600;

#[derive(OpenApi)]
#[openapi(
    info(title = "halo", description = "High-availability clustering for virtual machines and services"),
    paths(status, list_nodes, show_node, remove_node, issue_token, show_cluster, set_properties, ca, admit, bootstrap_create, bootstrap_join,
        crate::api::roles::list_roles, crate::api::roles::create_role, crate::api::roles::show_role, crate::api::roles::delete_role,
        crate::api::roles::start_role, crate::api::roles::stop_role, crate::api::roles::move_role,
        crate::api::roles::pause_node, crate::api::roles::resume_node, crate::api::events::events, crate::api::events::stream, crate::api::log::cluster_log, crate::api::validate::validate, crate::api::validate::probe,
        crate::api::roles::apply_roles, crate::api::roles::plan, crate::api::roles::set_fence,
        crate::api::tokens::list, crate::api::tokens::create, crate::api::tokens::revoke, crate::api::tokens::rotate_admin,
        crate::api::rotation::show, crate::api::rotation::start, crate::api::rotation::rotate_heartbeat_key),
    components(schemas(halo_api::log::ClusterLogView, halo_api::log::MissingNode, halo_api::log::LogLine, halo_api::log::LogLevel, halo_api::validation::ValidationView, halo_api::validation::ValidationSummaryView, halo_core::validation::ValidationRecord, halo_api::validation::ProbeRequest, halo_api::validation::ProbeReply, halo_api::validation::ReachTarget,
        halo_core::validation::Survey, halo_core::validation::survey::NodeSurvey, halo_core::validation::survey::NodeFacts,
        halo_core::validation::survey::ClockReading, halo_core::validation::survey::Reach, halo_core::validation::survey::StorageSurvey,
        halo_core::validation::survey::StorageOnNode, halo_core::validation::survey::StorageError, halo_core::validation::survey::StorageFault,
        halo_core::validation::survey::LockTest, halo_core::validation::survey::LockRetry, halo_core::validation::Check, halo_core::validation::Outcome, halo_core::validation::Category, halo_core::state::FenceDevice, FenceBody, halo_core::plan::PlannedRecovery, PlanView, halo_core::events::Event, halo_core::apply::Change, ApplyRequest,
        ApplyResponse, MoveRequestBody, PauseBody, ResumeBody, StatusView, DatabaseView, NodeView, NetworkView, RoleView, RoleDetailView, ErrorView, TokenRequest, TokenResponse, ClusterView,
        PropertiesRequest, AdmissionRequest, AdmissionResponse, CreateClusterRequest, CreateClusterResponse,
        JoinClusterRequest, JoinClusterResponse, ApiTokenRequest, ApiTokenView, ApiTokenCreated, AdminTokenRotated, RotateAdminRequest,
        halo_core::access::AccessRole, halo_core::state::DiskSpace, halo_api::cluster::CaRotationView, halo_core::ca_rotation::CaStage, RotateRequest,
        halo_core::events::EventKind, halo_core::events::Change, halo_core::role::DecisionKind, halo_core::role::RoleState)),
    modifiers(&BearerAuth, &ConcernTags)
)]
struct ApiDoc;

/// The OpenAPI document of every route this agent serves, as `/api/v1/openapi.json` gives it
/// (and as `crates/api/openapi.json` keeps it under review).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Each operation is tagged with its concern (`roles`, `tokens`...; the routes of this file
/// are `cluster`), not with the Rust module that serves it: moving a handler changes nothing
/// a client sees.
struct ConcernTags;
impl utoipa::Modify for ConcernTags {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let tags = operation.tags.get_or_insert_with(Vec::new);
                if tags.is_empty() {
                    tags.push("cluster".to_string());
                }
                for tag in tags {
                    if let Some((_, concern)) = tag.rsplit_once("::") {
                        *tag = if concern == "api" { "cluster" } else { concern }.to_string();
                    }
                }
            }
        }
    }
}

pub fn api_router(agent: AppState) -> Router {
    let protected = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/nodes/{name}", get(show_node).delete(remove_node))
        .route("/api/v1/tokens", post(issue_token))
        .route("/api/v1/cluster", get(show_cluster))
        .route("/api/v1/cluster/properties", post(set_properties))
        .route("/metrics", get(metrics))
        .merge(crate::api::roles::routes())
        .merge(crate::api::events::routes())
        .merge(crate::api::log::routes())
        .merge(crate::api::validate::routes())
        .merge(crate::api::tokens::routes())
        .merge(crate::api::rotation::routes())
        .route_layer(middleware::from_fn_with_state(agent.clone(), crate::api::access::guard));
    let throttle = Arc::new(crate::transport::throttle::Throttle::default());
    // Anyone may call these before presenting a credential: small bodies, limited per address.
    let open = Router::new()
        .route("/api/v1/join", post(admit))
        .route("/api/v1/bootstrap/create", post(bootstrap_create))
        .route("/api/v1/bootstrap/join", post(bootstrap_join))
        .route_layer(middleware::from_fn_with_state(throttle.clone(), crate::transport::throttle::limit))
        .layer(DefaultBodyLimit::max(crate::cluster::admission::MAX_REQUEST_BYTES));
    Router::new()
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
        .route("/api/v1/ca", get(ca))
        .merge(open)
        .merge(crate::api::validate::probe_routes())
        .merge(crate::api::console::routes(agent.clone(), throttle))
        .merge(protected)
        .fallback(|| async { AgentError::not_found("no such API path") })
        .layer(DefaultBodyLimit::max(halo_store::wire::MAX_COMMAND_BYTES))
        .with_state(agent)
}

pub fn peer_router(agent: AppState) -> Router {
    use halo_store::wire::MAX_FORWARDED_BYTES;
    // Requests that speak for no Raft node; the Raft routes check what they claim themselves.
    let members_only = Router::new()
        .route("/peer/v1/leader", post(peer_leader).layer(DefaultBodyLimit::max(MAX_FORWARDED_BYTES)))
        .merge(crate::api::validate::peer_routes())
        .merge(crate::api::log::peer_routes())
        .route_layer(middleware::from_fn_with_state(agent.clone(), members_only));
    let mut router = Router::new();
    for route in RaftRoute::ALL {
        let handler =
            move |State(agent): State<AppState>, identity: Peer, headers: HeaderMap, body: axum::body::Bytes| {
                raft_message(route, agent, identity, headers, body)
            };
        router = router.route(route.path(), post(handler).layer(DefaultBodyLimit::max(route.max_body_bytes())));
    }
    router.merge(members_only).with_state(agent)
}

/// Prometheus scrapes this (a viewer token is enough).
async fn metrics(State(agent): State<AppState>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&agent)).into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
struct StatusQuery {
    /// Answer from this node's own copy of the database instead of asking the leader.
    #[serde(default)]
    local: bool,
}

#[utoipa::path(get, path = "/api/v1/status", security(("bearer" = [])), params(StatusQuery),
    responses((status = 200, body = StatusView), (status = 401, body = ErrorView)))]
async fn status(State(agent): State<AppState>, Query(query): Query<StatusQuery>) -> ApiResult<StatusView> {
    if query.local {
        return Ok(Json(agent.local_status(agent.require_member()?)));
    }
    Ok(Json(current_status(&agent).await?))
}

/// The leader's view when it can be reached; otherwise our own, which then reports no quorum.
pub(crate) async fn current_status(agent: &Agent) -> Result<StatusView, AgentError> {
    let member = agent.require_member()?;
    match agent.read_from_leader(LeaderRequest::Status).await {
        Some(Ok(LeaderReply::Status(status))) => Ok(*status),
        _ => Ok(agent.local_status(member)),
    }
}

#[utoipa::path(get, path = "/api/v1/nodes", security(("bearer" = [])), responses((status = 200, body = Vec<NodeView>)))]
async fn list_nodes(State(agent): State<AppState>) -> ApiResult<Vec<NodeView>> {
    Ok(Json(current_status(&agent).await?.nodes))
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}", security(("bearer" = [])),
    responses((status = 200, body = NodeView), (status = 404, body = ErrorView)))]
async fn show_node(State(agent): State<AppState>, Path(name): Path<String>) -> ApiResult<NodeView> {
    current_status(&agent)
        .await?
        .nodes
        .into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| AgentError::not_found(format!("no node named '{name}'")))
}

#[utoipa::path(delete, path = "/api/v1/nodes/{name}", security(("bearer" = [])),
    responses((status = 200), (status = 404, body = ErrorView), (status = 503, body = ErrorView)))]
async fn remove_node(State(agent): State<AppState>, Path(name): Path<String>) -> Result<StatusCode, AgentError> {
    agent.on_leader(LeaderRequest::Remove { name }).await?;
    Ok(StatusCode::OK)
}

#[utoipa::path(post, path = "/api/v1/tokens", security(("bearer" = [])), request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 503, body = ErrorView)))]
async fn issue_token(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<TokenRequest>,
) -> ApiResult<TokenResponse> {
    if request.ttl_seconds == 0 || request.ttl_seconds > MAX_TOKEN_TTL_SECONDS {
        return Err(AgentError::bad_request(format!(
            "token lifetime must be between 1 s and {MAX_TOKEN_TTL_SECONDS} s"
        )));
    }
    let member = agent.require_member()?;
    let state = member.reader.state();
    let cluster = state.cluster.as_ref().ok_or_else(|| AgentError::conflict("no cluster"))?;
    let (id, secret) = (halo_security::random_secret()[..16].to_string(), halo_security::random_secret());
    let expires_at_ms = clock::wall_ms() + request.ttl_seconds * 1000;
    let command =
        Command::IssueJoinToken { id: id.clone(), secret_sha256: halo_security::sha256_hex(&secret), expires_at_ms };
    crate::api::tokens::commit(&agent, &caller, command).await?;
    let token = JoinToken {
        cluster: cluster.name.clone(),
        cluster_id: cluster.id.clone(),
        peers: state
            .nodes
            .values()
            .filter(|n| !n.witness)
            .chain(state.nodes.values().filter(|n| n.witness))
            .map(|n| n.api.clone())
            .collect(),
        ca_sha256: halo_security::ca::fingerprint(&cluster.ca_cert_pem)
            .map_err(|e| AgentError::internal(e.to_string()))?,
        id,
        secret,
        expires_at_ms,
    };
    Ok(Json(TokenResponse { token: token.encode(), expires_at_ms }))
}

#[utoipa::path(get, path = "/api/v1/cluster", security(("bearer" = [])), params(StatusQuery), responses((status = 200, body = ClusterView)))]
async fn show_cluster(State(agent): State<AppState>, Query(query): Query<StatusQuery>) -> ApiResult<ClusterView> {
    if query.local {
        return Ok(Json(agent.local_cluster()?));
    }
    match tokio::time::timeout(Duration::from_secs(6), agent.on_leader(LeaderRequest::ShowCluster)).await {
        Ok(Ok(LeaderReply::Cluster(view))) => Ok(Json(*view)),
        // No leader to ask: answer from this node's copy, which may lag.
        _ => Ok(Json(agent.local_cluster()?)),
    }
}

#[utoipa::path(post, path = "/api/v1/cluster/properties", security(("bearer" = [])), request_body = PropertiesRequest,
    responses((status = 200), (status = 400, body = ErrorView), (status = 503, body = ErrorView)))]
async fn set_properties(
    State(agent): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<PropertiesRequest>,
) -> Result<StatusCode, AgentError> {
    if request.properties.is_empty() {
        return Err(AgentError::bad_request("no property given"));
    }
    crate::api::tokens::commit(&agent, &caller, Command::SetProperties { properties: request.properties }).await?;
    Ok(StatusCode::OK)
}

/// The cluster CA certificate: public, so a joining node can check it against its token.
#[utoipa::path(get, path = "/api/v1/ca", responses((status = 200, content_type = "application/x-pem-file")))]
async fn ca(State(agent): State<AppState>) -> Result<String, AgentError> {
    Ok(agent.require_member()?.node_tls().ca_pem)
}

/// Admission of a new node, authenticated by its join token (no bearer token needed).
#[utoipa::path(post, path = "/api/v1/join", request_body = AdmissionRequest,
    responses((status = 200, body = AdmissionResponse), (status = 403, body = ErrorView), (status = 409, body = ErrorView)))]
async fn admit(State(agent): State<AppState>, Json(request): Json<AdmissionRequest>) -> ApiResult<AdmissionResponse> {
    match agent.on_leader(LeaderRequest::Admit(request)).await? {
        LeaderReply::Admitted(response) => Ok(Json(response)),
        other => Err(AgentError::internal(format!("unexpected leader reply {other:?}"))),
    }
}

/// Only root or the agent's own user on this machine (by the owner of the connecting
/// socket: `transport::local`), or a caller presenting the agent's bootstrap secret, may bootstrap
/// it. Another local user is a stranger here.
pub(crate) fn require_bootstrap_trust(
    agent: &Agent,
    remote: RemoteAddr,
    local: LocalAddr,
    headers: &HeaderMap,
) -> Result<(), AgentError> {
    let secret = headers.get("x-halo-bootstrap-secret").and_then(|v| v.to_str().ok());
    if secret == Some(agent.identity().bootstrap_secret.as_str()) {
        return Ok(());
    }
    let refused = |why: String| AgentError::forbidden(why);
    if remote.0.ip().is_loopback() {
        let me = nix::unistd::geteuid().as_raw();
        return match crate::transport::local::uid_of_client(remote.0, local.0) {
            Some(uid) if uid == 0 || uid == me => Ok(()),
            Some(uid) => Err(refused(format!(
                "bootstrap requests from this machine must come from root (or the agent's user); user {uid} must \
                 present the agent's bootstrap secret (DATA_DIR/bootstrap.secret)"
            ))),
            None => Err(refused(
                "cannot tell which local user is asking; present the agent's bootstrap secret (DATA_DIR/bootstrap.secret)"
                    .into(),
            )),
        };
    }
    Err(refused(
        "bootstrap requests must come from root on this machine or carry the agent's bootstrap secret \
         (DATA_DIR/bootstrap.secret)"
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/bootstrap/create", request_body = CreateClusterRequest,
    responses((status = 200, body = CreateClusterResponse), (status = 409, body = ErrorView)))]
async fn bootstrap_create(
    State(agent): State<AppState>,
    Extension(remote): Extension<RemoteAddr>,
    Extension(local): Extension<LocalAddr>,
    headers: HeaderMap,
    Json(request): Json<CreateClusterRequest>,
) -> ApiResult<CreateClusterResponse> {
    require_bootstrap_trust(&agent, remote, local, &headers)?;
    let (admin_token, ca_cert_pem) =
        agent.create_cluster(&request.name, request.profile.unwrap_or(halo_core::timing::Profile::Default)).await?;
    Ok(Json(CreateClusterResponse {
        cluster: request.name,
        node: agent.config.name.clone(),
        admin_token,
        ca_cert_pem,
        endpoint: agent.config.api.clone(),
    }))
}

#[utoipa::path(post, path = "/api/v1/bootstrap/join", request_body = JoinClusterRequest,
    responses((status = 200, body = JoinClusterResponse), (status = 403, body = ErrorView), (status = 409, body = ErrorView)))]
async fn bootstrap_join(
    State(agent): State<AppState>,
    Extension(remote): Extension<RemoteAddr>,
    Extension(local): Extension<LocalAddr>,
    headers: HeaderMap,
    Json(request): Json<JoinClusterRequest>,
) -> ApiResult<JoinClusterResponse> {
    require_bootstrap_trust(&agent, remote, local, &headers)?;
    let admitted = agent.join_cluster(&request.token).await?;
    Ok(Json(JoinClusterResponse {
        cluster: admitted.cluster,
        node: agent.config.name.clone(),
        id: admitted.id,
        voter: admitted.voter,
        endpoint: agent.config.api.clone(),
    }))
}

// ---- peer routes: reachable only with a cluster certificate (enforced by the TLS layer) ----

/// The member a Raft message reaches, once the sender's certificate may speak for
/// `claimed` (the leader of an append, the candidate of a vote: `peer_identity`).
fn member_for(
    agent: &Agent,
    identity: Option<Extension<PeerIdentity>>,
    claimed: u64,
) -> Result<&std::sync::Arc<crate::cluster::agent::Member>, AgentError> {
    let member = agent.require_member()?;
    let identity = identity.as_ref().map(|e| &e.0);
    crate::transport::peer_identity::check(
        &member.reader.state(),
        &member.revoked,
        identity,
        Some(claimed),
        clock::wall_ms(),
    )?;
    Ok(member)
}

type Peer = Option<Extension<PeerIdentity>>;

/// A Raft message from a peer (an append, a vote, a pre-vote, a snapshot, a leader
/// handover): decoded, checked to come from the node it speaks for, then given to Raft. A
/// snapshot is binary (`halo_store::wire`), or the JSON an older sender uses.
async fn raft_message(
    route: RaftRoute,
    agent: AppState,
    identity: Peer,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AgentError> {
    let binary = headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == halo_store::wire::SNAPSHOT_CONTENT_TYPE.as_bytes());
    let message = RaftMessage::decode(route, binary, &body)
        .map_err(|e| AgentError::bad_request(format!("{} refused: {e}", route.path())))?;
    let member = member_for(&agent, identity, message.claimant().node)?;
    let reply = member
        .consensus
        .handle(message, clock::monotonic_ms())
        .await
        .map_err(|e| AgentError::internal(format!("encoding Raft's reply: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, halo_store::rpc::JSON)], reply).into_response())
}

async fn peer_leader(
    State(agent): State<AppState>,
    identity: Peer,
    Json(request): Json<LeaderRequest>,
) -> Result<Json<LeaderReply>, AgentError> {
    agent.handle_forwarded(request, identity.as_ref().map(|e| &e.0)).await.map(Json)
}

/// Middleware of the peer routes that speak for no Raft node (forwarded leader requests,
/// probes, logs): members only.
pub async fn members_only(
    State(agent): State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let member = match agent.require_member() {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let identity = request.extensions().get::<PeerIdentity>();
    match crate::transport::peer_identity::check(
        &member.reader.state(),
        &member.revoked,
        identity,
        None,
        crate::clock::wall_ms(),
    ) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}
