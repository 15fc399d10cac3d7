//! What the agent tells about itself: its structured log, which `halo log` gathers
//! ([`cluster_log`]), the counters behind `/metrics` ([`metrics`]), and the bound on its logs'
//! size ([`bounded_log`]).

pub mod bounded_log;
pub mod cluster_log;
pub mod metrics;
