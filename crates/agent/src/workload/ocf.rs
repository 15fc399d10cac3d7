//! Open Cluster Framework resource agents: where they live, their meta-data (parameters and
//! default timeouts), the environment they expect, and what their exit codes mean.
//!
//! Any standard agent works, e.g. Debian's resource-agents under `/usr/lib/ocf`. The root can
//! be moved with `HALO_OCF_ROOT` in the agent's environment (tests use their own agents).

use halo_core::resource_kind::ResourceKind;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use halo_core::role::{ResourceSpec, Timeouts};

use crate::child::DiesWithParent;
use crate::workload::guard::SpawnRequest;

pub fn ocf_root() -> PathBuf {
    std::env::var_os("HALO_OCF_ROOT").map_or_else(|| PathBuf::from("/usr/lib/ocf"), PathBuf::from)
}

#[derive(Debug, Clone, PartialEq)]
pub struct OcfAgent {
    pub provider: String,
    pub name: String,
    pub path: PathBuf,
}

/// Why an OCF agent cannot be used for a resource.
#[derive(Debug, thiserror::Error)]
pub enum OcfError {
    #[error("'{0}' is not an OCF agent")]
    NotOcf(ResourceKind),
    #[error("OCF agent {kind} is not installed: {} does not exist (on Debian: apt-get install resource-agents)", path.display())]
    NotInstalled { kind: ResourceKind, path: PathBuf },
    #[error("{} meta-data did not answer within 10 s", path.display())]
    MetaDataTimeout { path: PathBuf },
    #[error("cannot run {}: {source}", path.display())]
    CannotRun { path: PathBuf, source: std::io::Error },
    #[error("unreadable meta-data: {0}")]
    MetaData(String),
    #[error("{kind} has no parameter '{key}' (it takes: {known})")]
    UnknownParameter { kind: ResourceKind, key: String, known: String },
    #[error("{kind} needs the parameter '{name}'")]
    MissingParameter { kind: ResourceKind, name: String },
}

/// The agent a resource type `ocf:PROVIDER:AGENT` names, if it is installed here.
pub fn locate(kind: &ResourceKind) -> Result<OcfAgent, OcfError> {
    let ResourceKind::Ocf { provider, agent: name } = kind else {
        return Err(OcfError::NotOcf(kind.clone()));
    };
    let path = ocf_root().join("resource.d").join(provider).join(name);
    if !path.is_file() {
        return Err(OcfError::NotInstalled { kind: kind.clone(), path });
    }
    Ok(OcfAgent { provider: provider.into(), name: name.into(), path })
}

/// What an agent's meta-data says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetaData {
    pub timeouts: Timeouts,
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub required: bool,
}

/// Run `AGENT meta-data` (bounded) and read it.
pub async fn meta_data(agent: &OcfAgent) -> Result<MetaData, OcfError> {
    let run = tokio::process::Command::new(&agent.path)
        .arg("meta-data")
        .env("OCF_ROOT", ocf_root())
        .kill_on_drop(true)
        .dies_with_parent()
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .map_err(|_| OcfError::MetaDataTimeout { path: agent.path.clone() })?
        .map_err(|source| OcfError::CannotRun { path: agent.path.clone(), source })?;
    parse_meta_data(&String::from_utf8_lossy(&output.stdout))
}

pub fn parse_meta_data(xml: &str) -> Result<MetaData, OcfError> {
    // Agents' meta-data carries a DOCTYPE line; entities are not expanded either way.
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(xml, options).map_err(|e| OcfError::MetaData(e.to_string()))?;
    let mut meta = MetaData::default();
    for node in doc.descendants() {
        match node.tag_name().name() {
            "parameter" => meta.parameters.push(Parameter {
                name: node.attribute("name").unwrap_or_default().to_string(),
                required: node.attribute("required") == Some("1"),
            }),
            "action" => {
                let timeout = node.attribute("timeout").and_then(duration_ms);
                match node.attribute("name") {
                    Some("start") => meta.timeouts.start_ms = timeout,
                    Some("stop") => meta.timeouts.stop_ms = timeout,
                    Some("monitor") if meta.timeouts.monitor_ms.is_none() => {
                        meta.timeouts.monitor_ms = timeout;
                        meta.timeouts.monitor_interval_ms = node.attribute("interval").and_then(duration_ms);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(meta)
}

/// OCF durations: `20s`, `500ms`, `2m`, or plain seconds.
fn duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "" | "s" => Some(n * 1000),
        "ms" => Some(n),
        "m" | "min" => Some(n * 60_000),
        "h" => Some(n * 3_600_000),
        _ => None,
    }
}

/// Check a resource's parameters against the agent's meta-data, and fill its timeouts from it.
pub fn apply_meta_data(resource: &mut ResourceSpec, meta: &MetaData) -> Result<(), OcfError> {
    let known: Vec<&str> = meta.parameters.iter().map(|p| p.name.as_str()).collect();
    let params = resource.effective_params();
    for key in params.keys() {
        if !known.contains(&key.as_str()) {
            return Err(OcfError::UnknownParameter {
                kind: resource.kind.clone(),
                key: key.clone(),
                known: if known.is_empty() { "none".to_string() } else { known.join(", ") },
            });
        }
    }
    if let Some(missing) = meta.parameters.iter().find(|p| p.required && !params.contains_key(&p.name)) {
        return Err(OcfError::MissingParameter { kind: resource.kind.clone(), name: missing.name.clone() });
    }
    resource.agent_timeouts = meta.timeouts;
    Ok(())
}

/// One OCF action of one resource, as the fence guard starts it.
pub fn action(
    agent: &OcfAgent,
    action: &str,
    instance: &str,
    params: &BTreeMap<String, String>,
    id: &str,
    log: Option<String>,
) -> SpawnRequest {
    let mut env = vec![
        ("OCF_ROOT".to_string(), ocf_root().display().to_string()),
        ("OCF_RA_VERSION_MAJOR".to_string(), "1".to_string()),
        ("OCF_RA_VERSION_MINOR".to_string(), "0".to_string()),
        ("OCF_RESOURCE_INSTANCE".to_string(), instance.to_string()),
        ("OCF_RESOURCE_TYPE".to_string(), agent.name.clone()),
        ("OCF_RESOURCE_PROVIDER".to_string(), agent.provider.clone()),
    ];
    env.extend(params.iter().map(|(k, v)| (format!("OCF_RESKEY_{k}"), v.clone())));
    SpawnRequest {
        id: id.to_string(),
        program: agent.path.display().to_string(),
        args: vec![action.to_string()],
        cwd: None,
        env,
        log,
        // The daemon an agent starts may share the action's group; it must outlive the action.
        keep_group: true,
        undo: None,
        private: false,
    }
}

/// The words for an OCF exit code.
pub fn describe(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "generic error",
        2 => "invalid argument",
        3 => "unimplemented feature",
        4 => "insufficient privileges",
        5 => "not installed",
        6 => "not configured",
        7 => "not running",
        8 => "running as promoted",
        9 => "failed as promoted",
        _ => "unknown exit code",
    }
}

pub const OCF_SUCCESS: i32 = 0;
pub const OCF_NOT_RUNNING: i32 = 7;

#[cfg(test)]
mod tests {
    use super::*;

    const DUMMY: &str = r#"<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Dummy" version="1.0">
<parameters>
<parameter name="state" unique="1"><content type="string"/></parameter>
<parameter name="fake" unique="0" required="1"><content type="string"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s" />
<action name="stop" timeout="30s" />
<action name="monitor" timeout="10s" interval="5s" depth="0" />
<action name="meta-data" timeout="5s" />
</actions>
</resource-agent>"#;

    #[test]
    fn meta_data_gives_parameters_and_timeouts() {
        let meta = parse_meta_data(DUMMY).expect("parse");
        assert_eq!(meta.timeouts.start_ms, Some(20_000));
        assert_eq!(meta.timeouts.stop_ms, Some(30_000));
        assert_eq!((meta.timeouts.monitor_ms, meta.timeouts.monitor_interval_ms), (Some(10_000), Some(5_000)));
        let mut r = ResourceSpec {
            secret_params: Default::default(),
            name: "d".into(),
            kind: ResourceKind::parse("ocf:heartbeat:Dummy").expect("kind"),
            params: [("fake".to_string(), "x".to_string())].into(),
            restart: Default::default(),
            timeouts: Timeouts { start_ms: Some(1000), ..Default::default() },
            agent_timeouts: Timeouts::default(),
        };
        apply_meta_data(&mut r, &meta).expect("valid");
        let t = r.effective_timeouts();
        assert_eq!((t.start_ms, t.stop_ms), (Some(1000), Some(30_000)), "explicit wins");
        r.params.insert("nosuch".into(), "1".into());
        let e = apply_meta_data(&mut r, &meta).unwrap_err();
        assert!(matches!(&e, OcfError::UnknownParameter { key, .. } if key == "nosuch"), "{e}");
        assert!(e.to_string().contains("no parameter 'nosuch'"), "{e}");
        r.params.clear();
        let e = apply_meta_data(&mut r, &meta).unwrap_err();
        assert!(matches!(&e, OcfError::MissingParameter { name, .. } if name == "fake"), "{e}");
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("2m"), Some(120_000));
        assert!(parse_meta_data("not xml").is_err());
    }
}
