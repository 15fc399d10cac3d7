//! The validation survey's surveyor, run by the node asked to validate its cluster (over the
//! peer transport) and by the command line for agents not clustered yet (over their APIs).
//! It asks every node for its facts (and reads its clock on the way), has each node
//! connect to every other on every network, then runs the shared storage test: every node
//! writes a file, every node reads another's back, one node locks a file that every other must
//! fail to lock. Each step asks all nodes at once; the storage steps follow one another.

use std::future::Future;

use halo_core::validation::survey::{
    ClockReading, LockRetry, LockTest, NodeSurvey, StorageError, StorageFault, StorageOnNode, StorageSurvey,
};
use rand::Rng;

pub use halo_api::validation::{ProbeReply, ProbeRequest, ReachTarget, Survey};

/// How a surveyor reaches node `i` of its targets (the peer transport inside a cluster, each
/// agent's API before one exists).
pub trait Transport: Sync {
    fn call(&self, node: usize, request: ProbeRequest) -> impl Future<Output = Result<ProbeReply, String>> + Send;
}

/// A node to survey.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub name: String,
    pub witness: bool,
    pub networks: Vec<String>,
    /// Known to be down: not asked, and reported as such.
    pub down: Option<String>,
    /// Not known yet (before a cluster exists, only its API address is): take the node's own
    /// word for its name, witness flag and networks. Otherwise the node must agree with them.
    pub learn: bool,
}

impl Target {
    /// A node known only by its API address.
    pub fn at(api: &str) -> Self {
        Self { name: api.to_string(), learn: true, ..Self::default() }
    }
}

/// What to look for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// OCF agents the roles name (`ocf:PROVIDER:AGENT`).
    pub ocf: Vec<String>,
    /// Fence agents the fence devices name.
    pub fence: Vec<String>,
    /// Files every node that may run a VM must see: its disks, kernel and initrd.
    pub files: Vec<String>,
    /// Shared storage paths to test.
    pub shared: Vec<String>,
}

const REACH_ATTEMPTS: u32 = 3;
/// Long enough for every other node to try the lock; released before that when they are done.
const LOCK_HOLD_MS: u64 = 15_000;

pub async fn survey<T: Transport>(transport: &T, targets: &[Target], plan: &Plan) -> Survey {
    let asked = futures::future::join_all(targets.iter().enumerate().map(|(i, t)| async move {
        let mut node = NodeSurvey {
            name: t.name.clone(),
            witness: t.witness,
            networks: t.networks.clone(),
            ..NodeSurvey::default()
        };
        if let Some(why) = &t.down {
            node.error = Some(why.clone());
            node.down = true;
            return node;
        }
        let sent = wall_ms();
        match transport
            .call(
                i,
                ProbeRequest::Facts { ocf: plan.ocf.clone(), fence: plan.fence.clone(), files: plan.files.clone() },
            )
            .await
        {
            Ok(ProbeReply::Facts(facts)) if t.learn => {
                node.clock = Some(ClockReading::measure(sent, facts.wall_ms, wall_ms()));
                node.name = facts.name.clone();
                node.witness = facts.witness;
                node.networks = facts.networks.clone();
                node.facts = Some(*facts);
            }
            Ok(ProbeReply::Facts(facts)) if facts.name != t.name || facts.networks != t.networks => {
                node.error = Some(format!(
                    "the agent there is '{}' with networks {}, not what the cluster database says",
                    facts.name,
                    facts.networks.join(", ")
                ));
            }
            Ok(ProbeReply::Facts(facts)) => {
                node.clock = Some(ClockReading::measure(sent, facts.wall_ms, wall_ms()));
                node.facts = Some(*facts);
            }
            Ok(other) => node.error = Some(format!("unexpected answer {other:?}")),
            Err(e) => node.error = Some(e),
        }
        node
    }));
    let mut nodes = asked.await;

    let answering: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].facts.is_some()).collect();
    let reached = futures::future::join_all(answering.iter().map(|&i| {
        let targets = answering
            .iter()
            .filter(|&&j| j != i)
            .flat_map(|&j| nodes[j].networks.iter().enumerate().map(move |(k, address)| (j, k, address.clone())))
            .map(|(j, k, address)| ReachTarget { network: k + 1, node: nodes[j].name.clone(), address })
            .collect();
        transport.call(i, ProbeRequest::Reach { targets, attempts: REACH_ATTEMPTS })
    }))
    .await;
    for (&i, reply) in answering.iter().zip(reached) {
        if let Ok(ProbeReply::Reach(reach)) = reply {
            nodes[i].reach = reach;
        }
    }

    // Witnesses run no roles, so they need not see the storage.
    let hosts: Vec<usize> = answering.iter().copied().filter(|&i| !nodes[i].witness).collect();
    let mut storage = Vec::new();
    for path in &plan.shared {
        storage.push(storage_test(transport, &nodes, &hosts, path).await);
    }
    Survey { nodes, storage }
}

async fn storage_test<T: Transport>(transport: &T, nodes: &[NodeSurvey], hosts: &[usize], path: &str) -> StorageSurvey {
    let nonce = hex::encode(rand::rng().random::<[u8; 8]>());
    let file_of = |i: usize| format!("{nonce}-{}", nodes[i].name);
    let mut results: Vec<StorageOnNode> =
        hosts.iter().map(|&i| StorageOnNode { node: nodes[i].name.clone(), ..StorageOnNode::default() }).collect();

    let writes = futures::future::join_all(
        hosts.iter().map(|&i| transport.call(i, ProbeRequest::Write { path: path.into(), file: file_of(i) })),
    )
    .await;
    // What each node wrote, by its hash.
    let mut written: Vec<Option<String>> = vec![None; hosts.len()];
    for ((r, reply), hash) in results.iter_mut().zip(writes).zip(&mut written) {
        match storage_reply(reply) {
            Ok(ProbeReply::Written { sha256, write_us, free_mb }) => {
                r.write_us = Some(write_us);
                r.free_mb = Some(free_mb);
                *hash = Some(sha256);
            }
            Ok(other) => r.write_error = Some(unexpected(&other)),
            Err(e) => r.write_error = Some(e),
        }
    }
    let writers: Vec<usize> = (0..hosts.len()).filter(|&h| results[h].write_error.is_none()).collect();

    // Each node reads the file of the next writer after it: every file is read by someone
    // else, and a node that could not write still shows whether it sees the others' files.
    let reads = futures::future::join_all((0..hosts.len()).map(|h| {
        let source = writers.iter().copied().find(|&w| w > h).or_else(|| writers.iter().copied().find(|&w| w != h));
        async move {
            let source = source?;
            let reply =
                transport.call(hosts[h], ProbeRequest::Read { path: path.into(), file: file_of(hosts[source]) }).await;
            Some((source, reply))
        }
    }))
    .await;
    for (h, read) in reads.into_iter().enumerate() {
        let Some((source, reply)) = read else { continue };
        results[h].read_from = Some(nodes[hosts[source]].name.clone());
        match storage_reply(reply) {
            Ok(ProbeReply::Read { sha256 }) => {
                results[h].read_identical = Some(written[source].as_ref() == Some(&sha256));
            }
            Ok(other) => results[h].read_error = Some(unexpected(&other)),
            Err(e) => results[h].read_error = Some(e),
        }
    }

    let lock = match writers.first() {
        Some(&holder) => Some(lock_test(transport, nodes, hosts, holder, path, &format!("{nonce}.lock")).await),
        None => None,
    };

    let cleanup = writers
        .iter()
        .map(|&w| transport.call(hosts[w], ProbeRequest::Remove { path: path.into(), file: file_of(hosts[w]) }));
    futures::future::join_all(cleanup).await;
    StorageSurvey { path: path.into(), nodes: results, lock }
}

async fn lock_test<T: Transport>(
    transport: &T,
    nodes: &[NodeSurvey],
    hosts: &[usize],
    holder: usize,
    path: &str,
    file: &str,
) -> LockTest {
    let name = |h: usize| nodes[hosts[h]].name.clone();
    let lock = |h: usize| {
        transport.call(hosts[h], ProbeRequest::Lock { path: path.into(), file: file.into(), hold_ms: LOCK_HOLD_MS })
    };
    let mut test = LockTest { holder: name(holder), ..LockTest::default() };
    match storage_reply(lock(holder).await) {
        Ok(ProbeReply::Locked { granted: true }) => {}
        other => {
            test.errors.push(format!("{} could not take the first lock: {}", name(holder), describe(other)));
            return test;
        }
    }
    let others: Vec<usize> = (0..hosts.len()).filter(|&h| h != holder).collect();
    let tries = futures::future::join_all(others.iter().map(|&h| lock(h))).await;
    // Whoever holds the lock now (rightly or not) lets go before the retry.
    let mut holding = vec![holder];
    for (&h, reply) in others.iter().zip(tries) {
        match storage_reply(reply) {
            Ok(ProbeReply::Locked { granted: false }) => test.refused.push(name(h)),
            Ok(ProbeReply::Locked { granted: true }) => {
                test.granted_while_held.push(name(h));
                holding.push(h);
            }
            other => test.errors.push(format!("{}: {}", name(h), describe(other))),
        }
    }
    let unlock = |h: usize| transport.call(hosts[h], ProbeRequest::Unlock { path: path.into(), file: file.into() });
    for h in holding {
        let _ = unlock(h).await;
    }
    if let Some(&next) = others.first() {
        let granted = matches!(storage_reply(lock(next).await), Ok(ProbeReply::Locked { granted: true }));
        test.after_release = Some(LockRetry { node: name(next), granted });
        let _ = unlock(next).await;
    }
    let _ = transport.call(hosts[holder], ProbeRequest::Remove { path: path.into(), file: file.into() }).await;
    test
}

/// A storage step's answer, with a failed step (or an unreachable node) as its error.
fn storage_reply(reply: Result<ProbeReply, String>) -> Result<ProbeReply, StorageError> {
    match reply {
        Ok(ProbeReply::Failed(e)) => Err(e),
        Ok(other) => Ok(other),
        Err(e) => Err(StorageError { fault: StorageFault::Io, message: e }),
    }
}

fn describe(reply: Result<ProbeReply, StorageError>) -> String {
    match reply {
        Ok(other) => unexpected(&other).message,
        Err(e) => e.message,
    }
}

fn unexpected(reply: &ProbeReply) -> StorageError {
    StorageError { fault: StorageFault::Io, message: format!("unexpected answer {reply:?}") }
}

/// Wall-clock milliseconds: a node's clock is judged against the surveyor's.
fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
