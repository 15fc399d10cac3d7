//! `halo agent` configuration: a TOML file or flags, validated before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use halo_core::capacity::{self, Capacity};
use halo_core::timing::RaftTiming;
use serde::Deserialize;

#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// TOML configuration file (the flags below are the alternative).
    #[arg(long, conflicts_with_all = ["name", "data_dir", "api", "net"])]
    pub config: Option<PathBuf>,
    /// This node's name, unique in the cluster.
    #[arg(long)]
    pub name: Option<String>,
    /// Where the agent keeps its identity and its copy of the cluster database.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HOST:PORT of the HTTPS API.
    #[arg(long)]
    pub api: Option<String>,
    /// HOST:PORT of one heartbeat network; repeat or separate with commas, one per network.
    #[arg(long, value_delimiter = ',')]
    pub net: Vec<String>,
    /// A voter that stores the log but never runs roles (the tie-breaker of a 2-node cluster).
    #[arg(long)]
    pub witness: bool,
    /// CPU this node offers to roles: cores (4, 2.5) or thousandths (2500m). Default: all of
    /// this machine's.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory this node offers to roles: 8G, 512M... Default: all of this machine's.
    #[arg(long)]
    pub memory: Option<String>,
    /// A watchdog device (/dev/watchdog, from a hardware watchdog or the softdog module) the
    /// fence guard feeds while the node holds a lease: a node that cannot clean up after
    /// losing its lease is reset.
    #[arg(long)]
    pub watchdog: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub api: String,
    pub networks: Vec<String>,
    #[serde(default)]
    pub witness: bool,
    /// Raft timing for a cluster this agent creates; a member runs its cluster's, and one
    /// configured otherwise is refused (see `halo_core::timing`).
    #[serde(default)]
    pub timing: Option<RaftTiming>,
    /// CPU and memory offered to roles, as written (see the flags); default: the machine's.
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    /// The watchdog device the fence guard feeds (see the flag).
    #[serde(default)]
    pub watchdog: Option<PathBuf>,
    /// What one client may hold open on each listener.
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// When the data directory's disk counts as nearly full, and the room kept for that.
    #[serde(default)]
    pub data_disk: DataDiskLimits,
    /// The two above, parsed (or detected).
    #[serde(skip)]
    pub capacity: Capacity,
}

/// `[connections]`: bounds on what clients hold open on each listener (API and each peer
/// network), so a slow or idle client cannot keep a place forever and many cannot starve
/// the rest.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// A connection that moves no byte this long, while none of its requests is being
    /// answered, is closed (a pooled client reconnects).
    pub idle_timeout_s: u64,
    /// A client sends a request's headers within this, or its connection is closed.
    pub header_timeout_s: u64,
    /// Open connections per listener.
    pub max: usize,
    /// Open connections per listener from one client address (an IPv6 /64).
    pub per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self { idle_timeout_s: 60, header_timeout_s: 10, max: 1024, per_address: 64 }
    }
}

impl ConnectionLimits {
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idle_timeout_s)
    }

    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.header_timeout_s)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.idle_timeout_s == 0 || self.header_timeout_s == 0 || self.max == 0 || self.per_address == 0 {
            bail!("invalid [connections]: every limit must be above zero ({self:?})");
        }
        if self.per_address > self.max {
            bail!("invalid [connections]: per_address {} is above max {}", self.per_address, self.max);
        }
        Ok(())
    }
}

/// `[data_disk]`: the data directory's file system is nearly full when less than `low_free_mb`
/// is free there (not counting the reserve). The agent keeps a reserve of `reserve_mb`
/// (`DATA_DIR/reserve`) that it gives back to the cluster database at that moment (`data_disk`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DataDiskLimits {
    pub low_free_mb: u64,
    /// 0: no reserve.
    pub reserve_mb: u64,
}

impl Default for DataDiskLimits {
    fn default() -> Self {
        Self { low_free_mb: 256, reserve_mb: 64 }
    }
}

impl DataDiskLimits {
    fn check(&self) -> anyhow::Result<()> {
        if self.low_free_mb == 0 {
            bail!("invalid [data_disk]: low_free_mb must be above zero");
        }
        // Beyond a terabyte is a typo, and bytes would overflow further on.
        if self.low_free_mb > 1 << 20 || self.reserve_mb > 1 << 20 {
            bail!("invalid [data_disk]: at most 1048576 MB each ({self:?})");
        }
        Ok(())
    }
}

impl AgentConfig {
    pub fn from_args(args: &AgentArgs) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => {
                let mut config = Self::from_file(path)?;
                config.witness |= args.witness;
                config.cpu = args.cpu.clone().or(config.cpu);
                config.memory = args.memory.clone().or(config.memory);
                config.watchdog = args.watchdog.clone().or(config.watchdog);
                config
            }
            None => {
                let missing = |flag: &str| anyhow::anyhow!("missing --{flag} (or give --config FILE)");
                Self {
                    name: args.name.clone().ok_or_else(|| missing("name"))?,
                    data_dir: args.data_dir.clone().ok_or_else(|| missing("data-dir"))?,
                    api: args.api.clone().ok_or_else(|| missing("api"))?,
                    networks: args.net.clone(),
                    witness: args.witness,
                    timing: None,
                    cpu: args.cpu.clone(),
                    memory: args.memory.clone(),
                    watchdog: args.watchdog.clone(),
                    connections: ConnectionLimits::default(),
                    data_disk: DataDiskLimits::default(),
                    capacity: Capacity::default(),
                }
            }
        };
        config.validate()?;
        config.capacity = config.offered_capacity()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// What the node offers to roles: as configured, else what this machine has.
    pub fn offered_capacity(&self) -> anyhow::Result<Capacity> {
        let cpu_milli = match &self.cpu {
            Some(text) => capacity::parse_cpu(text).map_err(|e| anyhow::anyhow!("--cpu: {e}"))?,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()) as u64 * 1000,
        };
        let memory_mb = match &self.memory {
            Some(text) => capacity::parse_memory(text).map_err(|e| anyhow::anyhow!("--memory: {e}"))?,
            None => crate::host::meminfo_mb("MemTotal").context("cannot read this machine's memory; give --memory")?,
        };
        Ok(Capacity { cpu_milli, memory_mb })
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        halo_core::state::validate_node_name(&self.name)?;
        let api: SocketAddr = parse_addr("api", &self.api)?;
        if self.networks.is_empty() {
            bail!("no network given: each node needs at least one --net HOST:PORT");
        }
        if self.networks.len() > halo_core::state::MAX_NETWORKS {
            bail!("{} networks given; at most {} are supported", self.networks.len(), halo_core::state::MAX_NETWORKS);
        }
        let mut seen = vec![api];
        for net in &self.networks {
            let addr = parse_addr("net", net)?;
            if seen.contains(&addr) {
                bail!("address {addr} is given twice (the API and every network need their own)");
            }
            seen.push(addr);
        }
        if let Some(timing) = &self.timing {
            timing.check().map_err(|e| anyhow::anyhow!("invalid [timing]: {e}"))?;
        }
        self.connections.check()?;
        self.data_disk.check()
    }
}

fn parse_addr(what: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().with_context(|| format!("invalid --{what} address '{text}': expected IP:PORT, e.g. 127.0.0.1:7400"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_configs_with_the_reason() {
        let err = toml::from_str::<AgentConfig>("name='a'\ndata_dir='/x'\napi='1.2.3.4:1'\nnetworks=[]\nbogus=1")
            .unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let mut c: AgentConfig =
            toml::from_str("name='a'\ndata_dir='/x'\napi='127.0.0.1:1'\nnetworks=['127.0.0.1:2']").expect("valid");
        assert!(c.validate().is_ok());
        c.networks.push("127.0.0.1:1".into());
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
        c.networks = vec!["nohost".into()];
        assert!(c.validate().unwrap_err().to_string().contains("invalid --net address 'nohost'"));
        c.networks = vec![];
        assert!(c.validate().unwrap_err().to_string().contains("no network"));
        c.networks = vec!["127.0.0.1:2".into()];
        c.connections.per_address = 0;
        assert!(c.validate().unwrap_err().to_string().contains("invalid [connections]"));
        c.connections = ConnectionLimits::default();
        c.data_disk.low_free_mb = 0;
        assert!(c.validate().unwrap_err().to_string().contains("invalid [data_disk]"));
        c.data_disk = DataDiskLimits { low_free_mb: 16, reserve_mb: 1 << 21 };
        assert!(c.validate().unwrap_err().to_string().contains("invalid [data_disk]"));
        c.data_disk = DataDiskLimits::default();
        c.memory = Some("lots".into());
        assert!(c.offered_capacity().unwrap_err().to_string().contains("--memory: invalid memory amount 'lots'"));
        c.memory = None;
        let detected = c.offered_capacity().expect("this machine's capacity");
        assert!(detected.cpu_milli >= 1000 && detected.memory_mb > 0, "{detected:?}");
    }
}
