//! This node in its cluster: the [`agent::Agent`] (bootstrap, membership, leader routing,
//! status), the leader's side of a join ([`admission`]) and its decisions ([`manager`]),
//! the heartbeats that keep the lease ([`heartbeat`]), certificate renewal and CA rotation
//! ([`renewal`]), fencing silent nodes ([`fence`]), the joining side ([`join`]) and the data
//! disk's watch ([`data_disk`]).

pub mod admission;
pub mod agent;
pub mod data_disk;
pub mod fence;
pub mod heartbeat;
pub mod join;
pub mod manager;
pub mod renewal;
