//! Raft's messages between nodes, in both directions, without openraft types outside this
//! crate. The agent moves bytes: it sends what [`Network`] hands its [`RaftTransport`], and
//! gives what arrives on a [`RaftRoute`] to [`RaftMessage::decode`], checks who the message
//! speaks for ([`RaftMessage::claimant`]) and hands it to `Consensus::handle`.
//!
//! Replies travel as JSON `Result<Response, RaftError>`; see `wire` for sizes and snapshots.

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use halo_core::former_leader::LeaderId;
use openraft::alias::{SnapshotOf, VoteOf};
use openraft::errors::{NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{self, WireError};
use crate::{PeerNode, SnapshotData, TypeConfig};

/// The peer routes Raft speaks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftRoute {
    Append,
    Vote,
    PreVote,
    Snapshot,
    TransferLeader,
}

impl RaftRoute {
    pub const ALL: [RaftRoute; 5] =
        [RaftRoute::Append, RaftRoute::Vote, RaftRoute::PreVote, RaftRoute::Snapshot, RaftRoute::TransferLeader];

    pub fn path(self) -> &'static str {
        match self {
            RaftRoute::Append => "/raft/append",
            RaftRoute::Vote => "/raft/vote",
            RaftRoute::PreVote => "/raft/pre-vote",
            RaftRoute::Snapshot => "/raft/snapshot",
            RaftRoute::TransferLeader => "/raft/transfer-leader",
        }
    }

    /// The largest body a node accepts on this route.
    pub fn max_body_bytes(self) -> usize {
        match self {
            RaftRoute::Append => wire::MAX_APPEND_BYTES,
            RaftRoute::Snapshot => wire::MAX_SNAPSHOT_BYTES,
            RaftRoute::Vote | RaftRoute::PreVote | RaftRoute::TransferLeader => 64 << 10,
        }
    }
}

pub const JSON: &str = "application/json";

/// Why a message did not reach its peer, or came back unreadable.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No network reached the peer: Raft treats it as down for now.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered, but not with a reply (refused, or a server error).
    #[error("{0}")]
    Failed(String),
}

/// How Raft's messages reach a peer: the agent's peer transport.
pub trait RaftTransport: Clone + Send + Sync + 'static {
    /// Raft is about to talk to node `id` at `node` (the transport may route by it).
    fn remember(&self, id: u64, node: &PeerNode);
    /// POST `body` to `route` on `node`, within `timeout`; the reply's body.
    fn send(
        &self,
        node: &PeerNode,
        route: RaftRoute,
        content_type: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, SendError>> + Send;
}

/// A Raft message from a peer, decoded.
pub struct RaftMessage(pub(crate) Incoming);

pub(crate) enum Incoming {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot(VoteOf<TypeConfig>, SnapshotOf<TypeConfig, SnapshotData>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

impl RaftMessage {
    /// Read a message that arrived on `route`. A snapshot is binary (`wire`) when
    /// `binary_snapshot`, else the JSON an older sender uses.
    pub fn decode(route: RaftRoute, binary_snapshot: bool, body: &[u8]) -> Result<Self, WireError> {
        Ok(RaftMessage(match route {
            RaftRoute::Append => Incoming::Append(serde_json::from_slice(body)?),
            RaftRoute::Vote => Incoming::Vote(serde_json::from_slice(body)?),
            RaftRoute::PreVote => Incoming::PreVote(serde_json::from_slice(body)?),
            RaftRoute::TransferLeader => Incoming::TransferLeader(serde_json::from_slice(body)?),
            RaftRoute::Snapshot => {
                let (vote, meta, data) =
                    if binary_snapshot { wire::decode_snapshot(body)? } else { wire::decode_json_snapshot(body)? };
                Incoming::Snapshot(vote, Snapshot { meta, snapshot: Cursor::new(data) })
            }
        }))
    }

    /// The node this message speaks for: the leader of an append or a snapshot, the candidate
    /// of a vote, the leader handing over. Checked against the sender's certificate.
    pub fn claimant(&self) -> LeaderId {
        crate::leadership::leader_of(match &self.0 {
            Incoming::Append(r) => &r.vote,
            Incoming::Vote(r) | Incoming::PreVote(r) => &r.vote,
            Incoming::Snapshot(vote, _) => vote,
            Incoming::TransferLeader(r) => r.from_leader(),
        })
    }

    /// An append or a snapshot: the leader's data reached this node.
    pub(crate) fn carries_entries(&self) -> bool {
        matches!(self.0, Incoming::Append(_) | Incoming::Snapshot(..))
    }
}

/// The sending side, given to openraft: one [`Peer`] per target, over the agent's transport.
#[derive(Clone)]
pub(crate) struct Network<T: RaftTransport>(pub(crate) T);

impl<T: RaftTransport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = Peer<T>;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> Self::Network {
        self.0.remember(target, node);
        Peer { transport: self.0.clone(), node: node.clone() }
    }
}

pub(crate) struct Peer<T> {
    transport: T,
    node: PeerNode,
}

fn network_error(e: &(impl std::error::Error + 'static)) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(e))
}

impl<T: RaftTransport> Peer<T> {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: RaftRoute,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let body = serde_json::to_vec(req).map_err(|e| network_error(&e))?;
        self.call_bytes(route, JSON, body, option.soft_ttl()).await
    }

    /// Send an encoded request; a large body gets the time its transfer takes on top.
    async fn call_bytes<Resp: DeserializeOwned>(
        &self,
        route: RaftRoute,
        content_type: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let timeout = timeout + wire::transfer_allowance(body.len());
        match self.transport.send(&self.node, route, content_type, body, timeout).await {
            Ok(reply) => match serde_json::from_slice::<Result<Resp, RaftError<TypeConfig>>>(&reply) {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(raft)) => Err(network_error(&raft)),
                Err(e) => Err(network_error(&e)),
            },
            Err(e @ SendError::Unreachable(_)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(network_error(&e)),
        }
    }
}

impl<T: RaftTransport> RaftNetworkV2<TypeConfig> for Peer<T> {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let encode = |req: &AppendEntriesRequest<TypeConfig>| serde_json::to_vec(req).map_err(|e| network_error(&e));
        let mut body = encode(&req)?;
        let fitted = wire::fit_append(req, body.len(), wire::APPEND_BATCH_BYTES).map_err(|e| network_error(&e))?;
        if fitted.cut_after.is_some() {
            body = encode(&fitted.request)?;
        }
        let response = self.call_bytes(RaftRoute::Append, JSON, body, option.soft_ttl()).await?;
        // The follower took what we sent: it matches up to the last entry of the cut.
        Ok(match (response, fitted.cut_after) {
            (AppendEntriesResponse::Success, Some(last)) => AppendEntriesResponse::PartialSuccess(Some(last)),
            (response, _) => response,
        })
    }

    async fn vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRoute::Vote, &req, &option).await
    }

    async fn pre_vote(
        &mut self,
        req: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRoute::PreVote, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Self::SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let body = wire::encode_snapshot(&vote, &snapshot.meta, snapshot.snapshot.get_ref())
            .map_err(|e| StreamingError::from(network_error(&e)))?;
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.call_bytes(RaftRoute::Snapshot, wire::SNAPSHOT_CONTENT_TYPE, body, option.soft_ttl()) => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftRoute::TransferLeader, &req, &option).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_names_the_node_it_speaks_for_and_garbage_is_refused() {
        let append = br#"{"vote":{"leader_id":{"term":7,"node_id":3},"committed":true},
            "prev_log_id":null,"entries":[],"leader_commit":null}"#;
        let message = RaftMessage::decode(RaftRoute::Append, false, append).expect("an append");
        assert_eq!(message.claimant(), LeaderId { term: 7, node: 3 });
        assert!(message.carries_entries());
        let vote = br#"{"vote":{"leader_id":{"term":8,"node_id":2},"committed":false},"last_log_id":null}"#;
        for route in [RaftRoute::Vote, RaftRoute::PreVote] {
            let message = RaftMessage::decode(route, false, vote).expect("a vote");
            assert_eq!(message.claimant(), LeaderId { term: 8, node: 2 });
            assert!(!message.carries_entries());
        }
        for route in RaftRoute::ALL {
            assert!(RaftMessage::decode(route, route == RaftRoute::Snapshot, b"{not json").is_err(), "{route:?}");
        }
    }

    #[test]
    fn every_route_has_its_own_path() {
        let paths: std::collections::BTreeSet<_> = RaftRoute::ALL.iter().map(|r| r.path()).collect();
        assert_eq!(paths.len(), RaftRoute::ALL.len());
    }
}
