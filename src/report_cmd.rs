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
    /// Also write figures (PNG and SVG) into this folder: per task, accuracy,
    /// training statistics, critic energy and proxy A-distance curves (mean ±
    /// std over seeds of complete runs), and energy histograms per EBDA run.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Order of the method rows and figure colours: these first, in this
    /// order, then any others alphabetically (default: the order in which
    /// ebda registers its methods, baselines first).
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let runs = ebda_report::find_runs(&args.runs)?;
    let order: Vec<String> = match &args.methods {
        Some(m) => m.clone(),
        None => ebda_train::methods::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let table = ebda_report::aggregate(&runs, &order);
    let text = match args.format {
        ReportFormat::Md => table.markdown(),
        ReportFormat::Csv => table.csv(),
        ReportFormat::Json => serde_json::to_string_pretty(&table.json())? + "\n",
    };
    if let Some(dir) = &args.plots {
        let files = ebda_report::report_plots(&runs, dir, &order)?;
        eprintln!("wrote {} figure files into {}", files.len(), dir.display());
    }
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}
