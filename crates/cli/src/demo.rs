//! `halo demo`: three real agent processes on loopback addresses, two networks each, formed into
//! a cluster with a few sample roles, kept running until Ctrl-C, then stopped cleanly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use halo_api::validation::{ProbeReply, ProbeRequest};
use halo_api::{cluster::*, membership::*};
use halo_core::state::NodeState;
use tokio::process::{Child, Command};

use crate::client::{Api, ClientConfig};
use crate::commands::wait_for;
use crate::output;

/// The sample VM role's name.
const SAMPLE_VM: &str = "vm";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// First three octets of the loopback addresses of the first network (node N gets .N).
    #[arg(long, default_value = "127.0.10")]
    pub prefix: String,
    /// API port; the heartbeat networks use the next port.
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
    /// Keep data and logs here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A test guest (`scripts/guest` builds one: vmlinuz and initrd.img): with it, and QEMU
    /// installed, the demo also runs a VM role.
    #[arg(long)]
    pub guest: Option<PathBuf>,
}

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.start_kill();
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp;
    let dir: &Path = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => {
            temp = tempfile::Builder::new().prefix("halo-demo-").tempdir()?;
            temp.path()
        }
    };
    let second = second_prefix(&args.prefix)?;
    let exe = std::env::current_exe().context("cannot find the halo executable")?;
    let mut nodes = Nodes(Vec::new());
    let mut apis = Vec::new();
    for i in 1..=3 {
        let api = format!("{}.{i}:{}", args.prefix, args.port);
        let nets = format!("{}.{i}:{p},{second}.{i}:{p}", args.prefix, p = args.port + 1);
        let log = std::fs::File::create(dir.join(format!("node{i}.log")))?;
        let child = Command::new(&exe)
            .args(["agent", "--name", &format!("node{i}"), "--api", &api, "--net", &nets, "--data-dir"])
            .arg(dir.join(format!("node{i}")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting an agent")?;
        nodes.0.push(child);
        apis.push(api);
    }
    for (i, api) in apis.iter().enumerate() {
        let up = wait_for(Duration::from_secs(15), async || tokio::net::TcpStream::connect(api).await.is_ok()).await;
        if !up {
            bail!("agent node{} did not start; see {}", i + 1, dir.join(format!("node{}.log", i + 1)).display());
        }
    }

    // The demo started these agents: it knows their fingerprints (and pins them).
    let fingerprint = |i: usize| {
        let file = dir.join(format!("node{}", i + 1)).join("bootstrap.fingerprint");
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
    };
    let created: CreateClusterResponse = Api::bootstrap(&apis[0], None, Some(&fingerprint(0)?))?
        .post("/api/v1/bootstrap/create", &CreateClusterRequest { name: "demo".into(), profile: None })
        .await?;
    let config = ClientConfig {
        cluster: created.cluster.clone(),
        endpoints: apis.clone(),
        ca_cert_pem: created.ca_cert_pem,
        token: created.admin_token,
    };
    let config_path = config.save_to(&dir.join("config.toml"))?;
    let api = Api::from_config(&config)?;
    for (i, joining) in apis.iter().enumerate().skip(1) {
        let token: TokenResponse = api.post("/api/v1/tokens", &TokenRequest { ttl_seconds: 300 }).await?;
        let _: JoinClusterResponse = Api::bootstrap(joining, None, Some(&fingerprint(i)?))?
            .post("/api/v1/bootstrap/join", &JoinClusterRequest { token: token.token })
            .await?;
    }
    let all_up = wait_for(Duration::from_secs(30), async || {
        api.get::<StatusView>("/api/v1/status")
            .await
            .is_ok_and(|s| s.quorum && s.nodes.len() == 3 && s.nodes.iter().all(|n| n.state == NodeState::Up))
    })
    .await;
    if !all_up {
        bail!("the demo cluster did not come up; agent logs are in {}", dir.display());
    }
    let mut specs = sample_roles(dir);
    if let Some(guest) = &args.guest {
        if runs_qemu(&api).await? {
            let shared = dir.join("shared");
            for file in ["vmlinuz", "initrd.img"] {
                std::fs::create_dir_all(&shared)?;
                std::fs::copy(guest.join(file), shared.join(file))
                    .with_context(|| format!("no test guest in {} (scripts/guest builds one)", guest.display()))?;
            }
            let properties = vec![("shared_storage".to_string(), shared.display().to_string())];
            api.post_no_reply("/api/v1/cluster/properties", &PropertiesRequest { properties }).await?;
            specs.push(sample_vm(&shared));
        } else {
            println!("(qemu-system-x86_64 is not installed: no VM role in this demo)");
        }
    }
    let vm = specs.iter().any(|s| s.name == SAMPLE_VM);
    for spec in specs {
        api.post_no_reply("/api/v1/roles", &spec)
            .await
            .with_context(|| format!("creating sample role {}", spec.name))?;
    }
    let roles_online = wait_for(Duration::from_secs(if vm { 90 } else { 30 }), async || {
        api.get::<StatusView>("/api/v1/status")
            .await
            .is_ok_and(|s| s.roles.iter().all(|r| r.state == halo_core::role::RoleState::Online))
    })
    .await;
    let status: StatusView = api.get("/api/v1/status").await?;
    print!("{}", output::status_text(&status));
    if !roles_online {
        bail!("the sample roles did not come online; agent logs are in {}", dir.display());
    }
    println!();
    println!("Point the CLI at the demo cluster from another terminal:");
    println!("  export HALO_CONFIG={}", config_path.display());
    println!("  halo status");
    println!("  halo role why web            # where it runs and why");
    println!("  halo role move web --to node3");
    println!("  halo node pause node1 --drain; halo node resume node1 --failback");
    println!("  tail -f {}/web.out          # the web role writes here from whichever node runs it", dir.display());
    if vm {
        println!("  halo role move vm --to node3 # live migration of the VM role; its uptime goes on:");
        println!("  tail -f {}/node*/vms/vm.guest/serial.log", dir.display());
    }
    println!(
        "Web console: https://{}/console/ (log in with the admin token, the `token` in the config above)",
        apis[0]
    );
    println!("  halo log --since 5m          # every agent's log, merged in time order");
    println!("Agent logs: {}/node{{1,2,3}}.log. Press Ctrl-C to stop.", dir.display());
    println!("demo ready");

    shutdown_signal().await;
    println!("stopping the demo cluster");
    for child in &mut nodes.0 {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
        }
    }
    for child in &mut nodes.0 {
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
    Ok(())
}

/// A small web-like service preferring node1, and two databases that must not share a node.
fn sample_roles(dir: &Path) -> Vec<halo_core::role::RoleSpec> {
    use halo_core::role::{ResourceSpec, RoleSpec};
    let role = |name: &str, command: String, preferred: &[&str], anti_affinity: &[&str]| RoleSpec {
        name: name.into(),
        resources: vec![ResourceSpec {
            secret_params: Default::default(),
            name: "main".into(),
            kind: halo_core::resource_kind::ResourceKind::Process,
            params: [("command".to_string(), command)].into(),
            restart: Default::default(),
            timeouts: Default::default(),
            agent_timeouts: Default::default(),
        }],
        preferred: preferred.iter().map(|s| s.to_string()).collect(),
        possible: Vec::new(),
        anti_affinity: anti_affinity.iter().map(|s| s.to_string()).collect(),
        anti_affinity_soft: false,
        priority: Default::default(),
        failover: Default::default(),
        failback: Default::default(),
        desired: Default::default(),
        cpu_milli: 100,
        memory_mb: 64,
    };
    let web = format!(
        "while true; do echo \"$(date +%T) served by $HALO_NODE (generation $HALO_GENERATION)\" >> '{}'; sleep 1; done",
        dir.join("web.out").display()
    );
    vec![
        role("web", web, &["node1", "node2"], &[]),
        role("db-primary", "exec sleep infinity".into(), &[], &["db"]),
        role("db-replica", "exec sleep infinity".into(), &[], &["db"]),
    ]
}

/// The test guest as a VM role: 128 MB, watched through its serial heartbeat.
fn sample_vm(shared: &Path) -> halo_core::role::RoleSpec {
    use halo_core::role::{ResourceSpec, RoleSpec};
    let params = [
        ("memory", "128M".to_string()),
        ("kernel", shared.join("vmlinuz").display().to_string()),
        ("initrd", shared.join("initrd.img").display().to_string()),
        ("append", "console=ttyS0 quiet".to_string()),
        ("heartbeat", "serial".to_string()),
    ];
    RoleSpec {
        name: SAMPLE_VM.into(),
        resources: vec![ResourceSpec {
            secret_params: Default::default(),
            name: "guest".into(),
            kind: halo_core::resource_kind::ResourceKind::Vm,
            params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            restart: Default::default(),
            timeouts: Default::default(),
            agent_timeouts: Default::default(),
        }],
        preferred: vec!["node2".into()],
        possible: Vec::new(),
        anti_affinity: Vec::new(),
        anti_affinity_soft: false,
        priority: Default::default(),
        failover: Default::default(),
        failback: Default::default(),
        desired: Default::default(),
        cpu_milli: 0,
        memory_mb: 0,
    }
}

/// 127.0.10 -> 127.0.11: the second network of each node.
fn second_prefix(prefix: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = prefix.split('.').collect();
    let third: u8 = match parts.as_slice() {
        ["127", _, c] => c.parse().ok(),
        _ => None,
    }
    .with_context(|| format!("invalid --prefix '{prefix}': expected three octets of 127.x.y"))?;
    let next =
        third.checked_add(1).with_context(|| format!("--prefix '{prefix}' leaves no room for a second network"))?;
    Ok(format!("{}.{}.{next}", parts[0], parts[1]))
}

/// Ctrl-C or SIGTERM.
/// Whether the demo's agents can run VMs: asked of an agent (they all run here), so the demo
/// judges QEMU exactly as the agents will.
async fn runs_qemu(api: &Api) -> anyhow::Result<bool> {
    let ask = ProbeRequest::Facts { ocf: Vec::new(), fence: Vec::new(), files: Vec::new() };
    match api.post::<_, ProbeReply>("/api/v1/probe", &ask).await.context("asking an agent for its facts")? {
        ProbeReply::Facts(facts) => Ok(facts.qemu.is_some()),
        other => bail!("an agent answered a facts probe with {other:?}"),
    }
}

pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
