//! The benchmark suite's results. Every benchmark, halo's (Rust tests run by `scripts/bench`)
//! and Pacemaker's (`scripts/pacemaker`), appends its samples as [`Record`]s, one JSON line each,
//! to the file `$HALO_BENCH_JSON` names; `halo-bench report` turns one run's records into the
//! side-by-side [`report::Report`], its JSON, docs/benchmarks.md and the failover plot.

pub mod machine;
pub mod markdown;
pub mod plot;
pub mod record;
pub mod report;

pub use record::{Record, Stats, record};
pub use report::Report;
