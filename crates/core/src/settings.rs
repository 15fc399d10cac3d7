//! The cluster's settings: what `halo cluster set` changes ([`ClusterSettings`]), their
//! bounds, and the free properties (descriptions, labels) kept beside them.

use serde::{Deserialize, Serialize};

use crate::command::{CommandResult, Rejection};
use crate::lease::LeaseTiming;
use crate::state::{ClusterState, MAX_VOTERS_LIMIT};
use crate::timing::{Profile, RaftTiming};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterSettings {
    pub max_voters: usize,
    pub heartbeat_interval_ms: u64,
    /// Silence on every network after which the leader declares a node down.
    pub node_timeout_ms: u64,
    /// How long one lease grant lets a node run roles.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// Added by the leader before it recovers a silent node's roles.
    #[serde(default = "default_lease_margin_ms")]
    pub lease_margin_ms: u64,
    /// Directories mounted identically on every node (NFS, CephFS, a SAN file system): VM
    /// disks must live there, and quick migration saves guest state there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_storage: Vec<String>,
    /// How many live migrations a drain runs at once, cluster-wide.
    #[serde(default = "default_parallel_migrations")]
    pub parallel_migrations: u32,
    /// How often the leader validates the cluster and records the report (0: never). It also
    /// validates when the set of nodes changes.
    #[serde(default = "default_validation_interval_ms")]
    pub validation_interval_ms: u64,
    /// Raft's timing, the same on every node, fixed when the cluster is created (see
    /// `timing`). A database from before it was recorded has Raft's defaults, which is what
    /// every agent then ran.
    #[serde(default)]
    pub raft: RaftTiming,
    /// How long a node certificate the cluster CA issues is valid; a node renews its own once
    /// two thirds of that have passed.
    #[serde(default = "default_certificate_lifetime_ms")]
    pub certificate_lifetime_ms: u64,
}

/// Bounds of `certificate_lifetime_ms`: long enough to renew in time, short enough to matter.
pub const CERTIFICATE_LIFETIME_MS: std::ops::RangeInclusive<u64> = 10_000..=3 * 365 * 24 * 3_600_000;

fn default_certificate_lifetime_ms() -> u64 {
    90 * 24 * 3_600_000
}

fn default_parallel_migrations() -> u32 {
    2
}

fn default_validation_interval_ms() -> u64 {
    3_600_000
}

fn default_lease_ms() -> u64 {
    Profile::Default.timing().lease_ms
}

fn default_lease_margin_ms() -> u64 {
    Profile::Default.timing().lease_margin_ms
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self::of(Profile::Default, RaftTiming::default())
    }
}

impl ClusterSettings {
    /// The settings of a new cluster with this timing.
    pub fn of(profile: Profile, raft: RaftTiming) -> Self {
        let t = profile.timing();
        Self {
            max_voters: 5,
            heartbeat_interval_ms: t.heartbeat_interval_ms,
            node_timeout_ms: t.node_timeout_ms,
            lease_ms: t.lease_ms,
            lease_margin_ms: t.lease_margin_ms,
            shared_storage: Vec::new(),
            parallel_migrations: default_parallel_migrations(),
            validation_interval_ms: default_validation_interval_ms(),
            raft,
            certificate_lifetime_ms: default_certificate_lifetime_ms(),
        }
    }

    /// Lease timing, the grant window included: computed here and nowhere else.
    pub fn lease_timing(&self) -> LeaseTiming {
        LeaseTiming {
            lease_ms: self.lease_ms,
            margin_ms: self.lease_margin_ms,
            grant_window_ms: self.raft.grant_window_ms(),
        }
    }
}

fn is_free_property(key: &str) -> bool {
    key == "description" || key.strip_prefix("label.").is_some_and(|rest| !rest.is_empty())
}

/// Checks one `key=value` cluster property; typed settings go into `settings`.
fn apply_property(settings: &mut ClusterSettings, key: &str, value: &str) -> Result<(), Rejection> {
    let number = |what: &str| -> Result<u64, Rejection> {
        value.parse::<u64>().map_err(|_| Rejection::InvalidProperty {
            key: what.into(),
            reason: format!("'{value}' is not a whole number"),
        })
    };
    match key {
        "heartbeat_interval_ms" => settings.heartbeat_interval_ms = number(key)?,
        "node_timeout_ms" => settings.node_timeout_ms = number(key)?,
        "lease_ms" => settings.lease_ms = number(key)?,
        "lease_margin_ms" => settings.lease_margin_ms = number(key)?,
        "profile" => {
            let named = value
                .parse::<Profile>()
                .map_err(|reason| Rejection::InvalidProperty { key: key.into(), reason })?
                .timing();
            // A profile is heartbeat and lease timing only; what else is set stays.
            settings.heartbeat_interval_ms = named.heartbeat_interval_ms;
            settings.node_timeout_ms = named.node_timeout_ms;
            settings.lease_ms = named.lease_ms;
            settings.lease_margin_ms = named.lease_margin_ms;
        }
        "raft_heartbeat_ms" | "election_timeout_min_ms" | "election_timeout_max_ms" => {
            return Err(Rejection::InvalidProperty {
                key: key.into(),
                reason: "Raft timing is fixed when the cluster is created (the creating agent's [timing]); \
                         every node must run the same"
                    .into(),
            });
        }
        "max_voters" => settings.max_voters = number(key)? as usize,
        "shared_storage" => {
            settings.shared_storage = crate::vm::parse_shared_storage(value)
                .map_err(|reason| Rejection::InvalidProperty { key: key.into(), reason })?;
        }
        "parallel_migrations" => settings.parallel_migrations = u32::try_from(number(key)?).unwrap_or(u32::MAX),
        "validation_interval_ms" => settings.validation_interval_ms = number(key)?,
        "certificate_lifetime_ms" => settings.certificate_lifetime_ms = number(key)?,
        _ if is_free_property(key) => {
            if value.len() > 4096 {
                return Err(Rejection::InvalidProperty { key: key.into(), reason: "longer than 4096 bytes".into() });
            }
        }
        _ => {
            return Err(Rejection::InvalidProperty {
                key: key.into(),
                reason: "unknown property (known: description, label.NAME, profile, heartbeat_interval_ms, \
                         node_timeout_ms, lease_ms, lease_margin_ms, max_voters, shared_storage, \
                         parallel_migrations, validation_interval_ms, certificate_lifetime_ms)"
                    .into(),
            });
        }
    }
    Ok(())
}

pub fn validate_settings(settings: &ClusterSettings) -> Result<(), Rejection> {
    let invalid = |key: &str, reason: String| Rejection::InvalidProperty { key: key.into(), reason };
    if !(10..=10_000).contains(&settings.heartbeat_interval_ms) {
        return Err(invalid("heartbeat_interval_ms", "must be between 10 and 10000".into()));
    }
    if settings.node_timeout_ms < 3 * settings.heartbeat_interval_ms || settings.node_timeout_ms > 600_000 {
        return Err(invalid(
            "node_timeout_ms",
            format!("must be at least 3 heartbeats ({} ms) and at most 600000", 3 * settings.heartbeat_interval_ms),
        ));
    }
    if settings.lease_ms < settings.node_timeout_ms || settings.lease_ms > 600_000 {
        return Err(invalid(
            "lease_ms",
            format!("must be at least the node timeout ({} ms) and at most 600000", settings.node_timeout_ms),
        ));
    }
    if settings.lease_margin_ms < 50.max(settings.lease_ms / 100) || settings.lease_margin_ms > settings.lease_ms {
        return Err(invalid(
            "lease_margin_ms",
            format!(
                "must be at least 50 and 1 % of the lease ({} ms; it covers clock rates that differ), \
                 and at most the lease",
                50.max(settings.lease_ms / 100)
            ),
        ));
    }
    if settings.node_timeout_ms > 1000 * settings.heartbeat_interval_ms {
        return Err(invalid(
            "node_timeout_ms",
            format!(
                "must be at most 1000 heartbeats ({} ms): a heartbeat counts only if it answers one sent within the timeout",
                1000 * settings.heartbeat_interval_ms
            ),
        ));
    }
    settings.raft.check().map_err(|reason| invalid("raft", reason))?;
    if !CERTIFICATE_LIFETIME_MS.contains(&settings.certificate_lifetime_ms) {
        return Err(invalid(
            "certificate_lifetime_ms",
            format!(
                "must be between {} and {} (three years)",
                CERTIFICATE_LIFETIME_MS.start(),
                CERTIFICATE_LIFETIME_MS.end()
            ),
        ));
    }
    // The leader's own lease (half a lease, dated from its last quorum acknowledgement) must
    // outlast the grant window, or a healthy leader would stop granting itself between two
    // acknowledgements; a lease shorter than that is not a lease Raft can keep.
    let grant_window = settings.raft.grant_window_ms();
    if settings.lease_timing().leader_lease_ms() <= grant_window {
        return Err(invalid(
            "lease_ms",
            format!(
                "must be more than twice the grant window ({grant_window} ms = {} Raft heartbeats of {} ms; the \
                 leader's own lease, half a lease, must outlast it): at least {} ms",
                crate::timing::GRANT_WINDOW_HEARTBEATS,
                settings.raft.raft_heartbeat_ms,
                2 * grant_window + 2
            ),
        ));
    }
    if !(1..=64).contains(&settings.parallel_migrations) {
        return Err(invalid("parallel_migrations", "must be between 1 and 64".into()));
    }
    if settings.validation_interval_ms != 0 && settings.validation_interval_ms < 10_000 {
        return Err(invalid("validation_interval_ms", "must be 0 (never) or at least 10000".into()));
    }
    if settings.max_voters == 0 || settings.max_voters > MAX_VOTERS_LIMIT {
        return Err(invalid("max_voters", format!("must be between 1 and {MAX_VOTERS_LIMIT}")));
    }
    Ok(())
}

impl ClusterState {
    pub(crate) fn set_properties(&mut self, properties: &[(String, String)]) -> Result<CommandResult, Rejection> {
        self.require_cluster()?;
        let mut settings = self.settings.clone();
        for (key, value) in properties {
            apply_property(&mut settings, key, value)?;
        }
        validate_settings(&settings)?;
        for role in self.roles.values() {
            for vm in role.spec.vms().flatten() {
                vm.check_shared(&settings.shared_storage).map_err(|e| Rejection::InvalidProperty {
                    key: "shared_storage".into(),
                    reason: format!("role {} would lose its disks: {e}", role.spec.name),
                })?;
            }
        }
        if settings.max_voters < self.voter_count() {
            return Err(Rejection::InvalidProperty {
                key: "max_voters".into(),
                reason: format!("the cluster already has {} voters", self.voter_count()),
            });
        }
        self.settings = settings;
        for (key, value) in properties {
            if is_free_property(key) {
                self.properties.insert(key.clone(), value.clone());
            }
        }
        Ok(CommandResult::Done)
    }
}
