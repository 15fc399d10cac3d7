//! What a resource is, which decides how a node runs it. Written as a word in role
//! definitions, the API and the database (`process`, `vm`, `ip`, `ocf:PROVIDER:AGENT`);
//! everywhere else it is this type.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// A command the fence guard runs.
    Process,
    /// A QEMU guest (`crate::vm`).
    Vm,
    /// A floating IP address (`crate::address`).
    Ip,
    /// An OCF resource agent, `ocf:PROVIDER:AGENT`.
    Ocf { provider: String, agent: String },
}

impl ResourceKind {
    /// The kind `text` names, or why it names none.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "process" => return Ok(ResourceKind::Process),
            "vm" => return Ok(ResourceKind::Vm),
            "ip" => return Ok(ResourceKind::Ip),
            _ => {}
        }
        if let Some(rest) = text.strip_prefix("ocf:") {
            if let Some((provider, agent)) = rest.split_once(':')
                && crate::role::is_simple_name(provider)
                && crate::role::is_simple_name(agent)
            {
                return Ok(ResourceKind::Ocf { provider: provider.into(), agent: agent.into() });
            }
            return Err(format!("'{text}' is not of the form ocf:PROVIDER:AGENT"));
        }
        Err(format!("unknown resource type '{text}' (known: process, vm, ip, ocf:PROVIDER:AGENT)"))
    }

    pub fn is_ocf(&self) -> bool {
        matches!(self, ResourceKind::Ocf { .. })
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResourceKind::Process => f.write_str("process"),
            ResourceKind::Vm => f.write_str("vm"),
            ResourceKind::Ip => f.write_str("ip"),
            ResourceKind::Ocf { provider, agent } => write!(f, "ocf:{provider}:{agent}"),
        }
    }
}

impl std::str::FromStr for ResourceKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ResourceKind::parse(text)
    }
}

impl Serialize for ResourceKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ResourceKind::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_as_written_and_bad_ones_say_why() {
        for text in ["process", "vm", "ip", "ocf:heartbeat:IPaddr2"] {
            let kind = ResourceKind::parse(text).expect(text);
            assert_eq!(kind.to_string(), text);
            let json = serde_json::to_string(&kind).expect("json");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ResourceKind>(&json).expect("back"), kind);
        }
        assert!(ResourceKind::parse("ocf:heartbeat:IPaddr2").expect("ocf").is_ocf());
        assert!(ResourceKind::parse("nosuch").unwrap_err().contains("unknown resource type 'nosuch'"));
        assert!(ResourceKind::parse("ocf:only").unwrap_err().contains("ocf:PROVIDER:AGENT"));
        assert!(ResourceKind::parse("ocf:a:b:c").is_err());
        assert!(ResourceKind::parse("ocf:../x:y").is_err());
        let refused = serde_json::from_str::<ResourceKind>("\"nosuch\"").unwrap_err().to_string();
        assert!(refused.contains("unknown resource type 'nosuch'"), "{refused}");
    }
}
