//! `halo apply -f roles.toml`: dry run, create, idempotent re-apply, update in place, restart
//! on a new command, and refused files that change nothing.

mod common;

use std::time::Duration;

use common::*;

fn roles_file(c: &Cluster, preferred: &str, command: &str) -> std::path::PathBuf {
    let path = c.dir.path().join("roles.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[role]]
name = "api121"
preferred = [{preferred}]
priority = "high"
anti_affinity = ["front"]
failback = {{ mode = "immediate" }}

[[role.resources]]
name = "server"
type = "process"
params = {{ command = "{command}" }}
restart = {{ max_restarts = 5, period_s = 60 }}

[[role]]
name = "worker121"
anti_affinity = ["front"]

[[role.resources]]
name = "main"
type = "process"
params = {{ command = "exec sleep 100000" }}
"#
        ),
    )
    .expect("write roles file");
    path
}

fn apply(c: &Cluster, file: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "-f", file.to_str().expect("path")];
    args.extend_from_slice(extra);
    c.halo(&args)
}

#[test]
fn apply_is_declarative_idempotent_and_all_or_nothing() {
    let mut c = Cluster::new(191, 3, 0);
    c.form();
    let file = roles_file(&c, r#""n2""#, "exec sleep 100000");

    let out = apply(&c, &file, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("+ create api121") && said.contains("+ create worker121"), "{said}");
    assert!(said.contains("dry run: nothing changed"), "{said}");
    assert_eq!(c.json(&["role", "list"]), serde_json::json!([]));

    let out = apply(&c, &file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.wait_online("api121", Duration::from_secs(15), |_| true).as_deref(), Some("n2"));
    let worker = c.wait_online("worker121", Duration::from_secs(15), |_| true).expect("worker online");
    assert_ne!(worker, "n2", "anti-affinity from the file is in force");

    // Again: nothing changes.
    let out = apply(&c, &file, &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(answer["changes"].as_array().expect("changes").iter().all(|ch| ch["action"] == "unchanged"), "{answer}");
    assert_eq!(c.role("api121").map(|r| r["generation"].clone()), Some(1.into()));

    // A new preference is an update in place; with immediate failback the role follows it.
    let file = roles_file(&c, r#""n3", "n2""#, "exec sleep 100000");
    let out = apply(&c, &file, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("~ update api121 (preferred)"), "{}", text(&out));
    let target = if worker == "n3" { "n2" } else { "n3" };
    assert_eq!(c.wait_online("api121", Duration::from_secs(15), |o| o == target).as_deref(), Some(target));

    // A new command restarts it under a new generation.
    let before = c.role("api121").and_then(|r| r["generation"].as_u64()).expect("generation");
    let file = roles_file(&c, r#""n3", "n2""#, "exec sleep 200000");
    let out = apply(&c, &file, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("~ update api121 (resources)"), "{}", text(&out));
    assert!(wait_until(Duration::from_secs(15), || c
        .role("api121")
        .is_some_and(|r| { r["state"] == "online" && r["generation"].as_u64().is_some_and(|g| g > before) })));
    let commands = || -> Vec<String> {
        c.role_pids("api121")
            .iter()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = commands();
            now.iter().any(|c| c.contains("200000")) && !now.iter().any(|c| c.contains("100000"))
        }),
        "the role runs the new command only: {:?}",
        commands()
    );

    // Refused files: a clear error naming the problem, and nothing changes.
    let before = c.json(&["role", "list"]);
    let bad = c.dir.path().join("bad.toml");
    for (content, expected) in [
        ("[[role]\nname = 'x'", "is not a valid roles file"),
        (
            "[[role]]\nname = 'x'\ncolour = 'red'\n[[role.resources]]\nname='m'\ntype='process'\nparams={command='true'}",
            "unknown field `colour`",
        ),
        (
            "[[role]]\nname = 'x'\npreferred = ['ghost']\n[[role.resources]]\nname='m'\ntype='process'\nparams={command='true'}",
            "no node named 'ghost'",
        ),
        ("[[role]]\nname = 'x'\n[[role.resources]]\nname='m'\ntype='nosuch'", "unknown resource type 'nosuch'"),
        (
            "[[role]]\nname = 'ok121'\n[[role.resources]]\nname='m'\ntype='process'\nparams={command='true'}\n[[role]]\nname = 'ok121'\n[[role.resources]]\nname='m'\ntype='process'\nparams={command='true'}",
            "named twice",
        ),
    ] {
        std::fs::write(&bad, content).expect("write");
        let out = apply(&c, &bad, &[]);
        assert!(!out.status.success(), "{content} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains(expected), "{content}: {}", text(&out));
    }
    let out = c.halo(&["apply", "-f", "/nonexistent/roles.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/roles.toml"), "{}", text(&out));
    assert_eq!(c.json(&["role", "list"]), before, "refused files changed nothing");
}
