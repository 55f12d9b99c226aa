//! `ebda train` and `ebda eval`.

use anyhow::{Context, Result, bail};
use clap::Args;
use ebda_train::{ExperimentConfig, RunData, RunOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Experiment config (JSON); omitted keys take their defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one key (repeatable), e.g. --set method=dann --set seed=1.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run directory (default: runs/<task>-<method>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its latest checkpoint (its config.json is used).
    #[arg(long, conflicts_with_all = ["config", "sets", "out"])]
    resume: Option<PathBuf>,
    /// Stop (with a checkpoint) after this many iterations; continue later with --resume.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Training batches prepared ahead per domain on a worker thread, while
    /// the current step runs (default: 2 for image files, 0 for data held in
    /// memory). Results do not depend on it.
    #[arg(long, value_name = "N")]
    prefetch: Option<usize>,
    /// Write every step's input batches, schedule values, dropout-generator
    /// state and step statistics into this directory, to replay the steps in
    /// another framework (`experiments/reference/replay.py`). Slow: for a few
    /// steps (with --stop-after).
    #[arg(long, value_name = "DIR")]
    trace: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Do not draw the run's figures into plots/ at the end (`ebda report
    /// --plots` draws them later from the run directory).
    #[arg(long)]
    no_plots: bool,
}

impl TrainArgs {
    /// The resolved config and the run directory.
    pub fn resolve(&self) -> Result<(ExperimentConfig, PathBuf)> {
        if let Some(dir) = &self.resume {
            let cfg = ExperimentConfig::load_run(dir)
                .with_context(|| format!("cannot resume {}", dir.display()))?;
            return Ok((cfg, dir.clone()));
        }
        let cfg = ExperimentConfig::load(self.config.as_deref(), &self.sets)?;
        let out = self.out.clone().unwrap_or_else(|| {
            PathBuf::from("runs").join(format!(
                "{}-{}-seed{}",
                cfg.task,
                cfg.method.name(),
                cfg.seed
            ))
        });
        Ok((cfg, out))
    }
}

pub fn train(
    args: &TrainArgs,
    cfg: &ExperimentConfig,
    run_dir: &Path,
    device: &candle_core::Device,
) -> Result<()> {
    let data = RunData::load(cfg).context("loading the datasets")?;
    tracing::info!(
        "{} {} seed {}: {} source, {} target, {} target-test samples on {:?}; run dir {}",
        cfg.task,
        cfg.method.name(),
        cfg.seed,
        data.source.len(),
        data.target.len(),
        data.target_test.len(),
        device.location(),
        run_dir.display()
    );
    let opts = RunOptions {
        resume: args.resume.is_some(),
        progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_after: args.stop_after,
        prefetch: args.prefetch,
        command: std::env::args().collect(),
        stop: Some(stop_on_signals()?),
        trace: args.trace.clone(),
    };
    let summary = ebda_train::train(cfg, &data, device, run_dir, &opts)?;
    if !args.no_plots && summary.complete().is_some() {
        draw_plots(run_dir);
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// SIGINT and SIGTERM: the first sets the returned flag to the signal's
/// number (the trainer checkpoints at the next step boundary and stops with
/// exit status 128 + signal); a second one exits at once with that status.
fn stop_on_signals() -> Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let signal = Arc::new(AtomicUsize::new(0));
    let armed = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the shutdown test runs before this signal arms it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, armed.clone())
            .and_then(|_| signal_hook::flag::register_usize(sig, signal.clone(), sig as usize))
            .and_then(|_| signal_hook::flag::register(sig, armed.clone()))
            .context("cannot install the signal handlers")?;
    }
    Ok(signal)
}

/// Draws a finished run's figures into its `plots/`. A figure that cannot be
/// drawn must not cost the run: it is logged, and `ebda report --plots` can
/// draw it again from the run directory.
pub fn draw_plots(run_dir: &Path) {
    let order: Vec<String> = ebda_train::methods::NAMES
        .iter()
        .map(|s| s.to_string())
        .collect();
    match ebda_report::run_plots(run_dir, &order) {
        Ok(files) => tracing::info!(
            "{} figure files in {}",
            files.len(),
            run_dir.join("plots").display()
        ),
        Err(e) => tracing::warn!("plots for {} not drawn: {e}", run_dir.display()),
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The run directory.
    #[arg(long)]
    run: PathBuf,
    /// A checkpoint directory (default: the run's latest).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Where to write the per-sample target CSV (default: RUN/eval/target.csv).
    #[arg(long)]
    csv: Option<PathBuf>,
}

pub fn eval(args: &EvalArgs, device: &candle_core::Device) -> Result<()> {
    let cfg = ExperimentConfig::load_run(&args.run)?;
    let ckpt = match &args.checkpoint {
        Some(c) => {
            ebda_train::checkpoint::verify(c)?;
            c.clone()
        }
        None => {
            let (ckpt, skipped) =
                ebda_train::checkpoint::latest_intact(&args.run.join("checkpoints"))?
                    .with_context(|| format!("{}: no checkpoint", args.run.display()))?;
            for damaged in skipped {
                eprintln!("warning: {damaged}; using {}", ckpt.display());
            }
            ckpt
        }
    };
    let (shared, method) = ebda_train::trainer::restore_models(&cfg, &ckpt, device)?;
    let data = RunData::load(&cfg)?;
    let input = &cfg.data.input;
    let bs = cfg.data.eval_batch_size;
    let state = ebda_train::checkpoint::read_state(&ckpt)?;
    println!(
        "run {} ({} {} seed {}), checkpoint at iteration {}",
        args.run.display(),
        cfg.task,
        cfg.method.name(),
        cfg.seed,
        state.iteration
    );
    let tgt = ebda_train::eval::evaluate(
        &shared,
        method.as_ref(),
        &data.target_test,
        input,
        bs,
        device,
    )?;
    if let Some(s) = &data.source_test {
        let src = ebda_train::eval::evaluate(&shared, method.as_ref(), s, input, bs, device)?;
        println!(
            "source test ({}): accuracy {:.2}% ({}/{})",
            s.name,
            src.accuracy() * 100.0,
            src.correct,
            src.n
        );
        if let Some(e) = src.mean_energy() {
            println!("  mean energy {e:.4}");
        }
        if let Some(a) = ebda_train::eval::domain_accuracy(&src, &tgt) {
            println!(
                "domain accuracy of the discriminator (source test vs target test): {:.2}%",
                a * 100.0
            );
        }
    }
    println!(
        "target test ({}): accuracy {:.2}% ({}/{})",
        data.target_test.name,
        tgt.accuracy() * 100.0,
        tgt.correct,
        tgt.n
    );
    if let Some(e) = tgt.mean_energy() {
        println!("  mean energy {e:.4}");
    }
    let k = cfg.model.classifier.num_classes;
    println!("target confusion matrix (rows: true class, columns: predicted):");
    print!("     ");
    for j in 0..k {
        print!("{j:>6}");
    }
    println!();
    for (i, row) in ebda_train::eval::confusion(&tgt, k).iter().enumerate() {
        print!("{i:>4} ");
        for v in row {
            print!("{v:>6}");
        }
        println!();
    }
    let csv = args
        .csv
        .clone()
        .unwrap_or_else(|| args.run.join("eval").join("target.csv"));
    if let Some(dir) = csv.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&csv).with_context(|| format!("cannot write {}", csv.display()))?,
    );
    writeln!(out, "index,label,prediction,correct,energy,domain_logit")?;
    for i in 0..tgt.n {
        let e = tgt
            .energies
            .as_ref()
            .map(|v| v[i].to_string())
            .unwrap_or_default();
        let d = tgt
            .domain_logits
            .as_ref()
            .map(|v| v[i].to_string())
            .unwrap_or_default();
        let (y, p) = (tgt.labels[i], tgt.predictions[i]);
        writeln!(out, "{i},{y},{p},{},{e},{d}", u8::from(y == p))?;
    }
    out.flush()?;
    println!(
        "per-sample target CSV (energy is a per-sample shift score): {}",
        csv.display()
    );
    if tgt.n == 0 {
        bail!("the target test set is empty");
    }
    Ok(())
}
