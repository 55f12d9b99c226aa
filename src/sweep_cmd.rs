//! `ebda sweep`: a grid of runs from a sweep file, on this machine or as a
//! SLURM job array (grid expansion, names and status: `ebda-sweep`).

use crate::device::DeviceChoice;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ebda_sweep::{Run, RunStatus, SlurmOptions, Sweep};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// List the sweep's runs: index, status (pending, running, partial, done,
    /// failed) and run directory.
    Plan(PlanArgs),
    /// Run the sweep on this machine, N runs at a time: finished runs are
    /// skipped, partial ones resumed; exits non-zero listing failed runs.
    Run(RunArgs),
    /// Run run INDEX of the sweep (start, resume or skip): what a SLURM
    /// array task executes.
    RunOne(RunOneArgs),
    /// Write the sweep's SLURM job-array script (one array task per run);
    /// with --submit, submit it with sbatch and print the job id.
    Slurm(SlurmArgs),
}

/// Which of the sweep's runs a command acts on (both filters together).
#[derive(Args, Debug, Default)]
pub struct Select {
    /// Only these tasks (repeat or separate with commas), e.g. the tasks
    /// whose data this machine has.
    #[arg(long = "task", value_delimiter = ',')]
    tasks: Vec<String>,
    /// Only these methods (a report row or its first word, e.g. `ebda`).
    #[arg(long = "method", value_delimiter = ',')]
    methods: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Sweep file (JSON).
    file: PathBuf,
    #[command(flatten)]
    select: Select,
    /// One JSON object per run instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Sweep file (JSON).
    file: PathBuf,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    #[command(flatten)]
    select: Select,
}

#[derive(Args, Debug)]
pub struct RunOneArgs {
    /// Sweep file (JSON).
    file: PathBuf,
    /// The run's index in `ebda sweep plan` (SLURM: $SLURM_ARRAY_TASK_ID).
    #[arg(long)]
    index: usize,
}

#[derive(Args, Debug)]
pub struct SlurmArgs {
    /// Sweep file (JSON).
    file: PathBuf,
    /// A selection keeps the plan's indices (the array lists them).
    #[command(flatten)]
    select: Select,
    /// Partition (sbatch --partition).
    #[arg(long)]
    partition: Option<String>,
    /// Generic resources per run, e.g. gpu:1 (sbatch --gres).
    #[arg(long)]
    gres: Option<String>,
    /// Time limit per run, e.g. 04:00:00 (sbatch --time); SIGTERM 120 s before it makes the run checkpoint.
    #[arg(long)]
    time: Option<String>,
    /// CPUs per run (sbatch --cpus-per-task; also the run's --threads).
    #[arg(long, default_value_t = 1)]
    cpus: usize,
    /// Memory per run, e.g. 16G (sbatch --mem).
    #[arg(long)]
    mem: Option<String>,
    /// At most this many runs at once (the array's %K).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Script path (default: OUT/.sweep/sweep.sbatch).
    #[arg(long)]
    script: Option<PathBuf>,
    /// Submit with sbatch and print the job id.
    #[arg(long)]
    submit: bool,
}

pub fn run(cmd: &SweepCommand, device: DeviceChoice, threads: Option<u16>) -> Result<()> {
    match cmd {
        SweepCommand::Plan(a) => plan(a),
        SweepCommand::Run(a) => run_all(a, device, threads),
        SweepCommand::RunOne(a) => run_one(a, device, threads),
        SweepCommand::Slurm(a) => slurm(a, device),
    }
}

fn load(file: &Path) -> Result<Sweep> {
    Ok(Sweep::load(file)?)
}

fn plan(a: &PlanArgs) -> Result<()> {
    let sweep = load(&a.file)?;
    let runs = sweep.select(&a.select.tasks, &a.select.methods)?;
    let mut counts = std::collections::BTreeMap::new();
    for run in &runs {
        let status = sweep.status(run);
        *counts.entry(status.word()).or_insert(0usize) += 1;
        if a.json {
            let mut v = serde_json::to_value(run)?;
            v["status"] = status.word().into();
            match &status {
                RunStatus::Done { target_acc } => v["target_acc"] = (*target_acc).into(),
                RunStatus::Partial { iteration } => v["iteration"] = (*iteration).into(),
                RunStatus::Failed { reason } | RunStatus::Diverged { reason } => {
                    v["reason"] = reason.clone().into()
                }
                _ => {}
            }
            println!("{v}");
        } else {
            let detail = match &status {
                RunStatus::Done { target_acc } => format!("target acc {:.2}%", target_acc * 100.0),
                RunStatus::Partial { iteration: Some(i) } => format!("checkpoint at iteration {i}"),
                RunStatus::Failed { reason } | RunStatus::Diverged { reason } => {
                    reason.lines().next().unwrap_or("").to_string()
                }
                _ => String::new(),
            };
            println!(
                "{:>4}  {:<8} {}  {}",
                run.index,
                status.word(),
                run.dir.display(),
                detail
            );
        }
    }
    if !a.json {
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let of = if runs.len() == sweep.runs.len() {
            String::new()
        } else {
            format!(" (of {})", sweep.runs.len())
        };
        println!("{} runs{of}: {}", runs.len(), summary.join(", "));
    }
    Ok(())
}

/// The `ebda` arguments that start or continue `run`, or `None` when it is
/// finished, diverged (rerunning gives the same) or held by another process.
fn train_args(sweep: &Sweep, run: &Run) -> Result<Option<Vec<String>>> {
    let status = sweep.status(run);
    if matches!(
        status,
        RunStatus::Done { .. } | RunStatus::Running | RunStatus::Diverged { .. }
    ) {
        return Ok(None);
    }
    let mut args = vec!["train".to_string(), "--no-progress".into()];
    if run.dir.join("checkpoints/latest.json").is_file() {
        args.extend(["--resume".into(), run.dir.display().to_string()]);
        return Ok(Some(args));
    }
    // A directory without a checkpoint (a start that failed or was killed
    // before its first checkpoint) is this sweep's own: start it afresh.
    if run.dir.exists() {
        std::fs::remove_dir_all(&run.dir)
            .with_context(|| format!("cannot clear {}", run.dir.display()))?;
    }
    args.extend([
        "--config".into(),
        run.config.display().to_string(),
        "--out".into(),
        run.dir.display().to_string(),
    ]);
    for s in &run.sets {
        args.extend(["--set".into(), s.clone()]);
    }
    Ok(Some(args))
}

fn ebda_command(device: DeviceChoice, threads: u16, args: &[String]) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the ebda executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--device")
        .arg(device.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .args(args);
    Ok(cmd)
}

fn run_one(a: &RunOneArgs, device: DeviceChoice, threads: Option<u16>) -> Result<()> {
    let sweep = load(&a.file)?;
    let Some(run) = sweep.runs.get(a.index) else {
        bail!(
            "{}: run index {} is out of range (the sweep has {} runs, 0–{})",
            a.file.display(),
            a.index,
            sweep.runs.len(),
            sweep.runs.len().saturating_sub(1)
        );
    };
    let Some(args) = train_args(&sweep, run)? else {
        eprintln!(
            "run {} {}: {} — nothing to do",
            run.index,
            run.name,
            sweep.status(run).word()
        );
        return Ok(());
    };
    eprintln!("run {} {}: ebda {}", run.index, run.name, args.join(" "));
    let mut cmd = ebda_command(device, threads.unwrap_or(1), &args)?;
    // Replace this process, so the signals a scheduler sends (SIGTERM before
    // a time limit or on preemption) reach the trainer directly.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(err).context("cannot start ebda train")
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status().context("cannot start ebda train")?;
        if !status.success() {
            bail!("run {} failed: {status}", run.name);
        }
        Ok(())
    }
}

struct Active {
    run: usize,
    child: Child,
}

fn run_all(a: &RunArgs, device: DeviceChoice, threads: Option<u16>) -> Result<()> {
    let sweep = load(&a.file)?;
    let jobs = a.jobs.max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = threads.unwrap_or_else(|| (cores / jobs).clamp(1, u16::MAX as usize) as u16);
    let logs = sweep.meta_dir().join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let selected = sweep.select(&a.select.tasks, &a.select.methods)?;
    let n = selected.len();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let (mut done, mut skipped) = (0usize, Vec::new());
    let mut failed: Vec<(usize, String)> = Vec::new();
    for run in selected {
        match sweep.status(run) {
            RunStatus::Done { .. } => done += 1,
            RunStatus::Running => skipped.push(run.index),
            RunStatus::Diverged { reason } => {
                failed.push((run.index, format!("{} ({reason})", run.name)))
            }
            _ => queue.push_back(run.index),
        }
    }
    let of = if n == sweep.runs.len() {
        String::new()
    } else {
        format!(" (selected of {})", sweep.runs.len())
    };
    eprintln!(
        "sweep {}: {n} runs{of}, {done} done, {} to run ({jobs} at a time, {threads} threads each){}",
        a.file.display(),
        queue.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(", {} held by other processes", skipped.len())
        }
    );
    let mut active: Vec<Active> = Vec::new();
    loop {
        while active.len() < jobs {
            let Some(i) = queue.pop_front() else { break };
            let run = &sweep.runs[i];
            let Some(args) = train_args(&sweep, run)? else {
                continue;
            };
            let _ = std::fs::remove_file(sweep.failure_path(run));
            let log_path = sweep.log_path(run);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .with_context(|| format!("cannot open {}", log_path.display()))?;
            let child = ebda_command(device, threads, &args)?
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("cannot start ebda train")?;
            let verb = if args.iter().any(|x| x == "--resume") {
                "resume"
            } else {
                "start "
            };
            eprintln!("{verb} [{i}] {}", run.name);
            active.push(Active { run: i, child });
        }
        if active.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut k = 0;
        while k < active.len() {
            let Some(status) = active[k].child.try_wait()? else {
                k += 1;
                continue;
            };
            let a_run = active.swap_remove(k);
            let run = &sweep.runs[a_run.run];
            if status.success() {
                done += 1;
                let acc = match sweep.status(run) {
                    RunStatus::Done { target_acc } => {
                        format!("target acc {:.2}%", target_acc * 100.0)
                    }
                    other => other.word().to_string(),
                };
                eprintln!(
                    "done  [{}] {} ({acc}) — {done}/{n} done, {} failed, {} running, {} queued",
                    run.index,
                    run.name,
                    failed.len(),
                    active.len(),
                    queue.len()
                );
            } else {
                let tail = log_tail(&sweep.log_path(run), 5);
                let reason = format!(
                    "exit {status}; last lines of {}:\n{tail}",
                    sweep.log_path(run).display()
                );
                if let Some(dir) = sweep.failure_path(run).parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(sweep.failure_path(run), &reason)?;
                eprintln!("FAIL  [{}] {}: {reason}", run.index, run.name);
                failed.push((run.index, run.name.clone()));
            }
        }
    }
    if !failed.is_empty() || !skipped.is_empty() {
        let mut msg = String::new();
        if !failed.is_empty() {
            msg.push_str(&format!("{} of {n} runs failed:", failed.len()));
            for (i, name) in &failed {
                msg.push_str(&format!(
                    "\n  [{i}] {name} (log: {})",
                    sweep.log_path(&sweep.runs[*i]).display()
                ));
            }
        }
        if !skipped.is_empty() {
            msg.push_str(&format!(
                "\n{} runs were held by other processes and not run: {:?}",
                skipped.len(),
                skipped
            ));
        }
        bail!("{msg}");
    }
    eprintln!("sweep {}: all {n} runs done", a.file.display());
    Ok(())
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn slurm(a: &SlurmArgs, device: DeviceChoice) -> Result<()> {
    let sweep = load(&a.file)?;
    let workdir = std::env::current_dir().context("cannot read the working directory")?;
    let exe = std::env::current_exe().context("cannot find the ebda executable")?;
    let stem = a
        .file
        .file_stem()
        .map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
    let opts = SlurmOptions {
        job_name: format!("ebda-{stem}"),
        partition: a.partition.clone(),
        gres: a.gres.clone(),
        time: a.time.clone(),
        cpus_per_task: a.cpus,
        mem: a.mem.clone(),
        concurrency: a.concurrency,
        device: (device != DeviceChoice::Auto).then(|| device.to_string()),
    };
    let indices: Vec<usize> = sweep
        .select(&a.select.tasks, &a.select.methods)?
        .iter()
        .map(|r| r.index)
        .collect();
    let text = ebda_sweep::slurm_script(&sweep, &indices, &opts, &exe, &workdir, &a.file);
    let script = a
        .script
        .clone()
        .unwrap_or_else(|| sweep.meta_dir().join("sweep.sbatch"));
    for dir in [script.parent(), Some(&sweep.meta_dir().join("slurm"))]
        .into_iter()
        .flatten()
    {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    std::fs::write(&script, &text).with_context(|| format!("cannot write {}", script.display()))?;
    eprintln!(
        "{}: a job array of {} runs (array task i = run i of `ebda sweep plan {}`)",
        script.display(),
        indices.len(),
        a.file.display()
    );
    if !a.submit {
        println!("{}", script.display());
        return Ok(());
    }
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script)
        .output()
        .context("cannot run sbatch (is SLURM installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout);
    let id = id.trim().split(';').next().unwrap_or("").to_string();
    println!("{id}");
    Ok(())
}
