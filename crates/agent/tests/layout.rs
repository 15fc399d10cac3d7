//! The house rules that keep the code base navigable, checked on the sources themselves:
//! the agent's folders import each other without circles, the command line does not depend
//! on the agent, and states and kinds are compared as types, never as strings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

fn crates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const BASE: &str = "(base)";

/// The agent's folders (`src/*/`) and which others each one names (`crate::FOLDER`).
fn folder_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = crates().join("agent/src");
    let folders: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("crates/agent/src")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in sources(&src) {
        let relative = file.strip_prefix(&src).expect("under src").to_string_lossy().into_owned();
        // Top-level files other than lib.rs are the base every folder uses.
        let home = match relative.split_once('/') {
            Some((folder, _)) => folder,
            None if relative == "lib.rs" => continue,
            None => BASE,
        };
        let text = std::fs::read_to_string(&file).expect("a readable source");
        let mut named = BTreeSet::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b}`: every path at the group's top level.
                let group = &group[..group.find(';').unwrap_or(group.len())];
                let mut depth = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && (c.is_ascii_alphabetic() || c == '_') => {
                            let word: String =
                                group[j..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                            named.insert(word);
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                named.insert(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
            }
        }
        for other in named.into_iter().filter(|n| folders.contains(n) && n != home) {
            graph.entry(home.to_string()).or_default().entry(other).or_default().insert(relative.clone());
        }
    }
    for folder in folders {
        graph.entry(folder).or_default();
    }
    graph
}

#[test]
fn the_agents_folders_import_each_other_without_circles() {
    let graph = folder_graph();
    // Depth-first search for a back edge; report the circle with the files that make it.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let base = graph.get(BASE).cloned().unwrap_or_default();
    assert!(base.is_empty(), "the agent's base modules (top-level files) import folders: {base:?}");
    let mut done = BTreeSet::new();
    for folder in graph.keys() {
        if let Some(circle) = visit(folder, &graph, &mut Vec::new(), &mut done) {
            let why: Vec<String> =
                circle.windows(2).map(|w| format!("{} -> {} (in {:?})", w[0], w[1], graph[&w[0]][&w[1]])).collect();
            panic!("the agent's folders import each other in a circle:\n  {}", why.join("\n  "));
        }
    }
}

#[test]
fn the_command_line_does_not_depend_on_the_agent() {
    let manifest = std::fs::read_to_string(crates().join("cli/Cargo.toml")).expect("crates/cli/Cargo.toml");
    assert!(!manifest.contains("halo-agent"), "crates/cli/Cargo.toml names halo-agent: the CLI speaks halo-api only");
    for file in sources(&crates().join("cli/src")) {
        let text = std::fs::read_to_string(&file).expect("a readable source");
        assert!(!text.contains("halo_agent"), "{} uses halo_agent", file.display());
    }
}

/// States and kinds are enums: a comparison with one of their words as a string is a type
/// error waiting to happen (a renamed state would silently never match).
#[test]
fn states_and_kinds_are_never_compared_as_strings() {
    const WORDS: &[&str] = &[
        "online",
        "offline",
        "pending",
        "starting",
        "stopping",
        "failed",
        "migrating",
        "up",
        "down",
        "degraded",
        "paused",
        "joining",
        "removed",
        "process",
        "vm",
        "ip",
        "ocf",
        "live",
        "quick",
        "cold",
    ];
    let mut found = Vec::new();
    for dir in ["agent/src", "cli/src", "core/src", "api/src", "survey/src", "sim/src", "store/src", "halo/src"] {
        for file in sources(&crates().join(dir)) {
            let text = std::fs::read_to_string(&file).expect("a readable source");
            for (n, line) in text.lines().enumerate() {
                for word in WORDS {
                    for op in ["==", "!="] {
                        if line.contains(&format!("{op} \"{word}\"")) || line.contains(&format!("\"{word}\" {op}")) {
                            found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                        }
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "states or kinds compared as strings:\n{}", found.join("\n"));
}
