//! Replacing the cluster CA while the cluster runs (`halo cluster rotate-ca`). Certificates
//! are checked on both ends of every connection, so the steps are ordered such that no node
//! ever meets a certificate it does not trust:
//! 1. **Trusting**: the new CA joins what every node trusts (old and new); each node says so
//!    once it does (`AcknowledgeCa`).
//! 2. **Issuing**: once every node trusts both, certificates come from the new CA; each node
//!    renews its own at once.
//! 3. **Finished**: once every node's newest certificate is from the new CA, the new CA
//!    replaces the old one, which no node trusts any more.
//!
//! The leader takes each step (`AdvanceCaRotation`) when [`next_step`] says its condition
//! holds; the state machine checks the condition again, so a step is never taken early. A
//! node that is down holds the rotation back until it is up again (or removed).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::NodeId;
use crate::command::{Command, Rejection};
use crate::state::{ClusterInfo, ClusterState};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaRotation {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 (hex) of the new CA certificate's DER: how nodes and records name it.
    pub ca_sha256: String,
    pub stage: CaStage,
    pub started_ms: u64,
    /// Nodes that trust the new CA as well as the old.
    #[serde(default)]
    pub trusted_by: BTreeSet<NodeId>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CaStage {
    Trusting,
    Issuing,
}

impl CaStage {
    pub fn as_str(&self) -> &'static str {
        match self {
            CaStage::Trusting => "trusting",
            CaStage::Issuing => "issuing",
        }
    }
}

impl ClusterInfo {
    /// The CA certificates every node trusts now (PEM, the current CA first).
    pub fn trust_bundle(&self) -> String {
        match &self.ca_rotation {
            Some(rotation) => format!("{}\n{}", self.ca_cert_pem.trim_end(), rotation.cert_pem.trim_end()) + "\n",
            None => self.ca_cert_pem.clone(),
        }
    }

    /// The CA that signs certificates now (certificate and key PEM), and its SHA-256 if it is
    /// a rotation's new one (none: the cluster's CA, which records leave unnamed).
    pub fn issuing_ca(&self) -> (&str, &str, Option<&str>) {
        match &self.ca_rotation {
            Some(r) if r.stage == CaStage::Issuing => (&r.cert_pem, &r.key_pem, Some(&r.ca_sha256)),
            _ => (&self.ca_cert_pem, &self.ca_key_pem, None),
        }
    }
}

/// Why the rotation cannot take its next step yet (the nodes it waits for), if it cannot.
pub fn waiting_for(state: &ClusterState) -> Result<(), String> {
    let Some(rotation) = state.cluster.as_ref().and_then(|c| c.ca_rotation.as_ref()) else {
        return Err("no CA rotation is under way".into());
    };
    let missing: Vec<&str> = match rotation.stage {
        CaStage::Trusting => {
            state.nodes.values().filter(|n| !rotation.trusted_by.contains(&n.id)).map(|n| n.name.as_str()).collect()
        }
        CaStage::Issuing => state
            .nodes
            .values()
            .filter(|n| {
                let newest = state.certificates.get(&n.id).and_then(|c| c.iter().max_by_key(|c| c.not_after_ms));
                newest.is_none_or(|c| c.ca_sha256 != rotation.ca_sha256)
            })
            .map(|n| n.name.as_str())
            .collect(),
    };
    if missing.is_empty() {
        Ok(())
    } else {
        let what = match rotation.stage {
            CaStage::Trusting => "to trust the new CA",
            CaStage::Issuing => "to renew its certificate from the new CA",
        };
        Err(format!("waiting for {} {what}", missing.join(", ")))
    }
}

/// The leader's next step of a rotation under way, once its condition holds.
pub fn next_step(state: &ClusterState) -> Option<Command> {
    waiting_for(state).ok().map(|()| Command::AdvanceCaRotation)
}

impl ClusterState {
    pub(crate) fn start_ca_rotation(
        &mut self,
        cert_pem: &str,
        key_pem: &str,
        ca_sha256: &str,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let cluster = self.cluster.as_mut().ok_or(Rejection::NoCluster)?;
        if let Some(r) = &cluster.ca_rotation {
            return Err(Rejection::CaRotation(format!("a rotation is already under way ({})", r.stage.as_str())));
        }
        if cert_pem.is_empty() || key_pem.is_empty() || ca_sha256.is_empty() {
            return Err(Rejection::CaRotation("the new CA is incomplete".into()));
        }
        cluster.ca_rotation = Some(CaRotation {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            ca_sha256: ca_sha256.into(),
            stage: CaStage::Trusting,
            started_ms: now_ms,
            trusted_by: BTreeSet::new(),
        });
        Ok(())
    }

    pub(crate) fn acknowledge_ca(&mut self, node: NodeId, ca_sha256: &str) -> Result<(), Rejection> {
        self.nodes.get(&node).ok_or(Rejection::UnknownNodeId(node))?;
        let rotation = self
            .cluster
            .as_mut()
            .and_then(|c| c.ca_rotation.as_mut())
            .filter(|r| r.ca_sha256 == ca_sha256)
            .ok_or_else(|| Rejection::CaRotation("that CA is not being rotated in".into()))?;
        rotation.trusted_by.insert(node);
        Ok(())
    }

    pub(crate) fn advance_ca_rotation(&mut self) -> Result<(), Rejection> {
        waiting_for(self).map_err(Rejection::CaRotation)?;
        let cluster = self.cluster.as_mut().ok_or(Rejection::NoCluster)?;
        let Some(rotation) = cluster.ca_rotation.as_mut() else {
            return Err(Rejection::CaRotation("no CA rotation is under way".into()));
        };
        match rotation.stage {
            CaStage::Trusting => rotation.stage = CaStage::Issuing,
            CaStage::Issuing => {
                let rotation = cluster.ca_rotation.take().expect("checked above");
                cluster.ca_cert_pem = rotation.cert_pem;
                cluster.ca_key_pem = rotation.key_pem;
                // Records name their CA only while two are in use.
                for issued in self.certificates.values_mut() {
                    issued.retain(|c| c.ca_sha256 == rotation.ca_sha256);
                    for c in issued.iter_mut() {
                        c.ca_sha256.clear();
                    }
                }
            }
        }
        Ok(())
    }
}
