//! The pure decision core of halo: no I/O, no clocks, no global randomness.
//!
//! - [`state`]: the replicated cluster state and the typed [`command::Command`]s that change it.
//! - [`membership`]: the heartbeat failure detector and how node states are derived from it.
//! - [`heartbeat`]: the authenticated heartbeat datagram (encode/decode only).
//! - [`quorum`]: majority arithmetic.
//! - [`role`]: role specs and the decisions recorded about them; [`apply`]: declarative roles.
//! - [`placement`]: which node should run a role, with reasons; [`capacity`]: CPU and memory.
//! - [`leader`]: the leader's tick (whom it succeeded, node states, Raft membership changes,
//!   liveness and fencing), shared by the daemon's manager and the simulator;
//!   [`former_leader`]: how soon it may recover the roles of the leader it replaced.
//! - [`lease`]: when a node may run roles, and when the leader may assume it no longer does;
//!   [`liveness`]: the leader's verdict on each node by that rule.
//! - [`policy`]: the manager's decisions (place, fail over, stop) as commands; [`plan`]: the
//!   same policy run on a copy, for `halo plan --fail N`.
//! - [`execution`]: what a node should run, from the committed state (the executor's rules).
//! - [`fence`]: fence devices and the exact input halo gives their agents.
//! - [`reconcile`]: the executor's plan (stop, start, report), shared by the daemon and the
//!   simulator.
//! - [`events`]: every visible state change in words, derived from before/after states.
//! - [`vm`]: the `vm` resource type's definition; [`migration`]: live and quick migration.
//! - [`timing`]: the timing profiles and Raft's timing, the same on every node.
//! - [`access`]: named API tokens and what each role may do.
//!
//! Time is always passed in as milliseconds, so the daemon and a simulator drive the same code.

pub mod access;
pub mod address;
pub mod apply;
pub mod ca_rotation;
pub mod capacity;
pub mod command;
pub mod credentials;
pub mod events;
pub mod execution;
pub mod failback;
pub mod fence;
pub mod former_leader;
pub mod heartbeat;
pub mod leader;
pub mod lease;
pub mod liveness;
pub mod membership;
pub mod migration;
pub mod nodes;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod quorum;
pub mod reconcile;
pub mod resource_kind;
pub mod role;
pub mod round_trip;
pub mod settings;
pub mod state;
pub mod timing;
pub mod validation;
pub mod vm;

/// Raft node ids: assigned by the cluster at join, never reused.
pub type NodeId = u64;

/// Version of every persisted and wire format defined here. Bump with a migration.
pub const FORMAT_VERSION: u32 = 1;
