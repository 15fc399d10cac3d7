//! `halo-bench report`: one run's benchmark records into the side-by-side table on the terminal,
//! the JSON file, docs/benchmarks.md and the failover plot. `scripts/compare` runs it last.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use halo_bench::machine::Machine;
use halo_bench::{Report, markdown, plot, record};

#[derive(Parser)]
#[command(name = "halo-bench", about = "halo's benchmark report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn a run's records (JSON lines) into the report.
    Report {
        /// The records the benchmarks appended ($HALO_BENCH_JSON).
        #[arg(long)]
        raw: PathBuf,
        /// Write the whole report, every sample included, as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the benchmarks page (docs/benchmarks.md).
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the failover-time plot (SVG).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// How long the whole run took, in seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
}

fn main() -> Result<()> {
    let Cli { command: Command::Report { raw, json, markdown: page, svg, duration } } = Cli::parse();
    let records = record::read(&raw)?;
    anyhow::ensure!(!records.is_empty(), "{} holds no benchmark records: did the benchmarks run?", raw.display());
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let report = Report::new(records, Machine::detect(), date, duration);
    println!("{}", report.table());
    if let Some(path) = &json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    let mut plot_link = None;
    if let Some(path) = &svg {
        match plot::failover_svg(&report) {
            Some(text) => {
                std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
                // The page links the plot by a path relative to itself.
                let beside = page.as_ref().and_then(|p| p.parent()) == path.parent();
                plot_link = Some(if beside {
                    path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
                } else {
                    path.display().to_string()
                });
            }
            None => eprintln!("no failover samples: no plot written"),
        }
    }
    if let Some(path) = &page {
        std::fs::write(path, markdown::render(&report, plot_link.as_deref()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
