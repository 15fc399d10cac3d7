//! The cluster's timing, in one place: the named profiles, Raft's own timing, and the rule
//! that a combination is safe (`settings::validate_settings` applies it).
//!
//! Raft timing is a cluster setting rather than each agent's own: a new leader bounds how
//! late the previous leader may still have granted leases by the grant window, which follows
//! from the Raft heartbeat, so every node must use the same. It is fixed when the cluster is
//! created (from the creating agent's `[timing]`); a joining agent that asks for other timing
//! is refused, and a member whose configuration disagrees with its cluster does not start.

use serde::{Deserialize, Serialize};

/// Raft's heartbeat and election timeouts, the same on every node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RaftTiming {
    pub raft_heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self { raft_heartbeat_ms: 150, election_timeout_min_ms: 600, election_timeout_max_ms: 900 }
    }
}

/// A leader grants leases only while a quorum acknowledged it within this many Raft
/// heartbeats: a healthy leader is acknowledged every heartbeat, so it never stops granting,
/// and a deposed one stops within this window.
pub const GRANT_WINDOW_HEARTBEATS: u64 = 3;

impl RaftTiming {
    /// How long a leader may go on granting after its last quorum acknowledgement, and so how
    /// late a new leader must assume the previous one's grants can be.
    pub fn grant_window_ms(&self) -> u64 {
        GRANT_WINDOW_HEARTBEATS * self.raft_heartbeat_ms
    }

    /// Why this timing cannot work, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(10..=10_000).contains(&self.raft_heartbeat_ms) {
            return Err("raft_heartbeat_ms must be between 10 and 10000".into());
        }
        if self.election_timeout_min_ms < 3 * self.raft_heartbeat_ms {
            return Err(format!(
                "election_timeout_min_ms must be at least 3 Raft heartbeats ({} ms)",
                3 * self.raft_heartbeat_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms || self.election_timeout_max_ms > 600_000 {
            return Err("election_timeout_max_ms must be above election_timeout_min_ms and at most 600000".into());
        }
        Ok(())
    }
}

/// The named timing profiles (`halo cluster set profile=fast`, `halo-sim --profile`). Both are
/// safe by the lease rule; they differ in how long a silent node may keep its roles before
/// others take over. A profile sets the heartbeat and lease timing; Raft timing is chosen once,
/// when the cluster is created (`halo cluster create --profile`, [`Profile::raft`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Default,
    Fast,
}

/// What a profile sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileTiming {
    pub heartbeat_interval_ms: u64,
    pub node_timeout_ms: u64,
    pub lease_ms: u64,
    pub lease_margin_ms: u64,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Default, Profile::Fast];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Fast => "fast",
        }
    }

    /// The Raft timing a cluster created with this profile runs. openraft starts an election
    /// only after a leader's lease (the maximum election timeout) plus an election timeout of
    /// silence, so a leader's crash costs 1.5-1.8 s of election by default and 0.5-0.6 s under
    /// `fast`: most of what separates a leader's crash from any other node's.
    pub fn raft(self) -> RaftTiming {
        match self {
            Profile::Default => RaftTiming::default(),
            Profile::Fast => {
                RaftTiming { raft_heartbeat_ms: 50, election_timeout_min_ms: 200, election_timeout_max_ms: 300 }
            }
        }
    }

    pub fn timing(self) -> ProfileTiming {
        match self {
            Profile::Default => ProfileTiming {
                heartbeat_interval_ms: 100,
                node_timeout_ms: 1000,
                lease_ms: 2000,
                lease_margin_ms: 200,
            },
            Profile::Fast => {
                ProfileTiming { heartbeat_interval_ms: 50, node_timeout_ms: 400, lease_ms: 1000, lease_margin_ms: 100 }
            }
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
            format!("unknown profile '{s}' (known: {})", known.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_by_name_and_raft_timing_bounds() {
        assert_eq!("fast".parse::<Profile>(), Ok(Profile::Fast));
        assert!("quick".parse::<Profile>().unwrap_err().contains("known: default, fast"));
        assert_eq!(RaftTiming::default().grant_window_ms(), 450);
        assert!(RaftTiming::default().check().is_ok());
        let short = RaftTiming { election_timeout_min_ms: 300, ..RaftTiming::default() };
        assert!(short.check().unwrap_err().contains("at least 3 Raft heartbeats"));
        let inverted = RaftTiming { election_timeout_max_ms: 600, ..RaftTiming::default() };
        assert!(inverted.check().is_err());
        // Each profile's own Raft timing works, and its lease rule holds with it.
        for p in Profile::ALL {
            assert!(p.raft().check().is_ok(), "{p}");
            let settings = crate::settings::ClusterSettings::of(p, p.raft());
            assert!(crate::settings::validate_settings(&settings).is_ok(), "{p}");
        }
        assert_eq!(Profile::Fast.raft().grant_window_ms(), 150);
    }
}
