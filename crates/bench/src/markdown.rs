//! docs/benchmarks.md, regenerated from a run's report: both systems side by side, halo's own
//! measures, and what the numbers mean. The prose lives here so that the file never drifts from
//! the numbers it explains.

use std::fmt::Write;

use crate::record::Record;
use crate::record::number;
use crate::report::{BOUNDS, Measured, PAIRINGS, Report, Source, counts_toward, verdict};

/// A halo measure shown in one of the "halo alone" tables.
struct Row {
    profile: &'static str,
    key: &'static str,
    words: &'static str,
    target: &'static str,
}

const fn row(profile: &'static str, key: &'static str, words: &'static str, target: &'static str) -> Row {
    Row { profile, key, words, target }
}

const SECTIONS: &[(&str, &str, &[Row])] = &[
    (
        "Failover with a fence device",
        "Every node has a fence device (`fence_halotest`, a real power switch for a node on \
         loopback: it kills the node's agent, guard and workloads). The leader powers a silent \
         node off as soon as it is declared down and recovers at once, without waiting for the \
         lease. Same workload and crash mix as above.",
        &[
            row("default", "node_crash_fenced", "node crash → started elsewhere, `default`, all runs", "—"),
            row("default", "node_crash_fenced.follower", "… the owner a follower", "—"),
            row("default", "node_crash_fenced.coordinator", "… the owner the leader", "—"),
            row("fast", "node_crash_fenced", "node crash → started elsewhere, `fast`, all runs", "—"),
            row("fast", "node_crash_fenced.follower", "… the owner a follower", "≤ 1 s"),
            row("fast", "node_crash_fenced.coordinator", "… the owner the leader", "—"),
        ],
    ),
    (
        "Drain",
        "`halo node pause --drain` returns once every role runs elsewhere; `halo node resume \
         --failback` is timed until every role is back. VMs move live, `parallel_migrations` \
         (2) at a time.",
        &[
            row("default", "drain_50", "drain of a node with 50 process roles", "—"),
            row("default", "failback_50", "resume with failback of those 50 roles", "—"),
            row("default", "drain_4_vms", "drain of a node with 4 VMs, until all run elsewhere", "—"),
            row("default", "failback_4_vms", "resume with failback of those 4 VMs", "—"),
        ],
    ),
    (
        "Virtual machines",
        "QEMU under TCG (this machine has no usable KVM), the project's 128 MB test guest \
         (`scripts/guest`), idle, printing its uptime on the serial console every second; each \
         migration is checked to keep the uptime counting. The guest runs again at the target \
         only once the cluster committed the hand-over (ARCHITECTURE.md, S1 point 10).",
        &[
            row("default", "live_migration.total", "live migration: request → guest running on the target", "—"),
            row(
                "default",
                "live_migration.downtime",
                "live migration: guest paused (its pause at the source → resumed at the target)",
                "≤ 0.05 s",
            ),
            row("default", "live_migration.qemu_total", "live migration: QEMU's own transfer time", "—"),
            row("default", "live_migration.qemu_downtime", "live migration: QEMU's own downtime", "—"),
            row(
                "default",
                "live_migration.overhead",
                "live migration: halo's overhead (total − QEMU's transfer: target start, commits, `cont`)",
                "≤ 0.2 s",
            ),
            row("default", "live_migration.command", "`halo role move --mode live`, wall (CLI polling included)", "—"),
            row("default", "vm_crash.qemu", "node crash → QEMU started on another node", "—"),
            row("default", "vm_crash.heartbeat", "node crash → the restarted guest's first heartbeat (TCG boot)", "—"),
        ],
    ),
    (
        "Control plane",
        "Raft (openraft) over the agents' mutual-TLS API, redb with fsync on; the decisions are \
         the real `policy::decide` on one thread (roles of 0.1 CPU and 256 MiB, every tenth in \
         an anti-affinity class of ten, 1,000 of them on the node that fails).",
        &[
            row("default", "leader_loss", "leader killed → a new leader (the CLI polling `halo status`)", "≤ 2 s"),
            row("default", "writes.1", "committed configuration writes, 1 client", "—"),
            row("default", "writes.16", "committed configuration writes, 16 concurrent clients", "—"),
            row("default", "cold_start", "whole-cluster cold start → quorum, all nodes up", "≤ 3 s"),
            row("default", "placement.8000", "placement of 8,000 roles on 64 nodes (one manager tick)", "≤ 100 ms"),
            row(
                "default",
                "recovery.8000",
                "recovery decisions for a failed node with 1,000 roles (64 nodes)",
                "≤ 200 ms",
            ),
            row("default", "idle_tick.8000", "a manager tick with nothing to decide (8,000 roles)", "—"),
            row("default", "placement.32000", "placement of 32,000 roles on 256 nodes", "—"),
            row("default", "recovery.32000", "recovery decisions for a failed node with 1,000 roles (256 nodes)", "—"),
            row("default", "idle_tick.32000", "a manager tick with nothing to decide (32,000 roles)", "—"),
        ],
    ),
    (
        "Footprint",
        "Three idle agents forming a cluster, read after 5 s and over 30 s. PSS shares the \
         binary's pages among the agents that map them, as Pacemaker's PSS above does. Of the \
         agent's memory, about 27 MB is one lookup table a dependency builds at start-up: \
         openraft 0.10.0-alpha.37 (the newest) creates latency histograms whose \
         `base2histogram` 0.2.3 (the newest) precomputes its scale for all 16 widths when \
         the first one is used; halo's own share is under 10 MB.",
        &[
            row("default", "idle_rss", "idle agent RSS, per node", "≤ 30 MB"),
            row("default", "idle_pss", "idle agent + its fence guard, PSS, per node", "—"),
            row("default", "idle_cpu", "idle agent CPU, % of a core, per node", "≤ 1 %"),
        ],
    ),
];

const NOTES: &str = "\
## How to read these numbers

- **Same workload, same faults.** Both systems run a service that records its own start and \
stop times in milliseconds (halo: a process role holding an exclusive `flock`, so a second \
instance would be caught; Pacemaker: `ocf:heartbeat:anything`, stickiness 100). A crash kills \
every process of the node at once (halo: agent, fence guard and workloads; Pacemaker: the \
node's PID namespace, and its link goes down). Times run from the crash, kill or stop to the \
new instance's own start record.
- **Profiles.** halo `default`: a 2 s lease, a node declared down after 1 s of silence; `fast`: \
a 1 s lease. Pacemaker default: token 3000 (+650 ms per node); tuned: token 1000, coefficient \
0. Token 300 is unusable on this machine (constant false membership changes, anchors.md).
- **Why halo is safe without fencing.** A role starts elsewhere only after the lost node's \
lease plus a margin have passed since it was last heard, and that node's fence guard kills its \
workloads when its lease runs out (ARCHITECTURE.md, S1). A follower's crash therefore costs the \
lease plus the margin plus about 0.1 s.
- **A crash of the coordinator's own node** (halo's Raft leader, Pacemaker's DC) costs an \
election first: openraft waits its leader lease plus an election timeout of silence, 1.5-1.8 s \
with the default Raft timing and 0.5-0.6 s for a cluster created with `--profile fast`, as the \
`fast` benchmarks are. The old leader's own lease (half a lease) has then ended by what the voters \
report of its last appends (`halo_core::former_leader`), so the new leader recovers its roles \
at once.
- **Restart in place** is detected by halo the moment the process exits (the fence guard waits \
on each workload in its own thread); Pacemaker finds out at its next monitor, every second here \
(its fastest common setting).
- **Planned-move outage** is stop + one Raft commit + start for halo: the old node reports \
\"stopped\" and the new owner starts on the commit, with no polling in between.
- **Memory.** Pacemaker's figure is the PSS of Corosync and the seven Pacemaker daemons of each \
node; halo's is the PSS of the agent and its fence guard, the whole of halo on a node.
- Benchmarks print numbers and assert nothing about speed; they do assert that nothing ran \
twice. Correctness under faults is measured elsewhere: docs/testing.md (simulator and nemesis).
";

fn cell(m: Option<Measured>) -> String {
    m.map(|m| m.words(true)).unwrap_or_else(|| "not measured".into())
}

/// The whole of docs/benchmarks.md.
pub fn render(report: &Report, plot: Option<&str>) -> String {
    let mut s = String::new();
    let m = &report.machine;
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "<!-- Generated by `scripts/compare` (`halo-bench report`) from docs/benchmarks.json. \
         Edit crates/bench/src/markdown.rs, not this file. -->\n"
    );
    let duration = report.duration_s.map(|d| format!(", {:.0} minutes in all", d / 60.0)).unwrap_or_default();
    let _ =
        writeln!(s, "Latest run: **{}**{duration}, on {}.", report.date.get(..10).unwrap_or(&report.date), m.words());
    if !m.versions.is_empty() {
        let versions: Vec<String> = m.versions.iter().map(|(k, v)| format!("{k}: `{v}`")).collect();
        let _ = writeln!(s, "Versions: {}.", versions.join("; "));
    }
    let _ = writeln!(
        s,
        "\nOne command measures everything below on this machine and rewrites this file: \
         `scripts/compare` (under 30 minutes; it installs Pacemaker, Corosync, resource-agents \
         and QEMU when missing, builds a real three-node Pacemaker cluster in network, mount, \
         UTS and PID namespaces beside halo's three agents, runs both one after the other, and \
         removes every namespace and process it started). Every sample is in \
         `docs/benchmarks.json`.\n"
    );

    let _ = writeln!(s, "## halo beside Pacemaker + Corosync, measured in the same run\n");
    let _ = writeln!(s, "min / **median** / max. The ratio is halo's median over Pacemaker's.\n");
    let _ = writeln!(s, "| measure | halo | Pacemaker + Corosync | halo / Pacemaker | target |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for c in &report.comparisons {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            c.scenario,
            cell(c.halo.clone()),
            cell(c.pacemaker.clone()),
            c.ratio.map(|r| format!("**{r:.2}**")).unwrap_or_else(|| "—".into()),
            verdict(c.target.map(|t| format!("≤ {t:.2}")), c.met)
        );
    }
    for c in &report.checks {
        let value = c.value.map(number).unwrap_or_else(|| "not measured".into());
        let target = verdict(Some(format!("≤ {}", number(c.most))), c.met);
        let _ = writeln!(s, "| {} | **{value}** | — | — | {target} |", c.what);
    }
    let (met, judged) = report.score();
    let _ = writeln!(s, "\n**{met} of {judged} targets met in this run.**\n");
    if let Some(file) = plot {
        let _ = writeln!(s, "![Failover times of both systems]({file})\n");
    }

    let _ = writeln!(s, "## halo alone\n");
    for (title, intro, rows) in SECTIONS {
        let _ = writeln!(s, "### {title}\n\n{intro}\n");
        let _ = writeln!(s, "| measure | halo | target |\n|---|---|---|");
        for r in rows.iter() {
            let source = Source { system: "halo", profile: r.profile, key: r.key };
            let _ = writeln!(s, "| {} | {} | {} |", r.words, cell(report.measured(&source)), r.target);
        }
        s.push('\n');
    }
    let others: Vec<_> = report.records.iter().filter(|r| !shown(r)).collect();
    if !others.is_empty() {
        let _ =
            writeln!(s, "### Other measures of this run\n\n| system | profile | measure | result |\n|---|---|---|---|");
        for r in others {
            let result = Measured::of(r).map(|m| m.words(true)).unwrap_or_else(|| "no samples".into());
            let _ = writeln!(s, "| {} | {} | {} | {} |", r.system, r.profile, r.label, result);
        }
        s.push('\n');
    }
    s.push_str(NOTES);
    s
}

fn shown(r: &Record) -> bool {
    let paired = PAIRINGS.iter().any(|p| [p.halo, p.pacemaker].iter().any(|s| counts_toward(s, r)));
    let bounded = BOUNDS.iter().any(|b| counts_toward(&b.source, r));
    let listed = r.system == "halo"
        && SECTIONS.iter().any(|(_, _, rows)| rows.iter().any(|x| x.profile == r.profile && x.key == r.key));
    paired || bounded || listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{rec, sample_report};

    #[test]
    fn the_page_sets_both_systems_side_by_side_and_names_what_is_missing() {
        let page = render(&sample_report(), Some("benchmarks-failover.svg"));
        assert!(page.contains("Latest run: **2026-11-22**, 10 minutes in all"), "{page}");
        let crash =
            page.lines().find(|l| l.starts_with("| node crash → service started elsewhere, default")).expect("row");
        assert!(crash.contains("**2.30**") && crash.contains("**8.70**") && crash.contains("≤ 0.33: met"), "{crash}");
        assert!(page.contains("| planned move: old instance stopped → new one started | not measured | not measured | — | ≤ 0.50: not measured |"));
        assert!(page.contains("**2 of 5 targets met in this run.**"));
        assert!(page.contains("![Failover times of both systems](benchmarks-failover.svg)"));
        assert!(
            page.contains("| placement of 8,000 roles on 64 nodes (one manager tick) | **106** ms | ≤ 100 ms |"),
            "{page}"
        );
    }

    #[test]
    fn a_measure_no_table_knows_is_still_shown() {
        let mut r = sample_report();
        r.records.push(rec("halo", "default", "something_new", "s", &[1.0, 2.0, 3.0]));
        let page = render(&r, None);
        assert!(page.contains("| halo | default | something_new | 1.00 / **2.00** / 3.00 s (n=3) |"), "{page}");
        assert!(!page.contains("![Failover"));
    }
}
