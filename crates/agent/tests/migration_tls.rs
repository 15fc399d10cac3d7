//! Live migration over TLS between real QEMUs, with certificates of a real cluster CA, driven
//! by the agent's own QMP operations (`vm_ops`): the target takes the guest only from the
//! source node, over TLS; a plain-text connection or another node's certificate is turned
//! away while the target keeps waiting; the source sends only to the target node.

use halo_agent::workload::vm::error::VmError;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use halo_agent::transport::identity::NodeTls;
use halo_agent::workload::vm::ops;
use halo_agent::workload::vm::tls::{End, MigrationTls};
use halo_security::ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

/// A QEMU with an empty machine, killed when the test lets go of it.
struct Qemu {
    child: Child,
    dir: PathBuf,
}

impl Qemu {
    fn start(root: &Path, name: &str, incoming: bool) -> Qemu {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut command = Command::new("qemu-system-x86_64");
        command.args(["-machine", "pc", "-m", "64", "-nodefaults", "-display", "none", "-S"]);
        command.args(["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]);
        command.arg("-qmp").arg(format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()));
        if incoming {
            command.args(["-incoming", "defer"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 (scripts/setup installs it)");
        Qemu { child, dir }
    }

    fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    fn tls(&self, node: &NodeTls, end: End) -> MigrationTls {
        MigrationTls { dir: self.dir.join("tls"), node: node.clone(), end }
    }

    async fn migrate(&self, uri: &str, tls: &MigrationTls) -> Result<ops::Transfer, VmError> {
        let (_keep, cancel) = tokio::sync::oneshot::channel();
        ops::migrate(&self.qmp(), uri, tls, None, LIMIT, cancel).await
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credentials of node `name` on 127.0.0.1, signed by `ca`.
fn node(ca: &ca::ClusterCa, name: &str) -> NodeTls {
    let key_pem = ca::generate_node_key().expect("key");
    let csr = ca::certificate_request(&key_pem, name).expect("csr");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let cert = ca.issue_node_certificate(&csr, name, &["127.0.0.1".into()], now, 3_600_000).expect("cert");
    NodeTls { cert_pem: cert.pem, key_pem, ca_pem: ca.cert_pem.clone() }
}

fn port_of(uri: &str) -> u16 {
    uri.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {uri}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_takes_the_guest_only_from_its_source_over_tls() {
    let root = tempfile::tempdir().expect("tmp");
    let ca = ca::ClusterCa::generate("t").expect("ca");
    let (n1, n2, n3) = (node(&ca, "n1"), node(&ca, "n2"), node(&ca, "n3"));

    let target = Qemu::start(root.path(), "target", true);
    let listening = target.tls(&n2, End::Target { source: "n1".into() });
    let uri = ops::prepare_incoming(&target.qmp(), "127.0.0.1", &listening, LIMIT).await.expect("listening");
    assert!(!listening.dir.exists(), "the key copy QEMU loaded from must be gone");

    // A plain-text migration stream (QEMU's magic and version): the target hangs up on it.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port_of(&uri))).await.expect("connect");
    let _ = plain.write_all(b"QEVM\0\0\0\x03").await;
    let _ = plain.write_all(&[0u8; 4096]).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(LIMIT, plain.read_to_end(&mut answer)).await.expect("the target hung up");
    assert!(read.is_err() || !answer.starts_with(b"QEVM"), "the target answered plain text: {answer:?}");

    // Another node of the same cluster, with a valid certificate, is not the source.
    let rogue = Qemu::start(root.path(), "rogue", false);
    let refused = rogue.migrate(&uri, &rogue.tls(&n3, End::Source { target: "n2".into() })).await;
    assert!(refused.is_err(), "n3 sent the guest: {refused:?}");

    // The source gets through, and the guest arrives (paused, as halo wants it).
    let source = Qemu::start(root.path(), "source", false);
    let sending = source.tls(&n1, End::Source { target: "n2".into() });
    let sent = source.migrate(&uri, &sending).await;
    assert!(sent.is_ok(), "the source could not migrate after the intruders: {sent:?}");
    assert!(!sending.dir.exists());
    ops::wait_for_status(&target.qmp(), "prelaunch", LIMIT).await.expect("the guest arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_sends_only_to_the_target_node() {
    let root = tempfile::tempdir().expect("tmp");
    let ca = ca::ClusterCa::generate("t").expect("ca");
    let (n1, n3) = (node(&ca, "n1"), node(&ca, "n3"));
    let stranger = node(&ca::ClusterCa::generate("other").expect("ca"), "n2");

    // n3 listens where the cluster expects n2: the source refuses its certificate.
    let impostor = Qemu::start(root.path(), "impostor", true);
    let uri = ops::prepare_incoming(
        &impostor.qmp(),
        "127.0.0.1",
        &impostor.tls(&n3, End::Target { source: "n1".into() }),
        LIMIT,
    )
    .await
    .expect("listening");
    let source = Qemu::start(root.path(), "source", false);
    let refused = source.migrate(&uri, &source.tls(&n1, End::Source { target: "n2".into() })).await;
    let why = refused.expect_err("the guest went to n3");
    assert!(matches!(&why, VmError::MigrationFailed(desc) if desc.contains("hostname")), "{why}");

    // A node called n2, but of another cluster (another CA): refused too.
    let foreign = Qemu::start(root.path(), "foreign", true);
    let listening = foreign.tls(&stranger, End::Target { source: "n1".into() });
    let uri = ops::prepare_incoming(&foreign.qmp(), "127.0.0.1", &listening, LIMIT).await.expect("listening");
    let refused = source.migrate(&uri, &source.tls(&n1, End::Source { target: "n2".into() })).await;
    assert!(refused.is_err(), "the guest went to another cluster's n2");
    // The source keeps its guest: it can still go to the real target.
    ops::wait_for_status(&source.qmp(), "prelaunch", LIMIT).await.expect("the source still has the guest");
}
