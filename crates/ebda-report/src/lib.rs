//! Run directories → comparison tables.
//!
//! A run directory (DESIGN.md §3) holds `config.json`, `metrics.jsonl` and,
//! once finished, `summary.json`. This crate finds runs under given paths,
//! groups them by task (source → target) and method, and computes over seeds:
//! - the **headline**: mean ± sample standard deviation (n − 1) of the
//!   target test accuracy at the last iteration;
//! - in a separately labelled column, the **oracle**: the best target test
//!   accuracy over evaluations, which is selected with target labels and is
//!   therefore not a valid result.
//!
//! Runs that are unfinished or diverged are never averaged in: they are
//! listed as flagged, and a cell built from fewer runs than its group has
//! says so.
//!
//! No candle: reports read JSON only.

pub mod plots;

pub use ebda_records::{EnergySnapshot, MetricsLine, read_energies};
pub use plots::{Series, line_chart, report_plots, run_plots};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors while reading runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("no run directories (with config.json) under {0}")]
    NoRuns(String),
    #[error(transparent)]
    Record(#[from] ebda_records::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The state of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Complete,
    /// No summary yet: still running, or stopped; resumable.
    Incomplete,
    /// Stopped on a non-finite loss.
    Diverged,
}

/// What a report needs of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub dir: PathBuf,
    pub task: String,
    pub method: String,
    pub seed: u64,
    pub status: Status,
    /// Target accuracy at the last iteration (complete runs).
    pub last_target_acc: Option<f64>,
    /// Best target accuracy over evaluations (oracle).
    pub oracle_target_acc: Option<f64>,
    /// Iterations evaluated so far / planned.
    pub iterations_done: u64,
    pub iterations_planned: u64,
    pub wall_seconds: Option<f64>,
    pub train_images_per_s: Option<f64>,
}

/// Reads one run directory (its config head, metrics and summary).
pub fn read_run(dir: &Path) -> Result<Run> {
    let head = ebda_records::read_head(dir)?;
    let planned = head.train.iterations;
    let metrics_path = dir.join("metrics.jsonl");
    let metrics = if metrics_path.is_file() {
        ebda_records::read_metrics(&metrics_path)?
    } else {
        Vec::new()
    };
    let done = metrics.last().map_or(0, |m| m.iteration);
    let accs: Vec<f64> = metrics.iter().map(|m| m.target_acc).collect();
    let summary = ebda_records::read_summary(dir)?;
    let status = match &summary {
        Some(ebda_records::Summary::Complete(_)) if done == planned && planned > 0 => {
            Status::Complete
        }
        Some(ebda_records::Summary::Diverged { .. }) => Status::Diverged,
        _ => Status::Incomplete,
    };
    let complete = status == Status::Complete;
    let finished = summary.as_ref().and_then(|s| s.complete());
    Ok(Run {
        dir: dir.to_path_buf(),
        task: head.task,
        method: head.label.unwrap_or(head.method.0),
        seed: head.seed,
        last_target_acc: if complete { accs.last().copied() } else { None },
        oracle_target_acc: if complete {
            accs.iter().copied().reduce(f64::max)
        } else {
            None
        },
        status,
        iterations_done: done,
        iterations_planned: planned,
        wall_seconds: finished.map(|c| c.wall_seconds),
        train_images_per_s: finished.map(|c| c.train_images_per_s),
    })
}

/// Every run directory (one holding `config.json`) at or under each path, sorted.
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<Run>> {
    let mut dirs = Vec::new();
    for p in paths {
        collect(p, &mut dirs)?;
    }
    dirs.sort();
    dirs.dedup();
    if dirs.is_empty() {
        return Err(Error::NoRuns(
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    dirs.iter().map(|d| read_run(d)).collect()
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.join("config.json").is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "checkpoints") {
            collect(&p, out)?;
        }
    }
    Ok(())
}

/// Mean and sample standard deviation (n − 1; 0 for one value).
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

/// One cell: a task × method group.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub task: String,
    pub method: String,
    /// Complete runs averaged.
    pub n: usize,
    /// Runs in the group, complete or not.
    pub total: usize,
    pub seeds: Vec<u64>,
    /// Headline: last-iterate target accuracy, mean and sample std.
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// Oracle (best on target test), mean and sample std.
    pub oracle_mean: Option<f64>,
    pub oracle_std: Option<f64>,
}

/// Runs grouped into cells, plus the runs left out.
#[derive(Clone, Debug, Serialize)]
pub struct Table {
    pub tasks: Vec<String>,
    pub methods: Vec<String>,
    pub cells: Vec<Cell>,
    /// Unfinished or diverged runs, never averaged.
    pub flagged: Vec<Run>,
}

/// Method order of a report: the methods named in `order` first, in that
/// order, then the others alphabetically. A label `name+variant` (e.g.
/// `cdan+e`) not in `order` follows `name`.
pub fn method_order(methods: &mut Vec<String>, order: &[String]) {
    let rank = |m: &str| order.iter().position(|o| o == m);
    methods.sort_by_key(|m| {
        let key = match rank(m) {
            Some(i) => (i, 0),
            None => match m.split_once('+').and_then(|(base, _)| rank(base)) {
                Some(i) => (i, 1),
                None => (order.len(), 0),
            },
        };
        (key, m.clone())
    });
    methods.dedup();
}

/// The column a run belongs to: its task, qualified by its iteration count
/// when runs of that task were trained for different lengths (they are
/// different protocols and are never averaged together).
pub(crate) fn column(run: &Run, runs: &[Run]) -> String {
    let lengths: std::collections::BTreeSet<u64> = runs
        .iter()
        .filter(|r| r.task == run.task)
        .map(|r| r.iterations_planned)
        .collect();
    if lengths.len() > 1 {
        format!("{} @{}", run.task, run.iterations_planned)
    } else {
        run.task.clone()
    }
}

/// Groups runs by (task, method) and aggregates over seeds; methods are
/// listed in `order` first (see [`method_order`]).
pub fn aggregate(runs: &[Run], order: &[String]) -> Table {
    let mut groups: BTreeMap<(String, String), Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups
            .entry((column(r, runs), r.method.clone()))
            .or_default()
            .push(r);
    }
    let mut tasks: Vec<String> = runs.iter().map(|r| column(r, runs)).collect();
    tasks.sort();
    tasks.dedup();
    let mut methods: Vec<String> = runs.iter().map(|r| r.method.clone()).collect();
    method_order(&mut methods, order);
    let cells = groups
        .into_iter()
        .map(|((task, method), rs)| {
            let done: Vec<&&Run> = rs.iter().filter(|r| r.status == Status::Complete).collect();
            let last: Vec<f64> = done.iter().filter_map(|r| r.last_target_acc).collect();
            let oracle: Vec<f64> = done.iter().filter_map(|r| r.oracle_target_acc).collect();
            let (mean, std) = mean_std(&last).map_or((None, None), |(m, s)| (Some(m), Some(s)));
            let (oracle_mean, oracle_std) =
                mean_std(&oracle).map_or((None, None), |(m, s)| (Some(m), Some(s)));
            let mut seeds: Vec<u64> = done.iter().map(|r| r.seed).collect();
            seeds.sort();
            Cell {
                task,
                method,
                n: done.len(),
                total: rs.len(),
                seeds,
                mean,
                std,
                oracle_mean,
                oracle_std,
            }
        })
        .collect();
    let flagged = runs
        .iter()
        .filter(|r| r.status != Status::Complete)
        .cloned()
        .collect();
    Table {
        tasks,
        methods,
        cells,
        flagged,
    }
}

impl Table {
    fn cell(&self, task: &str, method: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.task == task && c.method == method)
    }

    fn fmt(mean: Option<f64>, std: Option<f64>, n: usize, total: usize) -> String {
        match (mean, std) {
            (Some(m), Some(s)) => {
                let partial = if n < total {
                    format!(" ({n} of {total} runs)")
                } else {
                    String::new()
                };
                format!("{:.1} ± {:.1}{partial}", m * 100.0, s * 100.0)
            }
            _ if total > 0 => format!("— (0 of {total} runs complete)"),
            _ => "—".into(),
        }
    }

    /// Mean over tasks of a method's cell means (only where every task has one).
    fn average(&self, method: &str, oracle: bool) -> Option<f64> {
        let means: Option<Vec<f64>> = self
            .tasks
            .iter()
            .map(|t| {
                self.cell(t, method)
                    .and_then(|c| if oracle { c.oracle_mean } else { c.mean })
            })
            .collect();
        means
            .filter(|m| !m.is_empty())
            .map(|m| m.iter().sum::<f64>() / m.len() as f64)
    }

    fn grid(&self, oracle: bool) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for m in &self.methods {
            let mut row = vec![m.clone()];
            for t in &self.tasks {
                row.push(match self.cell(t, m) {
                    Some(c) if oracle => Self::fmt(c.oracle_mean, c.oracle_std, c.n, c.total),
                    Some(c) => Self::fmt(c.mean, c.std, c.n, c.total),
                    None => "—".into(),
                });
            }
            row.push(
                self.average(m, oracle)
                    .map_or("—".into(), |a| format!("{:.1}", a * 100.0)),
            );
            rows.push(row);
        }
        rows
    }

    /// Markdown: the headline table, the oracle table, and the flagged runs.
    pub fn markdown(&self) -> String {
        let header = |title: &str| {
            let mut h = format!("| {title} |");
            for t in &self.tasks {
                h.push_str(&format!(" {t} |"));
            }
            h.push_str(" Avg |\n|---|");
            for _ in &self.tasks {
                h.push_str("---|");
            }
            h.push_str("---|\n");
            h
        };
        let mut out = String::from(
            "Target test accuracy (%) at the last iteration, mean ± sample std over seeds:\n\n",
        );
        out.push_str(&header("method"));
        for row in self.grid(false) {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out.push_str(
            "\nORACLE — best target test accuracy over evaluations (%), selected with target test labels; \
             not a valid result, shown only to expose the gap to the last iterate:\n\n",
        );
        out.push_str(&header("method (oracle)"));
        for row in self.grid(true) {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        if !self.flagged.is_empty() {
            out.push_str("\nFlagged runs, not averaged:\n\n");
            for r in &self.flagged {
                out.push_str(&format!(
                    "- {} ({} {} seed {}): {:?} at iteration {} of {}\n",
                    r.dir.display(),
                    r.task,
                    r.method,
                    r.seed,
                    r.status,
                    r.iterations_done,
                    r.iterations_planned
                ));
            }
        }
        out
    }

    /// CSV: one line per cell.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "task,method,n_complete,n_runs,seeds,last_mean,last_std,oracle_mean,oracle_std\n",
        );
        let f = |v: Option<f64>| v.map_or(String::new(), |x| format!("{:.4}", x * 100.0));
        for c in &self.cells {
            let seeds: Vec<String> = c.seeds.iter().map(u64::to_string).collect();
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                c.task,
                c.method,
                c.n,
                c.total,
                seeds.join(" "),
                f(c.mean),
                f(c.std),
                f(c.oracle_mean),
                f(c.oracle_std)
            ));
        }
        out
    }

    /// JSON: cells and flagged runs.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain data serializes")
    }
}
