//! `halo apply`: declarative roles. A file lists role specs; applying it creates the missing
//! roles and updates the changed ones, all together or not at all. Roles the file does not name
//! are left alone. Applying the same file twice changes nothing the second time.

use serde::{Deserialize, Serialize};

use crate::command::Rejection;
use crate::role::{Desired, RoleRecord, RoleSpec, RoleState};
use crate::state::ClusterState;

/// What applying one role would do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Create {
        role: String,
    },
    /// `fields` names what differs, e.g. `preferred`, `resources`.
    Update {
        role: String,
        fields: Vec<String>,
    },
    Unchanged {
        role: String,
    },
}

/// The configuration part of a spec, as compared: what the cluster fills in itself (an OCF
/// agent's default timeouts) does not count as a difference.
fn configured(spec: &RoleSpec) -> RoleSpec {
    let mut spec = spec.clone();
    for r in &mut spec.resources {
        r.agent_timeouts = Default::default();
    }
    spec
}

fn differing_fields(old: &RoleSpec, new: &RoleSpec) -> Vec<String> {
    let (old, new) = (configured(old), configured(new));
    let (a, b) = (serde_json::to_value(&old).unwrap_or_default(), serde_json::to_value(&new).unwrap_or_default());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["role".into()] };
    let mut fields: Vec<String> = b.iter().filter(|(k, v)| a.get(*k) != Some(*v)).map(|(k, _)| k.clone()).collect();
    fields.extend(a.keys().filter(|k| !b.contains_key(*k)).cloned());
    fields.sort();
    fields
}

/// Validate every spec (against the cluster and each other) and say what applying them does.
pub fn plan(state: &ClusterState, specs: &[RoleSpec]) -> Result<Vec<Change>, Rejection> {
    let mut seen = std::collections::BTreeSet::new();
    let mut changes = Vec::new();
    for spec in specs {
        if !seen.insert(spec.name.as_str()) {
            return Err(Rejection::InvalidRole { role: spec.name.clone(), reason: "named twice in the file".into() });
        }
        spec.validate(state)?;
        changes.push(match state.roles.get(&spec.name) {
            None => Change::Create { role: spec.name.clone() },
            Some(existing) => {
                let fields = differing_fields(&existing.spec, spec);
                if fields.is_empty() {
                    Change::Unchanged { role: spec.name.clone() }
                } else {
                    Change::Update { role: spec.name.clone(), fields }
                }
            }
        });
    }
    Ok(changes)
}

/// Put a changed spec on a role, keeping where it runs. New resources mean a restart under a
/// new generation (the executor stops the old instance before it starts the new one).
pub fn update(record: &mut RoleRecord, spec: &RoleSpec, now_ms: u64) {
    let restart = configured(&record.spec).resources != configured(spec).resources;
    let started = spec.desired == Desired::Started && record.spec.desired != Desired::Started;
    record.spec = spec.clone();
    record.touched();
    if started {
        record.start_asked(now_ms);
    }
    if restart && record.owner.is_some() {
        record.generation += 1;
        record.set_state(RoleState::Pending, "restarting with its new configuration", now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::tests_support::{cluster, role};

    #[test]
    fn plan_is_create_update_unchanged_and_validates_everything() {
        let mut s = cluster();
        s.roles.insert("web".into(), role("web"));
        let same = role("web").spec;
        let mut changed = role("db").spec;
        let fresh = changed.clone();
        s.roles.insert("db".into(), RoleRecord::new(fresh, 0));
        changed.preferred = vec!["b".into()];
        let new = role("cache").spec;
        let plan = plan(&s, &[same, changed, new]).expect("valid");
        assert_eq!(
            plan,
            [
                Change::Unchanged { role: "web".into() },
                Change::Update { role: "db".into(), fields: vec!["preferred".into()] },
                Change::Create { role: "cache".into() },
            ]
        );
        let mut bad = role("x").spec;
        bad.preferred = vec!["ghost".into()];
        assert!(super::plan(&s, &[role("y").spec, bad]).is_err());
        assert!(super::plan(&s, &[role("y").spec, role("y").spec]).is_err());
    }

    #[test]
    fn new_resources_restart_under_a_new_generation() {
        let mut r = role("web");
        r.owner = Some(1);
        r.generation = 4;
        let mut spec = r.spec.clone();
        spec.preferred = vec!["a".into()];
        update(&mut r, &spec, 1);
        assert_eq!(r.generation, 4, "a placement preference alone does not restart it");
        spec.resources[0].params.insert("command".into(), "sleep 5".into());
        update(&mut r, &spec, 2);
        assert_eq!((r.generation, r.state), (5, RoleState::Pending));
    }
}
