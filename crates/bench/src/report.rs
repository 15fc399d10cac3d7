//! One run's results set side by side: halo against Pacemaker + Corosync measured in the same run,
//! the ratios, and every target of issue 6 checked.

use serde::Serialize;

use crate::machine::Machine;
use crate::record::{Record, Stats, number};

/// Where a measure comes from: a system's timing profile and the record's key.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub system: &'static str,
    pub profile: &'static str,
    pub key: &'static str,
}

const fn halo(profile: &'static str, key: &'static str) -> Source {
    Source { system: "halo", profile, key }
}

const fn pacemaker(profile: &'static str, key: &'static str) -> Source {
    Source { system: "pacemaker", profile, key }
}

/// The same measure on both systems. `most` is the largest halo/Pacemaker ratio of medians the
/// target allows, if the issue sets one.
pub struct Pairing {
    pub id: &'static str,
    pub scenario: &'static str,
    pub halo: Source,
    pub pacemaker: Source,
    pub most: Option<f64>,
    /// Whether the failover plot shows it.
    pub plotted: bool,
}

/// The crash runs of both systems mix the same way: three in four crash a node other than the
/// coordinator's (halo's Raft leader, Pacemaker's DC), the fourth the coordinator's own node.
pub const PAIRINGS: &[Pairing] = &[
    Pairing {
        id: "node_crash.default",
        scenario: "node crash → service started elsewhere, default timing, all runs",
        halo: halo("default", "node_crash"),
        pacemaker: pacemaker("default", "node_crash"),
        most: Some(1.0 / 3.0),
        plotted: true,
    },
    Pairing {
        id: "node_crash.default.follower",
        scenario: "… the crashed node was not the coordinator",
        halo: halo("default", "node_crash.follower"),
        pacemaker: pacemaker("default", "node_crash.follower"),
        most: None,
        plotted: false,
    },
    Pairing {
        id: "node_crash.default.coordinator",
        scenario: "… the crashed node was the coordinator (leader / DC)",
        halo: halo("default", "node_crash.coordinator"),
        pacemaker: pacemaker("default", "node_crash.coordinator"),
        most: None,
        plotted: false,
    },
    Pairing {
        id: "node_crash.fast",
        scenario: "node crash → service started elsewhere, halo `fast` against Pacemaker tuned (token 1000), all runs",
        halo: halo("fast", "node_crash"),
        pacemaker: pacemaker("tuned", "node_crash"),
        most: Some(0.6),
        plotted: true,
    },
    Pairing {
        id: "node_crash.fast.follower",
        scenario: "… the crashed node was not the coordinator",
        halo: halo("fast", "node_crash.follower"),
        pacemaker: pacemaker("tuned", "node_crash.follower"),
        most: None,
        plotted: false,
    },
    Pairing {
        id: "node_crash.fast.coordinator",
        scenario: "… the crashed node was the coordinator (leader / DC)",
        halo: halo("fast", "node_crash.coordinator"),
        pacemaker: pacemaker("tuned", "node_crash.coordinator"),
        most: None,
        plotted: false,
    },
    Pairing {
        id: "restart",
        scenario: "service process killed → restarted in place (Pacemaker monitoring every 1 s)",
        halo: halo("default", "restart"),
        pacemaker: pacemaker("default", "restart"),
        most: Some(0.5),
        plotted: true,
    },
    Pairing {
        id: "planned_move",
        scenario: "planned move: old instance stopped → new one started",
        halo: halo("default", "planned_move"),
        pacemaker: pacemaker("default", "planned_move"),
        most: Some(0.5),
        plotted: true,
    },
    Pairing {
        id: "memory",
        scenario: "memory per node, idle: halo's agent and fence guard against Corosync and the Pacemaker daemons (PSS)",
        halo: halo("default", "idle_pss"),
        pacemaker: pacemaker("default", "memory_pss"),
        most: Some(0.25),
        plotted: false,
    },
];

/// A target on halo alone: a statistic of one measure against a limit.
pub struct Bound {
    pub id: &'static str,
    pub what: &'static str,
    pub source: Source,
    pub statistic: Statistic,
    pub most: f64,
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    Median,
    Max,
    /// Events counted over every run (double-active starts, false failovers).
    Sum,
}

pub const BOUNDS: &[Bound] = &[
    // Profile "all": summed over every profile and every benchmark whose key extends this one
    // (`double_active.node_crash`, `double_active.node_crash_fenced`, ...).
    Bound {
        id: "double_active",
        what: "double-active events in halo's crash runs (a second instance found the first's lock held)",
        source: halo("all", "double_active"),
        statistic: Statistic::Sum,
        most: 0.0,
    },
    Bound {
        id: "false_failovers",
        what: "false failovers in halo's crash runs (a start nobody caused)",
        source: halo("all", "false_failovers"),
        statistic: Statistic::Sum,
        most: 0.0,
    },
    Bound {
        id: "placement",
        what: "placement of 8,000 roles on 64 nodes, ms",
        source: halo("default", "placement.8000"),
        statistic: Statistic::Median,
        most: 100.0,
    },
    Bound {
        id: "recovery",
        what: "recovery decisions for a failed node with 1,000 roles (8,000 roles, 64 nodes), ms",
        source: halo("default", "recovery.8000"),
        statistic: Statistic::Median,
        most: 200.0,
    },
    Bound {
        id: "live_migration_downtime",
        what: "live migration: guest paused, s",
        source: halo("default", "live_migration.downtime"),
        statistic: Statistic::Median,
        most: 0.05,
    },
    Bound {
        id: "live_migration_overhead",
        what: "live migration: halo's overhead over QEMU's transfer, s",
        source: halo("default", "live_migration.overhead"),
        statistic: Statistic::Median,
        most: 0.2,
    },
];

#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub profile: String,
    pub key: String,
    pub unit: String,
    #[serde(flatten)]
    pub stats: Stats,
    pub samples: Vec<f64>,
}

impl Measured {
    pub fn of(r: &Record) -> Option<Measured> {
        Some(Measured {
            profile: r.profile.clone(),
            key: r.key.clone(),
            unit: r.unit.clone(),
            stats: r.stats()?,
            samples: r.samples.clone(),
        })
    }

    /// "2.21 / **2.33** / 2.38 s (n=15)", or "435 writes/s" for one sample.
    pub fn words(&self, bold: bool) -> String {
        let s = &self.stats;
        let b = |v: String| if bold { format!("**{v}**") } else { v };
        if s.n == 1 {
            return format!("{} {}", b(number(s.median)), self.unit);
        }
        format!("{} / {} / {} {} (n={})", number(s.min), b(number(s.median)), number(s.max), self.unit, s.n)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub id: String,
    pub scenario: String,
    pub halo: Option<Measured>,
    pub pacemaker: Option<Measured>,
    /// halo's median over Pacemaker's.
    pub ratio: Option<f64>,
    /// The largest ratio the target allows.
    pub target: Option<f64>,
    /// None when there is no target or a side was not measured.
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: String,
    pub what: String,
    pub statistic: Statistic,
    pub value: Option<f64>,
    pub most: f64,
    pub met: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// UTC, RFC 3339, when the report was made.
    pub date: String,
    /// Wall time of the whole run, when the caller knows it.
    pub duration_s: Option<f64>,
    pub machine: Machine,
    pub comparisons: Vec<Comparison>,
    pub checks: Vec<Check>,
    pub records: Vec<Record>,
}

impl Report {
    pub fn new(records: Vec<Record>, machine: Machine, date: String, duration_s: Option<f64>) -> Report {
        let mut report = Report { date, duration_s, machine, comparisons: Vec::new(), checks: Vec::new(), records };
        report.comparisons = PAIRINGS.iter().map(|p| report.compare(p)).collect();
        report.checks = BOUNDS.iter().map(|b| report.check(b)).collect();
        report
    }

    pub fn find(&self, s: &Source) -> Option<&Record> {
        self.records.iter().find(|r| r.system == s.system && r.key == s.key && r.profile == s.profile)
    }

    pub fn measured(&self, s: &Source) -> Option<Measured> {
        self.find(s).and_then(Measured::of)
    }

    fn compare(&self, p: &Pairing) -> Comparison {
        let halo = self.measured(&p.halo);
        let pacemaker = self.measured(&p.pacemaker);
        let ratio = match (&halo, &pacemaker) {
            (Some(h), Some(m)) if m.stats.median > 0.0 => Some(h.stats.median / m.stats.median),
            _ => None,
        };
        Comparison {
            id: p.id.into(),
            scenario: p.scenario.into(),
            halo,
            pacemaker,
            ratio,
            target: p.most,
            met: p.most.zip(ratio).map(|(most, r)| r <= most),
        }
    }

    fn check(&self, b: &Bound) -> Check {
        let value = if b.source.profile == "all" {
            let hits: Vec<&Record> = self.records.iter().filter(|r| counts_toward(&b.source, r)).collect();
            (!hits.is_empty()).then(|| hits.iter().flat_map(|r| &r.samples).sum())
        } else {
            self.find(&b.source).and_then(|r| {
                let s = r.stats()?;
                Some(match b.statistic {
                    Statistic::Median => s.median,
                    Statistic::Max => s.max,
                    Statistic::Sum => r.samples.iter().sum(),
                })
            })
        };
        Check {
            id: b.id.into(),
            what: b.what.into(),
            statistic: b.statistic,
            value,
            most: b.most,
            met: value.map(|v| v <= b.most),
        }
    }

    /// Targets met, and all targets that could be judged.
    pub fn score(&self) -> (usize, usize) {
        let judged: Vec<bool> =
            self.comparisons.iter().filter_map(|c| c.met).chain(self.checks.iter().filter_map(|c| c.met)).collect();
        (judged.iter().filter(|m| **m).count(), judged.len())
    }

    /// The summary for the terminal.
    pub fn table(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_header(vec!["measure", "halo", "Pacemaker + Corosync", "halo / Pacemaker", "target"]);
        let show = |m: &Option<Measured>| m.as_ref().map(|m| m.words(false)).unwrap_or_else(|| "not measured".into());
        for c in &self.comparisons {
            t.add_row(vec![
                c.scenario.clone(),
                show(&c.halo),
                show(&c.pacemaker),
                c.ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "—".into()),
                verdict(c.target.map(|t| format!("≤ {t:.2}")), c.met),
            ]);
        }
        for c in &self.checks {
            t.add_row(vec![
                c.what.clone(),
                c.value.map(number).unwrap_or_else(|| "not measured".into()),
                "—".into(),
                "—".into(),
                verdict(Some(format!("≤ {}", number(c.most))), c.met),
            ]);
        }
        let (met, judged) = self.score();
        format!("{t}\n{met} of {judged} targets met")
    }
}

/// Whether record `r` is, or (for a bound over "all" profiles) extends, the measure `s`.
pub fn counts_toward(s: &Source, r: &Record) -> bool {
    let extends = r.key.strip_prefix(s.key).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
    r.system == s.system && if s.profile == "all" { extends } else { r.key == s.key && r.profile == s.profile }
}

/// "≤ 0.33: met", "≤ 0.33: NOT MET", "≤ 0.33: not measured", or "—".
pub fn verdict(target: Option<String>, met: Option<bool>) -> String {
    match (target, met) {
        (None, _) => "—".into(),
        (Some(t), Some(true)) => format!("{t}: met"),
        (Some(t), Some(false)) => format!("{t}: NOT MET"),
        (Some(t), None) => format!("{t}: not measured"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn rec(system: &str, profile: &str, key: &str, unit: &str, samples: &[f64]) -> Record {
        Record {
            system: system.into(),
            profile: profile.into(),
            key: key.into(),
            label: key.into(),
            unit: unit.into(),
            samples: samples.to_vec(),
        }
    }

    pub fn sample_report() -> Report {
        let records = vec![
            rec("halo", "default", "node_crash", "s", &[2.2, 2.3, 3.0]),
            rec("pacemaker", "default", "node_crash", "s", &[8.0, 8.7, 9.3]),
            rec("halo", "fast", "node_crash", "s", &[1.2, 1.3, 2.4]),
            rec("pacemaker", "tuned", "node_crash", "s", &[2.0, 2.1, 3.5]),
            rec("halo", "default", "restart", "s", &[0.009, 0.01]),
            rec("pacemaker", "default", "restart", "s", &[0.3, 0.7]),
            rec("halo", "default", "double_active", "events", &[0.0]),
            rec("halo", "fast", "double_active.node_crash", "events", &[1.0]),
            rec("halo", "fast", "double_active.node_crash_fenced", "events", &[0.0]),
            rec("halo", "fast", "double_active_ish", "events", &[5.0]),
            rec("halo", "default", "placement.8000", "ms", &[106.0]),
        ];
        Report::new(records, Machine::default(), "2026-11-22T10:00:00Z".into(), Some(600.0))
    }

    fn comparison<'a>(r: &'a Report, id: &str) -> &'a Comparison {
        r.comparisons.iter().find(|c| c.id == id).expect(id)
    }

    fn check<'a>(r: &'a Report, id: &str) -> &'a Check {
        r.checks.iter().find(|c| c.id == id).expect(id)
    }

    #[test]
    fn ratios_are_of_medians_measured_in_the_same_run() {
        let r = sample_report();
        let c = comparison(&r, "node_crash.default");
        assert!((c.ratio.expect("ratio") - 2.3 / 8.7).abs() < 1e-9);
        assert_eq!(c.met, Some(true));
        // 1.3 / 2.1 = 0.62 > 0.6.
        assert_eq!(comparison(&r, "node_crash.fast").met, Some(false));
    }

    #[test]
    fn a_side_not_measured_is_not_judged() {
        let r = sample_report();
        let c = comparison(&r, "planned_move");
        assert_eq!((c.ratio, c.met), (None, None));
        assert!(r.table().contains("not measured"));
    }

    #[test]
    fn events_are_summed_over_every_profile_and_any_fails_the_target() {
        let r = sample_report();
        let c = check(&r, "double_active");
        assert_eq!((c.value, c.met), (Some(1.0), Some(false)));
        assert_eq!(check(&r, "false_failovers").met, None);
        assert_eq!(check(&r, "placement").met, Some(false));
    }

    #[test]
    fn the_table_says_which_targets_are_met() {
        let r = sample_report();
        let t = r.table();
        assert!(t.contains("≤ 0.33: met"), "{t}");
        assert!(t.contains("≤ 0.60: NOT MET"), "{t}");
        let (met, judged) = r.score();
        assert_eq!((met, judged), (2, 5), "{t}");
        assert!(t.ends_with("2 of 5 targets met"), "{t}");
    }
}
