//! Fence devices: the standard `fence_*` agents that power a node off, and the exact input
//! halo gives them. halo owns what a fence *does*: the action (always `off`) and which node it
//! is about (`nodename`, and `plug` unless the device names its own outlet). A device's
//! parameters can only say *how* to reach the switch, never turn a power-off into a status
//! query or another node's reboot, because fence agents take the last value of a key and
//! treat `option` as an old name of `action`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A standard `fence_*` agent and its parameters (given to it on stdin as `key=value` lines).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct FenceDevice {
    pub agent: String,
    pub params: BTreeMap<String, String>,
}

/// Keys halo sets itself; a device that tries to set one is refused.
pub const RESERVED: &[&str] = &["action", "option", "nodename"];

/// At most this many parameters, each name and value at most this long: a device's input is
/// a handful of short lines.
const MAX_PARAMS: usize = 32;
const MAX_LEN: usize = 1024;

impl FenceDevice {
    /// Why this device cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let agent_ok = self.agent.starts_with("fence_")
            && self.agent.len() <= 64
            && self.agent.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !agent_ok {
            return Err(format!("'{}' is not a fence agent name (fence_...)", self.agent));
        }
        if self.params.len() > MAX_PARAMS {
            return Err(format!("{} parameters; at most {MAX_PARAMS} are allowed", self.params.len()));
        }
        for (key, value) in &self.params {
            let name_ok = !key.is_empty()
                && key.len() <= 64
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                return Err(format!(
                    "invalid parameter name '{}': use letters, digits, '_' or '-'",
                    key.escape_debug()
                ));
            }
            if RESERVED.contains(&key.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "parameter '{key}' is reserved: halo always sends action=off and the node's name, \
                     so a device cannot change what a fence does"
                ));
            }
            if value.len() > MAX_LEN || value.contains(['\n', '\r', '\0']) {
                return Err(format!("the value of '{key}' must be one line of at most {MAX_LEN} bytes"));
            }
        }
        Ok(())
    }

    /// The agent's standard input to power off node `node_name`: the device's parameters
    /// first, then halo's own keys, so that even an agent that took the last value of a
    /// repeated key would read halo's. Refuses a device that fails [`Self::check`] (one
    /// stored before a rule existed, say).
    pub fn power_off_input(&self, node_name: &str) -> Result<String, String> {
        self.check()?;
        let mut input = String::new();
        for (key, value) in &self.params {
            input.push_str(&format!("{key}={value}\n"));
        }
        if !self.params.contains_key("plug") && !self.params.contains_key("port") {
            input.push_str(&format!("plug={node_name}\n"));
        }
        input.push_str(&format!("nodename={node_name}\naction=off\n"));
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(params: &[(&str, &str)]) -> FenceDevice {
        FenceDevice {
            agent: "fence_ipmilan".into(),
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn halo_owns_the_action_and_the_node() {
        let input = device(&[("ip", "10.0.0.9"), ("username", "admin")]).power_off_input("n2").expect("valid");
        assert_eq!(input, "ip=10.0.0.9\nusername=admin\nplug=n2\nnodename=n2\naction=off\n");
        // A device may name its own outlet.
        let input = device(&[("plug", "7")]).power_off_input("n2").expect("valid");
        assert_eq!(input, "plug=7\nnodename=n2\naction=off\n");
        for key in ["action", "Action", "option", "nodename", "NODENAME"] {
            let bad = device(&[(key, "status")]);
            let err = bad.check().expect_err(key);
            assert!(err.contains("reserved"), "{err}");
            assert!(bad.power_off_input("n2").is_err());
        }
    }

    #[test]
    fn malformed_devices_are_refused() {
        assert!(FenceDevice { agent: "rm".into(), params: BTreeMap::new() }.check().is_err());
        for key in ["", "a=b", "a b", " action", "x\n"] {
            assert!(device(&[(key, "v")]).check().is_err(), "{key:?}");
        }
        assert!(device(&[("ip", "a\nb")]).check().is_err());
        assert!(device(&[("ip", &"x".repeat(2000))]).check().is_err());
        let many: Vec<(String, String)> = (0..40).map(|i| (format!("k{i}"), "v".into())).collect();
        let many = FenceDevice { agent: "fence_x".into(), params: many.into_iter().collect() };
        assert!(many.check().is_err());
    }
}
