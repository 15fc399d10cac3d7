//! The event history (`halo events`): its queries; the events themselves are the core's
//! [`halo_core::events::Event`].

use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Only events after this sequence number (for following); without it, the newest ones.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
pub struct StreamQuery {
    /// Start after this sequence number (the `Last-Event-ID` header, sent by a reconnecting
    /// `EventSource`, wins); without either, only events from now on.
    pub after: Option<u64>,
}
