//! What an agent keeps in its data directory besides the cluster database: who it is, which
//! cluster it belongs to, and its key material. Written atomically (temp file, fsync, rename).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use halo_security::ca;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub version: u32,
    pub name: String,
    /// Lets a remote admin bootstrap this agent (create or join) when not calling from loopback.
    pub bootstrap_secret: String,
    pub member: Option<Membership>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    pub node_id: u64,
    pub cluster: String,
    pub cluster_id: String,
    /// The cluster's Raft timing as it was when this node joined, for a restart before its
    /// copy of the database holds it (older files: none, which means the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<halo_core::timing::RaftTiming>,
}

/// PEM material of a member node.
#[derive(Debug, Clone)]
pub struct NodeTls {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory, created 0700. One made by an earlier halo (0755) is closed: its
    /// files were readable by every local user through it.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("cannot create data directory {}", root.display()))?;
        let mode = std::fs::metadata(root)
            .with_context(|| format!("cannot read data directory {}", root.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make data directory {} private", root.display()))?;
            tracing::warn!(
                "data directory {} was open to other users ({:o}); it is 0700 now",
                root.display(),
                mode & 0o777
            );
        }
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn database_path(&self) -> PathBuf {
        self.path("cluster.redb")
    }

    /// Load the identity, or create it on first start. A data directory belongs to one node.
    pub fn load_or_create_identity(&self, name: &str) -> anyhow::Result<Identity> {
        let path = self.path("identity.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let identity: Identity =
                serde_json::from_str(&text).with_context(|| format!("corrupt {}", path.display()))?;
            if identity.version != VERSION {
                bail!("{} has version {}, this halo understands {VERSION}", path.display(), identity.version);
            }
            if identity.name != name {
                bail!(
                    "data directory {} belongs to node '{}', not '{name}'; use another --data-dir",
                    self.root.display(),
                    identity.name
                );
            }
            return Ok(identity);
        }
        let identity = Identity {
            version: VERSION,
            name: name.to_string(),
            bootstrap_secret: halo_security::random_secret(),
            member: None,
        };
        self.save_identity(&identity)?;
        self.write("bootstrap.secret", &identity.bootstrap_secret)?;
        Ok(identity)
    }

    pub fn save_identity(&self, identity: &Identity) -> anyhow::Result<()> {
        self.write("identity.json", &serde_json::to_string_pretty(identity)?)
    }

    /// The self-signed certificate an unjoined agent serves its API with.
    pub fn bootstrap_tls(&self, name: &str, hosts: &[String]) -> anyhow::Result<(String, String)> {
        let (cert, key) = (self.path("bootstrap.crt"), self.path("bootstrap.key"));
        if cert.exists() && key.exists() {
            return Ok((std::fs::read_to_string(cert)?, std::fs::read_to_string(key)?));
        }
        let key_pem = ca::generate_node_key()?;
        let cert_pem = ca::bootstrap_certificate(&key_pem, name, hosts)?;
        self.write("bootstrap.key", &key_pem)?;
        self.write("bootstrap.crt", &cert_pem)?;
        Ok((cert_pem, key_pem))
    }

    /// Key and certificate change together (a renewal brings both): both are staged first,
    /// then moved in place; a start after a crash in between finishes the move
    /// (`load_node_tls`), so the key always matches the certificate.
    pub fn save_node_tls(&self, tls: &NodeTls) -> anyhow::Result<()> {
        self.write("ca.crt", &tls.ca_pem)?;
        self.write("node.key.next", &tls.key_pem)?;
        self.write("node.crt.next", &tls.cert_pem)?;
        self.finish_node_tls()
    }

    fn finish_node_tls(&self) -> anyhow::Result<()> {
        if !self.path("node.crt.next").exists() {
            return Ok(());
        }
        for name in ["node.key", "node.crt"] {
            let staged = self.path(&format!("{name}.next"));
            if staged.exists() {
                std::fs::rename(&staged, self.path(name))
                    .with_context(|| format!("cannot move {} in place", staged.display()))?;
            }
        }
        if let Ok(dir) = std::fs::File::open(&self.root) {
            dir.sync_all().context("syncing the data directory")?;
        }
        Ok(())
    }

    pub fn load_node_tls(&self) -> anyhow::Result<NodeTls> {
        self.finish_node_tls()?;
        let read = |n: &str| {
            std::fs::read_to_string(self.path(n)).with_context(|| format!("cannot read {}", self.path(n).display()))
        };
        Ok(NodeTls { cert_pem: read("node.crt")?, key_pem: read("node.key")?, ca_pem: read("ca.crt")? })
    }

    /// This start's incarnation: one more than the last one, kept on disk (durably, before any
    /// heartbeat leaves), so every heartbeat sequence of this run is above every earlier one
    /// (`halo_core::heartbeat::first_sequence`).
    pub fn next_incarnation(&self) -> anyhow::Result<u32> {
        let last = match std::fs::read_to_string(self.path("incarnation")) {
            Ok(text) => text
                .trim()
                .parse::<u32>()
                .with_context(|| format!("{} is not a number", self.path("incarnation").display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).context("reading the incarnation counter"),
        };
        let next = last.checked_add(1).context("the incarnation counter is exhausted")?;
        self.write("incarnation", &format!("{next}\n"))?;
        Ok(next)
    }

    /// Write `name` atomically and durably: readers see the old or the new file, never half.
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let target = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        // Keys and secrets live here: readable by the agent's user only.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target).with_context(|| format!("cannot write {}", target.display()))?;
        if let Ok(dir) = std::fs::File::open(&self.root) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}
