//! Test harness: real `halo agent` processes on loopback addresses, driven through the real CLI.
//! Each test uses its own `127.<id>.x.y` addresses, so tests can run in parallel.

#![allow(dead_code)]

pub mod ids;
pub mod vm;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const API_PORT: u16 = 7400;
pub const NET_PORT: u16 = 7401;

pub struct Node {
    pub name: String,
    pub api: String,
    pub nets: Vec<String>,
    pub data_dir: PathBuf,
    pub witness: bool,
    /// More `halo agent` flags for this node (e.g. `--memory 1G`).
    pub extra_args: Vec<String>,
    /// More environment for this node's agent only.
    pub env: Vec<(String, String)>,
    /// A command that runs the agent: its arguments, then the agent's command line (e.g.
    /// `unshare --mount ...` to give the node its own view of the file systems).
    pub wrapper: Vec<String>,
    /// When set, the agent reads its settings from a TOML file: these lines (e.g. a
    /// `[timing]` table) after its name, addresses and data dir.
    pub config_toml: Option<String>,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub config: PathBuf,
    /// Extra environment for every agent started.
    pub env: Vec<(String, String)>,
    /// `halo cluster create --profile` (with it the Raft timing); none: the default.
    pub profile: Option<String>,
    iptables_rules: Vec<Vec<String>>,
}

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_halo")
}

impl Cluster {
    /// Pids of this cluster's workloads of `role`, on any node: the guards mark each workload
    /// with their data directory, so another test's role of the same name is not counted.
    pub fn role_pids(&self, role: &str) -> Vec<i32> {
        let wanted = format!("HALO_ROLE={role}");
        let mine = format!("HALO_GUARD={}/", self.dir.path().display());
        scan_proc("environ", |vars| vars.iter().any(|v| v == &wanted) && vars.iter().any(|v| v.starts_with(&mine)))
    }

    /// Running instances of `role` in this cluster: the distinct process groups of its
    /// workloads (each resource runs in a process group of its own).
    pub fn role_processes(&self, role: &str) -> Vec<i32> {
        let mut groups: Vec<i32> = self
            .role_pids(role)
            .into_iter()
            .filter_map(|pid| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))).ok())
            .map(|g| g.as_raw())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups
    }
}

impl Cluster {
    /// `count` agents (not started); the last `witnesses` of them are witnesses.
    pub fn new(test_id: u8, count: usize, witnesses: usize) -> Self {
        ids::claim(test_id);
        // HALO_TEST_KEEP=1 keeps the directory (agents' logs, data) for a look afterwards.
        let keep = std::env::var_os("HALO_TEST_KEEP").is_some();
        let dir = tempfile::Builder::new().prefix("halo-test-").disable_cleanup(keep).tempdir().expect("tempdir");
        let nodes = (1..=count)
            .map(|i| Node {
                name: format!("n{i}"),
                api: format!("127.{test_id}.1.{i}:{API_PORT}"),
                nets: vec![format!("127.{test_id}.1.{i}:{NET_PORT}"), format!("127.{test_id}.2.{i}:{NET_PORT}")],
                data_dir: dir.path().join(format!("n{i}")),
                witness: i > count - witnesses,
                extra_args: Vec::new(),
                env: Vec::new(),
                wrapper: Vec::new(),
                config_toml: None,
                child: None,
            })
            .collect();
        let config = dir.path().join("client.toml");
        Self { dir, nodes, config, env: Vec::new(), profile: None, iptables_rules: Vec::new() }
    }

    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} already running", node.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", node.name)))
            .expect("log file");
        let mut cmd = match node.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(exe());
                cmd
            }
            None => Command::new(exe()),
        };
        match &node.config_toml {
            Some(extra) => {
                let file = self.dir.path().join(format!("{}.toml", node.name));
                let nets: Vec<String> = node.nets.iter().map(|n| format!("{n:?}")).collect();
                let text = format!(
                    "name = {:?}\napi = {:?}\nnetworks = [{}]\ndata_dir = {:?}\n{extra}\n",
                    node.name,
                    node.api,
                    nets.join(", "),
                    node.data_dir.display().to_string()
                );
                std::fs::write(&file, text).expect("agent config");
                cmd.arg("agent").arg("--config").arg(file);
            }
            None => {
                cmd.args(["agent", "--name", &node.name, "--api", &node.api, "--net", &node.nets.join(",")])
                    .arg("--data-dir")
                    .arg(&node.data_dir);
            }
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        if node.witness {
            cmd.arg("--witness");
        }
        cmd.args(&node.extra_args);
        cmd.envs(self.env.iter().chain(&node.env).map(|(k, v)| (k.as_str(), v.as_str())));
        node.child = Some(cmd.spawn().expect("spawn agent"));
        let api = node.api.clone();
        assert!(
            wait_until(Duration::from_secs(15), || std::net::TcpStream::connect(&api).is_ok()),
            "agent {} did not open its API",
            self.nodes[i].name
        );
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// A host crash of the agent: SIGKILL, no chance to clean up.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A host crash: the agent, its fence guard and every workload die at once.
    pub fn crash(&mut self, i: usize) {
        // All at once, as a host dies: the agent is frozen first, so it cannot see its guard
        // die and start a new one (with the role again) before its own turn comes.
        if let Some(child) = &self.nodes[i].child {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGSTOP,
            );
        }
        let marker = self.nodes[i].data_dir.display().to_string();
        let mut victims = processes_with_env("HALO_GUARD", &marker);
        victims.extend(processes_with_cmdline(&["fence-guard", &marker]));
        for pid in &victims {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL);
        }
        self.kill9(i);
        for pid in victims {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the agent process only: a hung host whose workloads
    /// and fence guard keep running.
    pub fn freeze(&self, i: usize, frozen: bool) {
        let pid = self.nodes[i].child.as_ref().expect("agent running").id() as i32;
        let signal = if frozen { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal agent");
    }

    /// `halo role show NAME --json`, if it answers.
    pub fn role(&self, name: &str) -> Option<Value> {
        let out = self.halo(&["role", "show", name, "--json"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    /// Wait until the role is online, and return its owner.
    pub fn wait_online(&self, name: &str, timeout: Duration, check: impl Fn(&str) -> bool) -> Option<String> {
        let mut owner = None;
        wait_until(timeout, || match self.role(name) {
            Some(r) if r["state"] == "online" && r["owner"].as_str().is_some_and(&check) => {
                owner = r["owner"].as_str().map(str::to_string);
                true
            }
            _ => false,
        });
        owner
    }

    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        self.start(i);
    }

    /// Run the CLI against this cluster's client config.
    pub fn halo(&self, args: &[&str]) -> Output {
        self.halo_env(args, &[])
    }

    pub fn halo_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(exe());
        cmd.args(args).env("HALO_CONFIG", &self.config).env_remove("HALO_ENDPOINT").env_remove("HALO_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run halo")
    }

    /// Run the CLI, require success, parse `--json` output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.halo(&all);
        assert!(out.status.success(), "halo {args:?} failed: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    pub fn create(&mut self) {
        let endpoint = format!("https://{}", self.nodes[0].api);
        let fingerprint = self.fingerprint(0);
        let mut args =
            vec!["cluster", "create", "--name", "test", "--endpoint", &endpoint, "--fingerprint", &fingerprint];
        let secret = self.bootstrap_secret(0);
        args.extend(secret.iter().flat_map(|s| ["--bootstrap-secret", s.as_str()]));
        args.extend(self.profile.iter().flat_map(|p| ["--profile", p.as_str()]));
        let out = self.halo(&args);
        assert!(out.status.success(), "create failed: {}", text(&out));
    }

    /// What an unjoined agent's certificate hashes to, as it wrote it for the admin to pin.
    pub fn fingerprint(&self, i: usize) -> String {
        let file = self.nodes[i].data_dir.join("bootstrap.fingerprint");
        std::fs::read_to_string(&file).expect("the agent's bootstrap fingerprint").trim().to_string()
    }

    /// A node that is not on this machine's loopback (its own network namespace) takes
    /// bootstrap requests only with its secret, as a remote host would.
    fn bootstrap_secret(&self, i: usize) -> Option<String> {
        let node = &self.nodes[i];
        (!node.api.starts_with("127.")).then(|| {
            let file = node.data_dir.join("bootstrap.secret");
            std::fs::read_to_string(&file).expect("the agent's bootstrap secret").trim().to_string()
        })
    }

    pub fn token(&self, ttl: &str) -> String {
        self.json(&["cluster", "token", "--ttl", ttl])["token"].as_str().expect("token").to_string()
    }

    pub fn join(&self, i: usize) -> Output {
        let token = self.token("10m");
        let endpoint = self.nodes[i].api.clone();
        let fingerprint = self.fingerprint(i);
        let mut args =
            vec!["cluster", "join", "--endpoint", &endpoint, "--token", &token, "--fingerprint", &fingerprint];
        let secret = self.bootstrap_secret(i);
        args.extend(secret.iter().flat_map(|s| ["--bootstrap-secret", s.as_str()]));
        self.halo(&args)
    }

    /// Start every agent, create the cluster on the first, join the others, wait for all up.
    pub fn form(&mut self) {
        self.start_all();
        self.create();
        for i in 1..self.nodes.len() {
            let out = self.join(i);
            assert!(out.status.success(), "join of {} failed: {}", self.nodes[i].name, text(&out));
        }
        let n = self.nodes.len();
        assert!(
            self.wait_status(Duration::from_secs(30), |s| s["quorum"] == true && up_count(s) == n),
            "cluster did not come up: {:?}",
            self.status()
        );
    }

    pub fn status(&self) -> Option<Value> {
        let out = self.halo(&["status", "--json"]);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    pub fn wait_status(&self, timeout: Duration, check: impl Fn(&Value) -> bool) -> bool {
        wait_until(timeout, || self.status().is_some_and(|s| check(&s)))
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).expect("known node")
    }

    pub fn leader(&self) -> Option<String> {
        self.status().and_then(|s| s["leader"].as_str().map(str::to_string))
    }

    /// Drop every packet to or from `address`'s IP (one heartbeat network of one node).
    pub fn block(&mut self, address: &str) {
        let ip = address.split(':').next().expect("ip").to_string();
        for rule in [vec!["INPUT", "-s", &ip], vec!["INPUT", "-d", &ip]] {
            let mut args: Vec<String> = rule.iter().map(|s| s.to_string()).collect();
            args.extend(["-j".into(), "DROP".into()]);
            iptables("-I", &args);
            self.iptables_rules.push(args);
        }
    }

    pub fn unblock_all(&mut self) {
        for rule in self.iptables_rules.drain(..) {
            iptables("-D", &rule);
        }
    }

    /// The admin token from this cluster's client config.
    pub fn admin_token(&self) -> String {
        let config: toml::Value = toml::from_str(&std::fs::read_to_string(&self.config).expect("client config"))
            .expect("client config parses");
        config["token"].as_str().expect("token").to_string()
    }

    /// One sample of node `i`'s `/metrics`: the value of the series named exactly `series`.
    pub fn metric(&self, i: usize, series: &str) -> Option<f64> {
        let token = self.admin_token();
        let text = runtime().block_on(async {
            let response = https(None)
                .get(format!("https://{}/metrics", self.nodes[i].api))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?;
            response.text().await.ok()
        })?;
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(series))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.nodes[i].name))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.unblock_all();
        for i in 0..self.nodes.len() {
            if let Some(child) = &self.nodes[i].child {
                // A frozen agent cannot die of SIGKILL until it is thawed.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGCONT,
                );
            }
            self.crash(i);
        }
    }
}

/// A single-threaded runtime for tests that speak HTTP themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    halo_security::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// An HTTPS client that does not check the server (tests check what the API does, not TLS),
/// optionally presenting a client certificate (cert, key).
pub fn https(identity: Option<(&str, &str)>) -> reqwest::Client {
    let tls = halo_security::tls::unverified_client_config_with(identity).expect("tls");
    reqwest::Client::builder().tls_backend_preconfigured(tls).timeout(Duration::from_secs(10)).build().expect("client")
}

/// Pids of processes whose environment has `key=value`.
pub fn processes_with_env(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    scan_proc("environ", |vars| vars.iter().any(|v| v == &needle))
}

/// The test fence agents (`install_fence_agent`) installed under `dir` running now.
pub fn fence_agents_running(dir: &std::path::Path) -> Vec<i32> {
    let dir = dir.display().to_string();
    scan_proc("cmdline", |args| args.iter().any(|a| a.starts_with(&dir) && a.ends_with("/fence_halotest")))
}

/// Pids of processes whose command line contains all of `words`.
pub fn processes_with_cmdline(words: &[&str]) -> Vec<i32> {
    scan_proc("cmdline", |args| words.iter().all(|w| args.iter().any(|a| a == w)))
}

fn scan_proc(file: &str, matches: impl Fn(&[String]) -> bool) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let bytes = std::fs::read(e.path().join(file)).ok()?;
            let parts: Vec<String> =
                bytes.split(|&b| b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
            matches(&parts).then_some(pid)
        })
        .collect()
}

/// A workload that proves exclusivity: it takes an exclusive `flock` on `dir/lock` without
/// waiting, records its start (node, generation, time in ms) in `dir/starts`, and records any
/// failure to get the lock in `dir/failures`. Two instances at once leave a line in failures.
pub fn lock_workload(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).expect("workload dir");
    let script = dir.join("workload.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             exec 9>>'{d}/lock'\n\
             if ! flock -n 9; then echo \"$HALO_NODE $HALO_GENERATION $(date +%s%3N)\" >> '{d}/failures'; exit 1; fi\n\
             echo \"$HALO_NODE $HALO_GENERATION $(date +%s%3N)\" >> '{d}/starts'\n\
             exec sleep 100000\n",
            d = dir.display()
        ),
    )
    .expect("write workload");
    format!("exec sh {}", script.display())
}

/// The test guest (`scripts/guest`), built once into `target/guest`: its directory.
pub fn test_guest() -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = root.join("target/guest");
    let out = Command::new(root.join("scripts/guest")).arg(&dir).output().expect("scripts/guest");
    assert!(out.status.success(), "scripts/guest: {}", text(&out));
    dir
}

/// Lines of `dir/name`, or none.
pub fn lines(dir: &std::path::Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(name)).map(|s| s.lines().map(str::to_string).collect()).unwrap_or_default()
}

pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn iptables(op: &str, rule: &[String]) {
    let out =
        Command::new("iptables").arg(op).args(rule).output().expect("iptables must be installed (.ci/run installs it)");
    assert!(out.status.success(), "iptables {op} {rule:?}: {}", text(&out));
}

pub fn node<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["nodes"].as_array().and_then(|a| a.iter().find(|n| n["name"] == name)).expect("node in status")
}

pub fn up_count(status: &Value) -> usize {
    status["nodes"].as_array().map_or(0, |a| a.iter().filter(|n| n["state"] == "up").count())
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `ok` held at every look over `window` (one every 50 ms): a quiet period is
/// watched through, not sampled once at its end.
pub fn holds_for(window: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + window;
    loop {
        if !ok() {
            return false;
        }
        if Instant::now() >= end {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Cluster {
    /// The newest event's sequence number (0 before any).
    pub fn last_event(&self) -> u64 {
        self.events_after(0).last().and_then(|e| e["seq"].as_u64()).unwrap_or(0)
    }

    /// The cluster's events after sequence number `seq`, oldest first.
    pub fn events_after(&self, seq: u64) -> Vec<Value> {
        let out = self.halo(&["events", "--json", "--last", "1000"]);
        assert!(out.status.success(), "events: {}", text(&out));
        let events: Value = serde_json::from_slice(&out.stdout).expect("events as JSON");
        events
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["seq"].as_u64().is_some_and(|s| s > seq))
            .cloned()
            .collect()
    }

    /// The nodes that went down after event `seq`, by the typed node-state changes.
    pub fn went_down_after(&self, seq: u64) -> Vec<String> {
        self.events_after(seq)
            .iter()
            .filter(|e| e["change"]["change"] == "node_state" && e["change"]["to"] == "down")
            .map(|e| e["subject"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

/// SIGKILL every running instance of `role` in cluster `c` (its workloads' process groups).
pub fn kill_instance(c: &Cluster, role: &str) {
    for group in c.role_processes(role) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
    }
}

/// A fence agent (`fence_halotest`, standard stdin protocol) that is a real power switch for
/// a node on loopback: `action=off` with `datadir=` kills that node's agent, fence guard and
/// workloads. Returns a PATH that finds it.
pub fn install_fence_agent(dir: &std::path::Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let agent = bin.join("fence_halotest");
    std::fs::write(
        &agent,
        r#"#!/bin/sh
action=; dir=
while IFS='=' read -r k v; do
  case "$k" in action) action=$v ;; datadir) dir=$v ;; esac
done
[ "$action" = off ] || exit 0
[ -n "$dir" ] || { echo "no datadir given" >&2; exit 1; }
for f in /proc/[0-9]*/environ; do
  if tr '\0' '\n' < "$f" 2>/dev/null | grep -qx "HALO_GUARD=$dir"; then p=${f#/proc/}; kill -9 "${p%/environ}" 2>/dev/null; fi
done
pkill -9 -f -- "--data-dir $dir\$"
pkill -9 -f -- "fence-guard --data-dir $dir\$"
echo "off" >> "$dir.fenced"
exit 0
"#,
    )
    .expect("write agent");
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

/// Hosts in network namespaces of their own, on one bridge: each node sees only its own
/// interface (`eth0`), so an address it holds is visibly its own. Node `i` (from 1) has
/// `10.<id>.1.i` (API and first heartbeat network), `10.<id>.2.i` (second network) and
/// `10.<id>.3.i` (a subnet for floating addresses); the test itself, in the root namespace, is
/// `.254` on each. Everything is removed on drop, and any leftover of an earlier run first.
pub struct Lan {
    pub id: u8,
    pub count: usize,
}

impl Lan {
    pub fn new(id: u8, count: usize) -> Self {
        ids::claim(id);
        let lan = Self { id, count };
        lan.remove();
        let bridge = lan.bridge();
        sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
        for net in 1..=3 {
            sh(&["ip", "addr", "add", &format!("10.{id}.{net}.254/24"), "dev", &bridge]);
        }
        sh(&["ip", "link", "set", &bridge, "up"]);
        for i in 1..=count {
            let (ns, outside) = (lan.namespace(i), format!("h{id}n{i}"));
            sh(&["ip", "netns", "add", &ns]);
            sh(&["ip", "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns]);
            sh(&["ip", "link", "set", &outside, "master", &bridge, "up"]);
            for net in 1..=3 {
                sh(&["ip", "-n", &ns, "addr", "add", &format!("10.{id}.{net}.{i}/24"), "dev", "eth0"]);
            }
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    fn bridge(&self) -> String {
        format!("hbr{}", self.id)
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("halo-{}-n{i}", self.id)
    }

    /// Put the cluster's nodes on this LAN: each agent runs in its node's namespace.
    pub fn place(&self, c: &mut Cluster) {
        assert_eq!(c.nodes.len(), self.count);
        for (i, node) in c.nodes.iter_mut().enumerate() {
            let n = i + 1;
            node.api = format!("10.{}.1.{n}:{API_PORT}", self.id);
            node.nets = vec![format!("10.{}.1.{n}:{NET_PORT}", self.id), format!("10.{}.2.{n}:{NET_PORT}", self.id)];
            node.wrapper = vec!["ip".into(), "netns".into(), "exec".into(), self.namespace(n)];
        }
    }

    /// Whether node `i` (from 1) holds `address` on its interface.
    pub fn holds(&self, i: usize, address: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.namespace(i), "-o", "-4", "addr", "show", "dev", "eth0"])
            .output()
            .expect("ip");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(address) && w.contains('/'))
    }

    /// The nodes (from 1) that hold `address` now.
    pub fn holders(&self, address: &str) -> Vec<usize> {
        (1..=self.count).filter(|&i| self.holds(i, address)).collect()
    }

    /// Node `i`'s hardware address on the LAN.
    pub fn mac(&self, i: usize) -> String {
        let out =
            Command::new("ip").args(["-n", &self.namespace(i), "-o", "link", "show", "eth0"]).output().expect("ip");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        words.by_ref().find(|w| *w == "link/ether");
        words.next().expect("eth0 has a MAC").to_string()
    }

    /// The hardware address the test's own host has for `address` (its ARP cache).
    pub fn neighbour(&self, address: &str) -> Option<String> {
        let out = Command::new("ip").args(["neigh", "show", address, "dev", &self.bridge()]).output().expect("ip");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut words = text.split_whitespace();
        words.by_ref().find(|w| *w == "lladdr");
        words.next().map(str::to_string)
    }

    fn remove(&self) {
        for i in 1..=self.count {
            let _ = Command::new("ip").args(["netns", "del", &self.namespace(i)]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).output();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Run a setup command; it must succeed.
fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run setup command");
    assert!(out.status.success(), "{args:?} failed: {}", text(&out));
}
