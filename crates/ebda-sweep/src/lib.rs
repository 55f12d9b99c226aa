//! Grids of ebda runs.
//!
//! A sweep file names experiment configs, tasks (a name plus the overrides
//! that make a config that task, e.g. its domains' data), methods, seeds and
//! any other config keys with lists of values, and an output root.
//! [`Sweep::plan`]
//! expands it into runs — each an `ebda train` config file plus `--set`
//! overrides — with deterministic directory names
//! (`{task}-{method}-seed{seed}[-{key}={value}…]`), validating every run's
//! config up front. [`RunStatus`] reads where a run stands from its
//! directory, so a sweep can be stopped and continued, on one machine
//! (`ebda sweep run`) or as a SLURM job array ([`slurm_script`]) in which
//! array task `i` runs run `i` of the plan.
//!
//! ```json
//! {
//!   "out": "runs/digits-5k",
//!   "configs": ["experiments/digits/M2U-5k.json", "experiments/digits/U2M-5k.json"],
//!   "methods": ["source-only", "dann", "ebda",
//!               {"label": "cdan+e", "set": {"method": "cdan", "method.cdan.entropy": true}}],
//!   "seeds": [0, 1, 2],
//!   "grid": {"adapt.lambda_max": [0.5, 1.0]},
//!   "set": {"train.iterations": 6000}
//! }
//! ```
//!
//! Several tasks from one config (Office-Caltech10's twelve domain pairs):
//!
//! ```json
//! {
//!   "out": "runs/office_caltech10",
//!   "configs": ["experiments/office_caltech10/surf.json"],
//!   "tasks": [
//!     {"task": "A2W", "set": {"data.source.root": "amazon.mat", "data.target.root": "webcam.mat"}},
//!     {"task": "W2A", "set": {"data.source.root": "webcam.mat", "data.target.root": "amazon.mat"}}
//!   ],
//!   "methods": ["source-only", "dann", "ebda"],
//!   "seeds": [0, 1, 2]
//! }
//! ```
//!
//! Paths in the file (configs, `out`, paths in overrides) are relative to
//! the working directory, as `ebda train --config` reads them.

use ebda_train::ExperimentConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What can go wrong with a sweep file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read sweep file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sweep file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("sweep file {path}: run {run} ({config} {sets}): {source}")]
    Config {
        path: PathBuf,
        run: usize,
        config: String,
        sets: String,
        source: Box<ebda_config::ConfigError>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A method of the grid: a method name, or a labelled variant with its own
/// overrides (its `label` names its report row and run directories). A name
/// that is the config's own method runs it with the config's settings for
/// it; another name switches to that method with its defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MethodEntry {
    Name(String),
    Variant {
        label: String,
        #[serde(default)]
        set: BTreeMap<String, Value>,
    },
}

/// A task of the grid: its name (the config's `task`, the first part of run
/// names) and the overrides that make the config that task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEntry {
    pub task: String,
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
}

/// The sweep file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Output root: every run directory is `out/NAME`.
    pub out: PathBuf,
    /// Experiment configs: one per task, or the base of `tasks`.
    pub configs: Vec<PathBuf>,
    /// Tasks made from every config by overrides; default: each config's own.
    #[serde(default)]
    pub tasks: Vec<TaskEntry>,
    /// Methods; default: each config's own.
    #[serde(default)]
    pub methods: Vec<MethodEntry>,
    /// Seeds; default: each config's own.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// More axes: a config key (as for `--set`) and its values (keys in
    /// sorted order; the values in the order given).
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<Value>>,
    /// Overrides applied to every run (before the axes).
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
}

/// One run of the grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    /// Its position in the plan (the SLURM array index).
    pub index: usize,
    /// Directory name under the sweep's `out`.
    pub name: String,
    /// Run directory.
    pub dir: PathBuf,
    /// The config file it starts from.
    pub config: PathBuf,
    /// `--set` overrides, in order (`key=JSON`).
    pub sets: Vec<String>,
    /// The task (the resolved config's `task`).
    pub task: String,
    /// The report row: the config's `label` or its method's name.
    pub method: String,
    pub seed: u64,
}

/// A sweep: the file and its expanded runs.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub path: PathBuf,
    pub file: SweepFile,
    pub runs: Vec<Run>,
}

fn set_arg(key: &str, value: &Value) -> String {
    // Compact JSON is read back as the same value (a string stays a string).
    format!("{key}={value}")
}

/// A value as it appears in a run name: strings without quotes, every
/// character outside `[A-Za-z0-9._+-]` replaced by `_`.
fn name_part(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Sweep {
    /// Reads and expands the sweep file at `path`; every run's config is
    /// resolved and validated, and names must be unique.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: SweepFile = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::plan(path, file)
    }

    /// Expands `file` (read from `path`) into its runs, in the order
    /// configs × tasks × methods × seeds × grid values (the last axis varies
    /// fastest).
    pub fn plan(path: &Path, file: SweepFile) -> Result<Self> {
        let invalid = |reason: String| Error::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        if file.configs.is_empty() {
            return Err(invalid(
                "`configs` is empty: name at least one experiment config".into(),
            ));
        }
        for (key, values) in &file.grid {
            if values.is_empty() {
                return Err(invalid(format!("grid key {key:?} has no values")));
            }
            if ["method", "seed", "label", "task"].contains(&key.as_str()) {
                return Err(invalid(format!(
                    "grid key {key:?}: use `methods` / `seeds` / `tasks` for that axis"
                )));
            }
        }
        let mut task_names = BTreeMap::new();
        for (i, t) in file.tasks.iter().enumerate() {
            if t.task.is_empty() {
                return Err(invalid(format!("tasks[{i}] has an empty name")));
            }
            if let Some(first) = task_names.insert(t.task.as_str(), i) {
                return Err(invalid(format!(
                    "tasks[{first}] and tasks[{i}] are both named {:?}",
                    t.task
                )));
            }
            for key in t.set.keys() {
                if ["task", "method", "seed", "label"].contains(&key.as_str()) {
                    return Err(invalid(format!(
                        "tasks[{i}] ({}) sets {key:?}: the task's name is its `task`; methods and seeds are their own axes",
                        t.task
                    )));
                }
            }
        }
        let tasks: Vec<Option<&TaskEntry>> = if file.tasks.is_empty() {
            vec![None]
        } else {
            file.tasks.iter().map(Some).collect()
        };
        let methods: Vec<Option<&MethodEntry>> = if file.methods.is_empty() {
            vec![None]
        } else {
            file.methods.iter().map(Some).collect()
        };
        let seeds: Vec<Option<u64>> = if file.seeds.is_empty() {
            vec![None]
        } else {
            file.seeds.iter().copied().map(Some).collect()
        };
        // Every combination of grid values (the last key varies fastest).
        let mut combos: Vec<Vec<(&str, &Value)>> = vec![Vec::new()];
        for (key, values) in &file.grid {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.as_str(), v));
                        c
                    })
                })
                .collect();
        }
        let mut runs = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (config, task) in file
            .configs
            .iter()
            .flat_map(|c| tasks.iter().map(move |t| (c, t)))
        {
            for method in &methods {
                for seed in &seeds {
                    for combo in &combos {
                        let mut sets: Vec<String> =
                            file.set.iter().map(|(k, v)| set_arg(k, v)).collect();
                        if let Some(t) = task {
                            sets.push(set_arg("task", &Value::String(t.task.clone())));
                            sets.extend(t.set.iter().map(|(k, v)| set_arg(k, v)));
                        }
                        let index = runs.len();
                        let load = |sets: &[String]| {
                            ExperimentConfig::load(Some(config), sets).map_err(|source| {
                                Error::Config {
                                    path: path.to_path_buf(),
                                    run: index,
                                    config: config.display().to_string(),
                                    sets: sets.join(" "),
                                    source: Box::new(source),
                                }
                            })
                        };
                        match method {
                            Some(MethodEntry::Name(name)) => {
                                // The config's own method keeps the config's
                                // settings for it (its discriminator, critic);
                                // another name switches to that method's defaults.
                                let own = load(&sets)?.method.name() == name;
                                if !own {
                                    sets.push(set_arg("method", &Value::String(name.clone())));
                                }
                            }
                            Some(MethodEntry::Variant { label, set }) => {
                                sets.extend(set.iter().map(|(k, v)| set_arg(k, v)));
                                sets.push(set_arg("label", &Value::String(label.clone())));
                            }
                            None => {}
                        }
                        if let Some(seed) = seed {
                            sets.push(set_arg("seed", &Value::from(*seed)));
                        }
                        sets.extend(combo.iter().map(|(k, v)| set_arg(k, v)));
                        let mut cfg = load(&sets)?;
                        if !combo.is_empty() {
                            // A grid point is its own report row.
                            let base = cfg
                                .label
                                .clone()
                                .unwrap_or_else(|| cfg.method.name().to_string());
                            let point: Vec<String> = combo
                                .iter()
                                .map(|(k, v)| format!("{k}={}", name_part(v)))
                                .collect();
                            let label = format!("{base} {}", point.join(" "));
                            sets.push(set_arg("label", &Value::String(label)));
                            cfg = load(&sets)?;
                        }
                        let method_name = cfg
                            .label
                            .clone()
                            .unwrap_or_else(|| cfg.method.name().to_string());
                        let base_name = method_name.split(' ').next().unwrap_or("").to_string();
                        let mut name = format!(
                            "{}-{}-seed{}",
                            name_part(&Value::String(cfg.task.clone())),
                            name_part(&Value::String(base_name)),
                            cfg.seed
                        );
                        for (k, v) in combo {
                            name.push_str(&format!(
                                "-{}={}",
                                name_part(&Value::String(k.to_string())),
                                name_part(v)
                            ));
                        }
                        if let Some(first) = seen.insert(name.clone(), index) {
                            return Err(invalid(format!(
                                "runs {first} and {index} are both named {name:?} (two configs with the same task? name the tasks with `tasks`)"
                            )));
                        }
                        runs.push(Run {
                            index,
                            dir: file.out.join(&name),
                            name,
                            config: config.clone(),
                            sets,
                            task: cfg.task.clone(),
                            method: method_name,
                            seed: cfg.seed,
                        });
                    }
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            runs,
        })
    }

    /// The runs whose task is one of `tasks` and whose method (report row,
    /// or its first word) is one of `methods`; an empty list selects all.
    /// A name that matches no run is an error listing the names there are.
    pub fn select(&self, tasks: &[String], methods: &[String]) -> Result<Vec<&Run>> {
        let first_word = |m: &str| m.split(' ').next().unwrap_or("").to_string();
        let check = |wanted: &[String], have: Vec<String>, what: &str| -> Result<()> {
            for w in wanted {
                if !have.contains(w) {
                    let mut have = have.clone();
                    have.sort();
                    have.dedup();
                    return Err(Error::Invalid {
                        path: self.path.clone(),
                        reason: format!(
                            "no run has {what} {w:?}; the sweep's {what}s are: {}",
                            have.join(", ")
                        ),
                    });
                }
            }
            Ok(())
        };
        check(
            tasks,
            self.runs.iter().map(|r| r.task.clone()).collect(),
            "task",
        )?;
        check(
            methods,
            self.runs
                .iter()
                .flat_map(|r| [r.method.clone(), first_word(&r.method)])
                .collect(),
            "method",
        )?;
        Ok(self
            .runs
            .iter()
            .filter(|r| tasks.is_empty() || tasks.contains(&r.task))
            .filter(|r| {
                methods.is_empty()
                    || methods.contains(&r.method)
                    || methods.contains(&first_word(&r.method))
            })
            .collect())
    }

    /// The sweep's bookkeeping directory (`out/.sweep`): run logs and
    /// failure markers, the SLURM script.
    pub fn meta_dir(&self) -> PathBuf {
        self.file.out.join(".sweep")
    }

    /// Where run `run`'s output goes when the sweep starts it.
    pub fn log_path(&self, run: &Run) -> PathBuf {
        self.meta_dir()
            .join("logs")
            .join(format!("{}.log", run.name))
    }

    /// The marker a failed run leaves (its exit status and last log lines).
    pub fn failure_path(&self, run: &Run) -> PathBuf {
        self.meta_dir().join("failed").join(&run.name)
    }

    /// Where run `run` stands on disk.
    pub fn status(&self, run: &Run) -> RunStatus {
        RunStatus::read(&run.dir, &self.failure_path(run))
    }
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunStatus {
    /// Not started (no run directory, or one without a checkpoint).
    Pending,
    /// Another process holds the run directory's lock.
    Running,
    /// Has a checkpoint and no final summary: `--resume` continues it.
    Partial { iteration: Option<u64> },
    /// Finished; the target accuracy of the last iterate.
    Done { target_acc: f64 },
    /// The run's process failed (its exit status and last log lines); a
    /// checkpoint, if any, lets it resume.
    Failed { reason: String },
    /// A non-finite loss stopped the run (rerunning gives the same).
    Diverged { reason: String },
}

impl RunStatus {
    /// Reads the status of the run in `dir`; `failure` is the sweep's
    /// failure marker for it.
    pub fn read(dir: &Path, failure: &Path) -> Self {
        if is_locked(dir) {
            return RunStatus::Running;
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) {
            match serde_json::from_str::<ebda_records::Summary>(&text) {
                Ok(ebda_records::Summary::Complete(c)) => {
                    return RunStatus::Done {
                        target_acc: c.headline.target_acc,
                    };
                }
                Ok(ebda_records::Summary::Diverged { iteration, error }) => {
                    return RunStatus::Diverged {
                        reason: format!("diverged at iteration {iteration}: {error}"),
                    };
                }
                Ok(ebda_records::Summary::Stopped { .. }) => {}
                Err(e) => {
                    return RunStatus::Failed {
                        reason: format!("unreadable {}: {e}", dir.join("summary.json").display()),
                    };
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(failure) {
            return RunStatus::Failed {
                reason: text.trim().to_string(),
            };
        }
        if dir.join("checkpoints/latest.json").is_file() {
            let iteration = std::fs::read_to_string(dir.join("checkpoints/latest.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("iteration").and_then(Value::as_u64));
            return RunStatus::Partial { iteration };
        }
        RunStatus::Pending
    }

    /// One word for tables: pending, running, partial, done, failed, diverged.
    pub fn word(&self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Partial { .. } => "partial",
            RunStatus::Done { .. } => "done",
            RunStatus::Failed { .. } => "failed",
            RunStatus::Diverged { .. } => "diverged",
        }
    }
}

/// Whether another process holds `dir/lock` (the trainer's run lock).
fn is_locked(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("lock"))
    else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// `sbatch` settings of a sweep's job array.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlurmOptions {
    pub job_name: String,
    pub partition: Option<String>,
    /// e.g. `gpu:1`.
    pub gres: Option<String>,
    /// e.g. `04:00:00`.
    pub time: Option<String>,
    pub cpus_per_task: usize,
    /// e.g. `16G`.
    pub mem: Option<String>,
    /// At most this many array tasks at once (`--array=…%K`).
    pub concurrency: Option<usize>,
    /// `--device` of every run (e.g. `cuda`).
    pub device: Option<String>,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The array indices as sbatch writes them: ascending, runs of consecutive
/// indices as ranges (`0-3,7,9-10`).
pub fn array_ranges(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The job-array script of `sweep` over the runs `indices` of its plan
/// (all of them, or a selection): array task `i` runs run `i` of the plan
/// through `ebda sweep run-one` (which resumes a partial run, so a requeued
/// or preempted task continues from its checkpoint). `ebda` and `workdir`
/// are absolute paths on the cluster; `sweep_file` is read from `workdir`.
pub fn slurm_script(
    sweep: &Sweep,
    indices: &[usize],
    opts: &SlurmOptions,
    ebda: &Path,
    workdir: &Path,
    sweep_file: &Path,
) -> String {
    let n = indices.len();
    let logs = workdir.join(sweep.meta_dir()).join("slurm");
    let mut s = String::from("#!/bin/bash\n");
    let of = if n == sweep.runs.len() {
        String::new()
    } else {
        format!(" ({n} of its {})", sweep.runs.len())
    };
    s.push_str(&format!(
        "# {n} runs of {}{of} (`ebda sweep plan {}` lists them by index).\n",
        sweep_file.display(),
        sweep_file.display()
    ));
    // sbatch reads a directive's value as a shell word: quote one with spaces.
    let mut directive = |k: &str, v: &str| {
        if v.chars().any(char::is_whitespace) {
            s.push_str(&format!("#SBATCH --{k}=\"{v}\"\n"))
        } else {
            s.push_str(&format!("#SBATCH --{k}={v}\n"))
        }
    };
    directive("job-name", &opts.job_name);
    let ranges = array_ranges(indices);
    let array = match opts.concurrency {
        Some(k) => format!("{ranges}%{k}"),
        None => ranges,
    };
    directive("array", &array);
    directive("output", &format!("{}/%A_%a.out", logs.display()));
    directive("open-mode", "append");
    directive("cpus-per-task", &opts.cpus_per_task.max(1).to_string());
    if let Some(p) = &opts.partition {
        directive("partition", p);
    }
    if let Some(g) = &opts.gres {
        directive("gres", g);
    }
    if let Some(t) = &opts.time {
        directive("time", t);
    }
    if let Some(m) = &opts.mem {
        directive("mem", m);
    }
    // SIGTERM 120 s before the time limit: ebda checkpoints at the next step.
    directive("signal", "B:TERM@120");
    s.push_str("#SBATCH --requeue\n");
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "cd {}\n",
        shell_quote(&workdir.display().to_string())
    ));
    let mut cmd = vec![shell_quote(&ebda.display().to_string())];
    if let Some(d) = &opts.device {
        cmd.push(format!("--device {}", shell_quote(d)));
    }
    cmd.push(format!("--threads {}", opts.cpus_per_task.max(1)));
    cmd.push(format!(
        "sweep run-one {} --index \"$SLURM_ARRAY_TASK_ID\"",
        shell_quote(&sweep_file.display().to_string())
    ));
    // `exec`: the batch script's process becomes ebda, which receives the
    // signal slurm sends before a time limit or a preemption.
    s.push_str(&format!("exec {}\n", cmd.join(" ")));
    s
}
