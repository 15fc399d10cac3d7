//! A live migration's stream runs over TLS between the two QEMUs (`tls-creds-x509`), with the
//! node certificates the cluster CA issued, checked both ways:
//! - the source checks that it reached the target node: the name the cluster chose as target
//!   must be in the certificate (`tls-hostname`);
//! - the target takes the stream only from the source node: its certificate's subject must be
//!   `CN=<source>` (`tls-authz` with an `authz-simple` object).
//!
//! A stranger who reaches the target's port (plain text, or a certificate of another node)
//! fails the handshake; QEMU drops that connection and keeps waiting for the real source.
//!
//! QEMU reads the credentials from fixed file names in a directory, once, when the object is
//! created. halo writes them into the VM's own directory (inside the private data directory)
//! just for that and removes them right after, so no second copy of the node key stays.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::transport::identity::NodeTls;

/// The QOM ids halo gives its objects in a VM's QEMU (one of each at a time).
pub const CREDS_ID: &str = "halo-migration-tls";
pub const AUTHZ_ID: &str = "halo-migration-authz";

/// Which end of the stream this QEMU is, and who must be at the other end.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Sends the guest to node `target`.
    Source { target: String },
    /// Receives the guest from node `source`.
    Target { source: String },
}

/// The credentials one QEMU uses for one migration.
#[derive(Clone)]
pub struct MigrationTls {
    /// Where QEMU reads them from (created for the moment it does).
    pub dir: PathBuf,
    pub node: NodeTls,
    pub end: End,
}

impl std::fmt::Debug for MigrationTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("MigrationTls").field("dir", &self.dir).field("end", &self.end).finish()
    }
}

impl MigrationTls {
    /// The file names QEMU looks for at this end (`ca-cert.pem` plus its own pair).
    fn files(&self) -> [(&'static str, &str); 3] {
        let (cert, key) = match self.end {
            End::Source { .. } => ("client-cert.pem", "client-key.pem"),
            End::Target { .. } => ("server-cert.pem", "server-key.pem"),
        };
        [("ca-cert.pem", &self.node.ca_pem), (cert, &self.node.cert_pem), (key, &self.node.key_pem)]
    }

    /// Writes the credentials (a directory of the agent's user only: the umask is private, and
    /// the directory is created here, so no one else's file or link can be in it).
    pub fn write(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        self.remove();
        std::fs::DirBuilder::new().mode(0o700).create(&self.dir)?;
        for (name, contents) in self.files() {
            write_private(&self.dir.join(name), contents)?;
        }
        Ok(())
    }

    /// Removes the credentials once QEMU has loaded them (or failed to).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }

    /// The `object-add` arguments, in order: the credentials, and at the target the check of
    /// who sends.
    pub fn objects(&self) -> Vec<Value> {
        let endpoint = match self.end {
            End::Source { .. } => "client",
            End::Target { .. } => "server",
        };
        let mut objects = vec![json!({
            "qom-type": "tls-creds-x509",
            "id": CREDS_ID,
            "dir": self.dir.display().to_string(),
            "endpoint": endpoint,
            "verify-peer": true,
        })];
        if let End::Target { source } = &self.end {
            objects.push(json!({ "qom-type": "authz-simple", "id": AUTHZ_ID, "identity": subject(source) }));
        }
        objects
    }

    /// The `migrate-set-parameters` arguments that make this QEMU's next migration use them.
    pub fn parameters(&self) -> Value {
        match &self.end {
            End::Source { target } => json!({ "tls-creds": CREDS_ID, "tls-hostname": target, "tls-authz": "" }),
            End::Target { .. } => json!({ "tls-creds": CREDS_ID, "tls-hostname": "", "tls-authz": AUTHZ_ID }),
        }
    }
}

/// The parameters of a migration without TLS: a quick migration's save, which goes to a local
/// socket of halo's (a QEMU that once migrated live keeps its TLS parameters otherwise).
pub fn plain_parameters() -> Value {
    json!({ "tls-creds": "", "tls-hostname": "", "tls-authz": "" })
}

/// The subject QEMU sees in node `name`'s certificate (the CA writes only a common name).
pub fn subject(name: &str) -> String {
    format!("CN={name}")
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tls(dir: &Path, end: End) -> MigrationTls {
        let node = NodeTls { cert_pem: "CERT".into(), key_pem: "KEY".into(), ca_pem: "CA".into() };
        MigrationTls { dir: dir.join("tls"), node, end }
    }

    #[test]
    fn each_end_gets_its_own_files_private_and_gone_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let source = tls(dir.path(), End::Source { target: "n2".into() });
        source.write().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&source.dir), 0o700);
        assert_eq!(std::fs::read_to_string(source.dir.join("client-key.pem")).unwrap(), "KEY");
        assert_eq!(mode(&source.dir.join("client-key.pem")), 0o600);
        assert!(!source.dir.join("server-key.pem").exists());
        source.write().unwrap(); // again, over what is there
        source.remove();
        assert!(!source.dir.exists());
        let target = tls(dir.path(), End::Target { source: "n1".into() });
        target.write().unwrap();
        assert_eq!(std::fs::read_to_string(target.dir.join("server-cert.pem")).unwrap(), "CERT");
        assert_eq!(std::fs::read_to_string(target.dir.join("ca-cert.pem")).unwrap(), "CA");
        assert!(!format!("{target:?}").contains("KEY"));
    }

    #[test]
    fn the_target_checks_the_sender_and_the_source_the_receiver() {
        let dir = Path::new("/d/vms/r.vm");
        let target = tls(dir, End::Target { source: "n1".into() });
        let objects = target.objects();
        assert_eq!(objects[0]["endpoint"], "server");
        assert_eq!(objects[0]["verify-peer"], true);
        assert_eq!(objects[1]["identity"], "CN=n1");
        assert_eq!(target.parameters()["tls-authz"], AUTHZ_ID);
        let source = tls(dir, End::Source { target: "n2".into() });
        assert_eq!(source.objects().len(), 1);
        assert_eq!(source.objects()[0]["endpoint"], "client");
        assert_eq!(source.parameters()["tls-hostname"], "n2");
        assert_eq!(plain_parameters()["tls-creds"], "");
    }
}
