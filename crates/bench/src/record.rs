//! One benchmark result: the samples of one measure, of one system at one timing profile.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The environment variable that names the file benchmarks append their records to.
pub const OUTPUT_ENV: &str = "HALO_BENCH_JSON";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// "halo" or "pacemaker".
    pub system: String,
    /// The timing profile the system ran with: halo's `default` or `fast`, Pacemaker's
    /// `default` (token 3000) or `tuned` (token 1000).
    pub profile: String,
    /// What was measured, stable across runs and shared by both systems where the measure is the
    /// same (`node_crash`, `restart`, `planned_move`, ...).
    pub key: String,
    /// The measure in words, as the benchmark printed it.
    pub label: String,
    /// "s", "MB", "ms", "writes/s", "%", "events", ...
    pub unit: String,
    pub samples: Vec<f64>,
}

/// min / median / max of a record's samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Stats {
    /// None without samples. The median of an even count is the mean of the middle two.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Some(Stats { n, min: s[0], median, max: s[n - 1] })
    }
}

impl Record {
    pub fn stats(&self) -> Option<Stats> {
        Stats::of(&self.samples)
    }

    /// The line benchmarks print: "BENCH <label>: n=.. min=.. median=.. max=..", or the value
    /// alone for a single sample.
    pub fn line(&self) -> String {
        let who = if self.system == "halo" { String::new() } else { format!("{} ", self.system) };
        match self.stats() {
            None => format!("BENCH {who}{}: no samples", self.label),
            Some(s) if s.n == 1 => format!("BENCH {who}{}: {} {}", self.label, number(s.median), self.unit),
            Some(s) => format!(
                "BENCH {who}{}: n={} min={} median={} max={} {}",
                self.label,
                s.n,
                number(s.min),
                number(s.median),
                number(s.max),
                self.unit
            ),
        }
    }
}

/// A number with as many decimals as its size calls for: 0.012, 2.33, 435.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read benchmark records from {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}, line {line}: not a benchmark record: {source}")]
    Parse { path: String, line: usize, source: serde_json::Error },
    #[error("cannot append the benchmark record to {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// Print a halo benchmark's result, and append it to `$HALO_BENCH_JSON` when that is set. A
/// record that cannot be written fails the benchmark: a run that loses results must not look
/// complete.
pub fn record(profile: &str, key: &str, label: &str, unit: &str, samples: Vec<f64>) {
    let r = Record {
        system: "halo".into(),
        profile: profile.into(),
        key: key.into(),
        label: label.into(),
        unit: unit.into(),
        samples,
    };
    println!("{}", r.line());
    if let Some(path) = std::env::var_os(OUTPUT_ENV)
        && let Err(e) = append(Path::new(&path), &r)
    {
        panic!("{e}");
    }
}

pub fn append(path: &Path, r: &Record) -> Result<(), Error> {
    let err = |source| Error::Write { path: path.display().to_string(), source };
    let mut line = serde_json::to_string(r).map_err(|e| err(std::io::Error::other(e)))?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
    f.write_all(line.as_bytes()).map_err(err)
}

/// Every record of a run, in order. A measure recorded twice (a benchmark run again in the same
/// run) keeps its latest samples.
pub fn read(path: &Path) -> Result<Vec<Record>, Error> {
    let name = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: name(), source })?;
    let mut out: Vec<Record> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let r: Record =
            serde_json::from_str(line).map_err(|source| Error::Parse { path: name(), line: i + 1, source })?;
        match out.iter_mut().find(|o| (&o.system, &o.profile, &o.key) == (&r.system, &r.profile, &r.key)) {
            Some(o) => *o = r,
            None => out.push(r),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let s = Stats::of(&[4.0, 1.0, 3.0, 2.0]).expect("stats");
        assert_eq!((s.n, s.min, s.median, s.max), (4, 1.0, 2.5, 4.0));
        assert_eq!(Stats::of(&[3.0, 1.0, 2.0]).expect("stats").median, 2.0);
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(Stats::of(&[f64::NAN]), None);
    }

    #[test]
    fn records_round_trip_and_a_rerun_replaces_its_measure() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("raw.jsonl");
        let r = |key: &str, samples: Vec<f64>| Record {
            system: "halo".into(),
            profile: "default".into(),
            key: key.into(),
            label: key.into(),
            unit: "s".into(),
            samples,
        };
        append(&path, &r("restart", vec![0.1])).expect("append");
        append(&path, &r("planned_move", vec![0.2])).expect("append");
        append(&path, &r("restart", vec![0.3, 0.4])).expect("append");
        let back = read(&path).expect("read");
        assert_eq!(back, vec![r("restart", vec![0.3, 0.4]), r("planned_move", vec![0.2])]);
    }

    #[test]
    fn a_broken_line_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("raw.jsonl");
        std::fs::write(&path, "{\"system\":\"halo\"}\n").expect("write");
        let e = read(&path).expect_err("broken").to_string();
        assert!(e.contains("line 1") && e.contains("not a benchmark record"), "{e}");
    }

    #[test]
    fn lines_read_like_the_old_bench_lines() {
        let r = Record {
            system: "pacemaker".into(),
            profile: "tuned".into(),
            key: "node_crash".into(),
            label: "node crash".into(),
            unit: "s".into(),
            samples: vec![2.5, 3.51, 2.4],
        };
        assert_eq!(r.line(), "BENCH pacemaker node crash: n=3 min=2.40 median=2.50 max=3.51 s");
        assert_eq!(number(435.2), "435");
        assert_eq!(number(0.0123), "0.012");
    }
}
