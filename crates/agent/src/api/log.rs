//! `GET /api/v1/log`: every node's agent log in one time-ordered view. The node asked reads its
//! own file and asks each other node for its lines over the peer transport
//! (`/peer/v1/log`, mutual TLS); nodes that do not answer are named, not waited for.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use halo_store::PeerNode;

use halo_api::log::{ClusterLogView, LogQuery, LogReply, LogRequest, MissingNode};

use crate::cluster::agent::Agent;
use crate::error::AgentError;
use crate::observe::cluster_log;

type AppState = Arc<Agent>;

/// How long one node may take to send its lines.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LIMIT: usize = 5_000;
const MAX_LIMIT: usize = 100_000;
/// Without `since_ms`: the last hour.
const DEFAULT_WINDOW_MS: u64 = 3_600_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/log", get(cluster_log))
}

pub fn peer_routes() -> Router<AppState> {
    Router::new().route("/peer/v1/log", post(peer_log))
}

/// The agents' logs, gathered from every node and merged in time order.
#[utoipa::path(get, path = "/api/v1/log", security(("bearer" = [])), params(LogQuery),
    responses((status = 200, body = ClusterLogView), (status = 404, body = halo_api::ErrorView)))]
pub async fn cluster_log(
    State(agent): State<AppState>,
    Query(query): Query<LogQuery>,
) -> Result<Json<ClusterLogView>, AgentError> {
    let member = agent.require_member()?;
    let state = member.reader.state();
    let wanted: Option<Vec<String>> =
        query.nodes.as_deref().map(|n| n.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    if let Some(unknown) = wanted.iter().flatten().find(|w| !state.nodes.values().any(|n| &n.name == *w)) {
        return Err(AgentError::not_found(format!("no node named '{unknown}'")));
    }
    let request = LogRequest {
        since_ms: query.since_ms.unwrap_or_else(|| crate::clock::wall_ms().saturating_sub(DEFAULT_WINDOW_MS)),
        limit: query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    let nodes = state.nodes.values().filter(|n| wanted.as_ref().is_none_or(|w| w.contains(&n.name)));
    let asks = nodes.map(|node| {
        let (agent, request) = (agent.clone(), &request);
        let (name, peer, local) = (node.name.clone(), PeerNode::of(node), node.id == member.id);
        async move {
            let reply = if local {
                Ok(local_lines(agent.clone(), request.since_ms, request.limit).await)
            } else {
                member
                    .peers
                    .post::<_, LogReply>(&peer, "/peer/v1/log", request, PEER_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            };
            (name, reply)
        }
    });
    let mut lines = Vec::new();
    let (mut truncated, mut missing) = (false, Vec::new());
    for (node, reply) in futures::future::join_all(asks).await {
        match reply {
            Ok(reply) => {
                truncated |= reply.truncated;
                lines.extend(reply.lines);
            }
            Err(error) => missing.push(MissingNode { node, error }),
        }
    }
    let (lines, cut) = cluster_log::merge(lines, request.limit);
    Ok(Json(ClusterLogView { lines, truncated: truncated || cut, missing }))
}

/// Reading a few files of up to 8 MiB is disk work: off the async runtime.
async fn local_lines(agent: AppState, since_ms: u64, limit: usize) -> LogReply {
    let dir = agent.data.path("logs");
    let (lines, truncated) =
        tokio::task::spawn_blocking(move || cluster_log::read(&dir, since_ms, limit)).await.unwrap_or_default();
    LogReply { lines, truncated }
}

async fn peer_log(State(agent): State<AppState>, Json(request): Json<LogRequest>) -> Json<LogReply> {
    Json(local_lines(agent, request.since_ms, request.limit.clamp(1, MAX_LIMIT)).await)
}
