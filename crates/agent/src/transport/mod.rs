//! Who this node is and how it talks to others: its identity and certificates
//! ([`identity`]), the TLS listeners with their connection limits ([`serve`]), the peer client
//! ([`peer`]) and its in-process shortcut ([`local`]), who a peer connection is
//! ([`peer_identity`]), and per-address limits on the open routes ([`throttle`]).

pub mod identity;
pub mod local;
pub mod peer;
pub mod peer_identity;
pub mod serve;
pub mod throttle;
