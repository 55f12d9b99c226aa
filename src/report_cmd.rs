//! `ebda report`.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReportFormat {
    Md,
    Csv,
    Json,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories, or folders holding them (searched recursively).
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let runs = ebda_report::find_runs(&args.runs)?;
    let table = ebda_report::aggregate(&runs);
    let text = match args.format {
        ReportFormat::Md => table.markdown(),
        ReportFormat::Csv => table.csv(),
        ReportFormat::Json => serde_json::to_string_pretty(&table.json())? + "\n",
    };
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
