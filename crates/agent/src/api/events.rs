//! The cluster's events over the API: a page of history (`GET /api/v1/events`) and a live
//! stream of server-sent events (`GET /api/v1/events/stream`) that the console and any
//! `EventSource` follow. Every node records the same events, so any node can answer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use halo_core::events::Event;
use halo_store::StateReader;

use crate::error::AgentError;
use halo_api::events::{EventsQuery, StreamQuery};

use crate::cluster::agent::Agent;

type AppState = Arc<Agent>;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/events", get(events)).route("/api/v1/events/stream", get(stream))
}

/// The cluster's event history as this node recorded it (every node records the same).
#[utoipa::path(get, path = "/api/v1/events", security(("bearer" = [])), params(EventsQuery),
    responses((status = 200, body = Vec<halo_core::events::Event>)))]
pub async fn events(
    State(agent): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<Vec<Event>>, AgentError> {
    let member = agent.require_member()?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    member.reader.events(query.after, limit).map(Json).map_err(|e| AgentError::internal(e.to_string()))
}

/// New events as they are recorded, as server-sent events: `id` is the sequence number,
/// `data` the event as JSON. A comment every 15 s keeps idle connections open.
#[utoipa::path(get, path = "/api/v1/events/stream", security(("bearer" = [])), params(StreamQuery),
    responses((status = 200, content_type = "text/event-stream", description = "one `data:` line per event (JSON)")))]
pub async fn stream(
    State(agent): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<sse::Event, Infallible>>>, AgentError> {
    let reader = agent.require_member()?.reader.clone();
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let after = match resume.or(query.after) {
        Some(after) => after,
        None => newest(&reader)?,
    };
    Ok(live(reader, after))
}

/// The events after `after` as server-sent events, then each new one as it is recorded.
pub fn live(reader: StateReader, after: u64) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let feed = Feed { reader, after, pending: VecDeque::new() };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        let data = serde_json::to_string(&event).unwrap_or_default();
        Some((Ok(sse::Event::default().id(event.seq.to_string()).data(data)), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The sequence number of the newest event recorded (0: none yet).
pub fn newest(reader: &StateReader) -> Result<u64, AgentError> {
    let last = reader.events(None, 1).map_err(|e| AgentError::internal(e.to_string()))?;
    Ok(last.last().map_or(0, |e| e.seq))
}

/// Follows the event table: reads what is there after `after`, then waits for the state to
/// change (events are stored with the state they describe, before readers are woken).
struct Feed {
    reader: StateReader,
    after: u64,
    pending: VecDeque<Event>,
}

impl Feed {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.after = event.seq;
                return Some(event);
            }
            // A database that cannot be read ends the stream; the client reconnects.
            self.pending = self.reader.events(Some(self.after), 256).ok()?.into();
            if self.pending.is_empty() && !self.reader.changed().await {
                return None;
            }
        }
    }
}
