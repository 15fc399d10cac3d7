//! What runs roles on this node: the fence guard, a process of its own that holds the
//! workloads and kills them when the lease runs out ([`guard`], with the [`watchdog`]), the
//! agent's end of it ([`guard_link`]), the [`executor`] that turns committed decisions into
//! starts and stops, and one module per resource kind: [`resource`] (processes and the
//! dispatch), [`ocf`], [`address`] (floating IPs), [`vm`] (QEMU, QMP, migration), plus health
//! [`probe`]s.

use std::future::Future;
use std::pin::Pin;

use halo_core::NodeId;
use halo_core::command::Command;
use halo_store::StateReader;

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::observe::metrics::Metrics;
use crate::transport::identity::{DataDir, NodeTls};

pub mod address;
pub mod executor;
pub mod guard;
pub mod guard_link;
pub mod ocf;
pub mod probe;
pub mod resource;
pub mod vm;
pub mod watchdog;

/// What the executor needs of the node it runs on, and nothing more: the agent provides it
/// (`cluster::agent`), a test can provide another.
pub trait Node: Send + Sync + 'static {
    fn config(&self) -> &AgentConfig;
    fn data(&self) -> &DataDir;
    fn metrics(&self) -> &Metrics;
    /// The fence guard that holds this node's workloads; none on a witness.
    fn guard(&self) -> Option<&guard_link::GuardLink>;
    /// This node's id and its copy of the cluster database, once it is a member.
    fn membership(&self) -> Option<(NodeId, StateReader)>;
    /// Whether roles may start now: the lease is held and the database has caught up to
    /// `applied_index` (see `cluster::agent::Agent::may_start_roles`).
    fn may_start_roles(&self, applied_index: u64, now_ms: u64) -> bool;
    fn lease_remaining_ms(&self, now_ms: u64) -> u64;
    /// The agent is stopping: start nothing new.
    fn stopping(&self) -> bool;
    /// The certificate and key in use (migrations authenticate with them).
    fn node_tls(&self) -> Option<NodeTls>;
    /// Send a report (`Command::ReportRole`, a migration's step) to the leader.
    fn report(&self, command: Command) -> Pin<Box<dyn Future<Output = Result<(), AgentError>> + Send + '_>>;
}
