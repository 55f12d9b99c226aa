//! The training loop and the run directory it writes (DESIGN.md §3).
//!
//! ```text
//! runs/<name>/
//!   config.json     the resolved config
//!   manifest.json   versions, git revision, device, dataset file sha256s, seed
//!   metrics.jsonl   one JSON object per evaluation
//!   checkpoints/    see [`crate::checkpoint`]
//!   summary.json    last-iterate headline; oracle best-on-target labelled as such
//!   energies/       per-sample critic energies on the test sets at the first
//!                   and the last evaluation (methods with a critic)
//!   plots/          figures drawn from the above when the run ends
//! ```
//!
//! Training is counted in iterations. Every `eval_every` iterations (and at
//! the end) the model is evaluated on the target test set (and the source
//! test set), a line is appended to `metrics.jsonl`, and every
//! `checkpoint_every` iterations a checkpoint follows. A non-finite loss
//! stops the run with an error before anything is written, so the last
//! checkpoint stays the last good one.

use crate::checkpoint::{self, CheckpointParts, TrainerState, WindowState};
use crate::config::ExperimentConfig;
use crate::eval::{EvalResult, add_stats, evaluate};
use crate::methods::{Method, Shared, StepParams, build, stream_seed};
use crate::{Error, schedule};
use candle_core::{Device, Tensor};
use ebda_data::{Dataset, Loader};
use ebda_records::{Complete, EnergySnapshot, Manifest, MetricsLine, Selection, Summary, round6};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The datasets of a run.
#[derive(Clone)]
pub struct RunData {
    pub source: Arc<Dataset>,
    pub target: Arc<Dataset>,
    pub target_test: Arc<Dataset>,
    pub source_test: Option<Arc<Dataset>>,
}

impl RunData {
    /// Loads the datasets of `cfg` (in parallel).
    pub fn load(cfg: &ExperimentConfig) -> Result<Self, Error> {
        let d = &cfg.data;
        let at =
            |key: &'static str, hint: &'static str| move |error| Error::DataAt { key, error, hint };
        // Configs that leave source_test out get the MNIST test set.
        let default_test = d.source_test == crate::config::DataConfig::default().source_test;
        let test_hint = if default_test {
            " (data.source_test defaults to the MNIST test set; set it to null when the source domain has no test split to evaluate)"
        } else {
            ""
        };
        let ((source, target), (target_test, source_test)) = rayon::join(
            || {
                rayon::join(
                    || d.source.load().map_err(at("data.source", "")),
                    || d.target.load().map_err(at("data.target", "")),
                )
            },
            || {
                rayon::join(
                    || d.target_test.load().map_err(at("data.target_test", "")),
                    || {
                        d.source_test
                            .as_ref()
                            .map(|s| s.load().map_err(at("data.source_test", test_hint)))
                            .transpose()
                    },
                )
            },
        );
        Ok(Self {
            source: Arc::new(source?),
            target: Arc::new(target?),
            target_test: Arc::new(target_test?),
            source_test: source_test?.map(Arc::new),
        })
    }
}

/// How a run is started.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Continue from the run directory's latest checkpoint.
    pub resume: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Stop after this many iterations (checkpointing there), for a run that
    /// continues later with `resume`; `None` runs to the end.
    pub stop_after: Option<usize>,
    /// Training batches prepared ahead per domain on a worker thread;
    /// `None`: 2 for image files (decoding overlaps the step), 0 for data
    /// in memory. Results do not depend on it.
    pub prefetch: Option<usize>,
    /// The command line, for the manifest.
    pub command: Vec<String>,
    /// Set (to the signal's number) by a SIGINT / SIGTERM handler: the run
    /// writes a checkpoint at the next step boundary and stops with
    /// [`Error::Interrupted`]. `None`: no handler.
    pub stop: Option<Arc<AtomicUsize>>,
    /// Write every step's inputs into this directory for replaying the
    /// steps elsewhere (e.g. in PyTorch, `experiments/reference/replay.py`):
    /// `step-NNNNNNNN.safetensors` (`source.inputs`, `source.labels`,
    /// `target.inputs`, `target.labels`) and a line per step in
    /// `steps.jsonl` (iteration, schedule values, the dropout generator's
    /// state before the step, batch indices, step statistics). Slow (one
    /// device sync and a file per step): for a few steps.
    pub trace: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).expect("records serialize");
    checkpoint::write_atomic(path, text.as_bytes())
}

/// The commit this library was built from and whether the tree had
/// uncommitted changes (embedded by `build.rs`; `None` outside git).
pub fn code_revision() -> (Option<String>, Option<bool>) {
    let rev = option_env!("EBDA_GIT_REVISION").filter(|r| !r.is_empty());
    let dirty = option_env!("EBDA_GIT_DIRTY").and_then(|d| match d {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    });
    (rev.map(str::to_string), rev.and(dirty))
}

fn manifest(
    cfg: &ExperimentConfig,
    data: &RunData,
    device: &Device,
    opts: &RunOptions,
) -> Result<Manifest, Error> {
    let mut files = BTreeMap::new();
    for ds in [
        Some(&data.source),
        Some(&data.target),
        Some(&data.target_test),
        data.source_test.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        for f in &ds.files {
            let key = f.display().to_string();
            if let std::collections::btree_map::Entry::Vacant(slot) = files.entry(key) {
                slot.insert(ebda_data::sha256_file(f)?);
            }
        }
    }
    let counts: BTreeMap<String, usize> = [
        ("source", data.source.len()),
        ("target", data.target.len()),
        ("target_test", data.target_test.len()),
        (
            "source_test",
            data.source_test.as_ref().map_or(0, |d| d.len()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut weights = BTreeMap::new();
    match cfg.model.features.weights_file() {
        Some(w) => {
            weights.insert(w.to_string(), ebda_data::sha256_file(Path::new(w))?);
        }
        None if matches!(
            cfg.model.features.backbone,
            ebda_features::BackboneConfig::Resnet(_)
        ) =>
        {
            tracing::warn!(
                "the ResNet backbone starts from random initialisation: no weights file is configured (model.features.backbone.resnet.weights)"
            );
        }
        None => {}
    }
    let (git_revision, git_dirty) = code_revision();
    Ok(Manifest {
        ebda_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision,
        git_dirty,
        device: format!("{:?}", device.location()),
        cuda_compiled: cfg!(feature = "cuda"),
        threads: candle_core::utils::get_num_threads(),
        seed: cfg.seed,
        task: cfg.task.clone(),
        method: cfg.method.name().to_string(),
        dataset_files_sha256: files,
        dataset_sizes: counts,
        weights_sha256: weights,
        command: opts.command.clone(),
        cpu: Some(ebda_records::CpuInfo::detect()),
    })
}

/// Keeps the metrics lines of iterations `<= upto` (for a resumed run).
fn truncate_metrics(path: &Path, upto: usize) -> Result<(), Error> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["iteration"].as_u64())
                .is_some_and(|it| it as usize <= upto)
        })
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    checkpoint::write_atomic(path, out.as_bytes())
}

fn read_scalars(
    stats: &[(&'static str, Tensor)],
    n: usize,
) -> Result<BTreeMap<&'static str, f64>, Error> {
    let mut out = BTreeMap::new();
    for (name, t) in stats {
        let v = t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        out.insert(*name, v / n.max(1) as f64);
    }
    Ok(out)
}

/// Trains `cfg` on `data` into `run_dir`: [`Session::open`] (a fresh run
/// directory, or the state of its latest checkpoint), then per iteration a
/// step, and at log points, evaluations and checkpoints the matching
/// [`Session`] step; the summary at the end.
pub fn train(
    cfg: &ExperimentConfig,
    data: &RunData,
    device: &Device,
    run_dir: &Path,
    opts: &RunOptions,
) -> Result<Summary, Error> {
    let mut run = Session::open(cfg, data, device, run_dir, opts)?;
    let total = cfg.train.iterations;
    let end = opts.stop_after.map_or(total, |s| s.min(total));
    let log_every = cfg.train.eval_every.clamp(1, 50);
    let bar = progress_bar(cfg, run.start, opts.progress);
    let mut window = Window::resumed(run.resumed_window.take());
    let mut last_target_acc = None;
    for it in run.start..end {
        // A step boundary: everything of iteration `it − 1` is written.
        if let Some(signal) = opts.stop.as_ref().map(|s| s.load(Ordering::SeqCst))
            && signal != 0
        {
            bar.abandon();
            let checkpoint = run.checkpoint(it, Some(&window))?;
            return Err(Error::Interrupted {
                signal: signal as i32,
                iteration: it,
                checkpoint,
            });
        }
        let sp = run.step(it, &mut window)?;
        let done = it + 1;
        let eval_now = done % cfg.train.eval_every == 0 || done == total;
        if !(done % log_every == 0 || eval_now || done == end) {
            continue;
        }
        // Step statistics are read on the host (one device sync) only here.
        let means = match run.log_point(done, &window) {
            Ok(m) => m,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        bar.set_position(done as u64);
        let acc_msg = last_target_acc
            .map(|a: f64| format!(" target acc {:.2}%", a * 100.0))
            .unwrap_or_default();
        bar.set_message(format!(
            "loss {:.4}{acc_msg}",
            means.get("loss").copied().unwrap_or(f64::NAN)
        ));
        if !eval_now {
            if done == end {
                return Err(Error::Run(format!(
                    "stop_after {end} is not an evaluation point (a multiple of train.eval_every = {})",
                    cfg.train.eval_every
                )));
            }
            continue;
        }
        last_target_acc = Some(run.evaluate(done, sp, &means, &mut window)?);
        if done % cfg.train.checkpoint_every == 0 || done == total || done == end {
            run.checkpoint(done, None)?;
        }
        window.restart();
    }
    bar.finish_and_clear();
    if end < total {
        return Ok(Summary::Stopped {
            iteration: end as u64,
        });
    }
    run.finish()
}

/// Appends step `it` to the trace in `dir` ([`RunOptions::trace`]).
fn write_trace(
    dir: &Path,
    it: usize,
    sp: StepParams,
    rng: &ebda_nn::RngState,
    src: &ebda_data::Batch,
    tgt: Option<&ebda_data::Batch>,
    stats: &[(&'static str, Tensor)],
) -> Result<(), Error> {
    let mut tensors = std::collections::HashMap::new();
    for (name, batch) in [("source", Some(src)), ("target", tgt)] {
        if let Some(b) = batch {
            tensors.insert(format!("{name}.inputs"), b.inputs.clone());
            tensors.insert(format!("{name}.labels"), b.labels.clone());
        }
    }
    let path = dir.join(format!("step-{it:08}.safetensors"));
    candle_core::safetensors::save(&tensors, &path).map_err(|e| {
        Error::Run(format!(
            "cannot write the trace file {}: {e}",
            path.display()
        ))
    })?;
    crate::checkpoint::set_created_permissions(&path)?;
    let mut values = BTreeMap::new();
    for (name, t) in stats {
        values.insert(
            *name,
            t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?,
        );
    }
    /// One line of `steps.jsonl` (written through the serializer: the
    /// generator's state is a `u128`, which `serde_json::Value` cannot hold).
    #[derive(serde::Serialize)]
    struct Line<'a> {
        iteration: usize,
        p: f64,
        lr: f64,
        lambda: f64,
        rng_before: &'a ebda_nn::RngState,
        source_indices: &'a [usize],
        target_indices: Option<&'a [usize]>,
        stats: BTreeMap<&'static str, f64>,
    }
    let line = serde_json::to_string(&Line {
        iteration: it,
        p: sp.p,
        lr: sp.lr,
        lambda: sp.lambda,
        rng_before: rng,
        source_indices: &src.indices,
        target_indices: tgt.map(|b| b.indices.as_slice()),
        stats: values,
    })
    .expect("trace lines serialize");
    let path = dir.join("steps.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    writeln!(file, "{line}").map_err(io(&path))
}

/// The step statistics of one evaluation interval: device-side sums, the
/// steps they hold, and the interval's training time.
struct Window {
    sums: Vec<(&'static str, Tensor)>,
    steps: usize,
    started: Instant,
    /// Sums of the steps before an interruption, added to `sums` after the
    /// first step of the resumed process (float addition commutes, so the
    /// interval's sums equal an uninterrupted run's bit for bit).
    restored: Vec<(String, f64)>,
}

impl Window {
    fn new() -> Self {
        Self {
            sums: Vec::new(),
            steps: 0,
            started: Instant::now(),
            restored: Vec::new(),
        }
    }

    fn resumed(state: Option<WindowState>) -> Self {
        let mut w = Self::new();
        if let Some(s) = state {
            w.steps = s.steps;
            w.restored = s.sums;
        }
        w
    }

    fn restart(&mut self) {
        *self = Self::new();
    }

    fn merge_restored(&mut self) -> Result<(), Error> {
        if self.restored.is_empty() {
            return Ok(());
        }
        for (name, saved) in std::mem::take(&mut self.restored) {
            let Some((_, sum)) = self.sums.iter_mut().find(|(n, _)| *n == name) else {
                return Err(Error::Run(format!(
                    "the checkpoint's partial interval holds statistic {name:?}, which this method does not produce"
                )));
            };
            let saved = Tensor::new(saved, sum.device())?
                .to_dtype(sum.dtype())?
                .reshape(sum.shape())?;
            *sum = (&*sum + saved)?;
        }
        Ok(())
    }

    /// The sums on the host, for a checkpoint written mid-interval.
    fn state(&self) -> Result<WindowState, Error> {
        let mut sums = self
            .sums
            .iter()
            .map(|(n, t)| {
                let v = t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                Ok((n.to_string(), v))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        sums.extend(self.restored.iter().cloned());
        Ok(WindowState {
            steps: self.steps,
            sums,
        })
    }
}

fn progress_bar(cfg: &ExperimentConfig, start: usize, visible: bool) -> indicatif::ProgressBar {
    let bar = if visible {
        indicatif::ProgressBar::new(cfg.train.iterations as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} {wide_bar} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{} {}", cfg.task, cfg.method.name()));
    bar.set_position(start as u64);
    bar
}

/// A run in progress: its models, loaders and bookkeeping.
struct Session<'a> {
    cfg: &'a ExperimentConfig,
    data: &'a RunData,
    device: &'a Device,
    run_dir: &'a Path,
    ckpt_dir: PathBuf,
    metrics_path: PathBuf,
    shared: Shared,
    method: Box<dyn Method>,
    source: Loader,
    target: Loader,
    /// The first iteration this process trains.
    start: usize,
    /// Training seconds and wall seconds before this process.
    train_seconds: f64,
    wall_before: f64,
    opened: Instant,
    last_ckpt: Option<PathBuf>,
    /// The statistics of a partial evaluation interval restored from a
    /// checkpoint written on a signal.
    resumed_window: Option<WindowState>,
    /// Held while the session lives: one process per run directory.
    _lock: std::fs::File,
    /// Where each step's inputs are written ([`RunOptions::trace`]).
    trace: Option<PathBuf>,
}

/// Takes the run directory's lock (`RUN/lock`, an advisory file lock the
/// system releases when the process ends, however it ends), or says which
/// process holds it.
fn lock_run_dir(run_dir: &Path) -> Result<std::fs::File, Error> {
    use std::io::{Read, Seek, Write};
    let path = run_dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(Error::Run(format!(
                "{} is in use by another ebda process ({}); one process per run directory",
                run_dir.display(),
                match holder.trim() {
                    "" => "its lock is held".to_string(),
                    pid => format!("pid {pid}, holding {}", path.display()),
                }
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
    }
    file.set_len(0).map_err(io(&path))?;
    file.rewind().map_err(io(&path))?;
    write!(file, "{}", std::process::id()).map_err(io(&path))?;
    Ok(file)
}

impl<'a> Session<'a> {
    /// Builds the models and loaders of `cfg`; writes a fresh run's
    /// `config.json` and `manifest.json`, or restores a resumed run from
    /// its latest checkpoint.
    fn open(
        cfg: &'a ExperimentConfig,
        data: &'a RunData,
        device: &'a Device,
        run_dir: &'a Path,
        opts: &RunOptions,
    ) -> Result<Self, Error> {
        let opened = Instant::now();
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        let lock = lock_run_dir(run_dir)?;
        let (shared, method) = build(cfg, device)?;
        let d = &cfg.data;
        let loader = |set: &Arc<Dataset>, stream: u64| {
            let ahead = opts.prefetch.unwrap_or(match set.samples {
                ebda_data::Samples::Files { .. } => 2,
                _ => 0,
            });
            Loader::new(
                set.clone(),
                d.input.clone(),
                d.batch_size,
                stream_seed(cfg.seed, stream),
                d.sampling,
            )
            .map(|l| l.prefetch(ahead))
        };
        let mut run = Session {
            cfg,
            data,
            device,
            run_dir,
            ckpt_dir: run_dir.join("checkpoints"),
            metrics_path: run_dir.join("metrics.jsonl"),
            shared,
            method,
            source: loader(&data.source, 10)?,
            target: loader(&data.target, 11)?,
            start: 0,
            train_seconds: 0.0,
            wall_before: 0.0,
            opened,
            last_ckpt: None,
            resumed_window: None,
            _lock: lock,
            trace: opts.trace.clone(),
        };
        if let Some(dir) = &run.trace {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        if opts.resume {
            run.resume()?;
        } else {
            run.create(opts)?;
        }
        Ok(run)
    }

    /// A fresh run: refuses a directory that holds one, writes the config
    /// and the manifest.
    fn create(&self, opts: &RunOptions) -> Result<(), Error> {
        if self.metrics_path.exists() || self.ckpt_dir.exists() {
            return Err(Error::Run(format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                self.run_dir.display()
            )));
        }
        // Through a Value: keys sorted, as every record here.
        let config = serde_json::to_value(self.cfg).expect("config serializes");
        write_json(&self.run_dir.join("config.json"), &config)?;
        write_json(
            &self.run_dir.join("manifest.json"),
            &manifest(self.cfg, self.data, self.device, opts)?,
        )
    }

    /// Restores models, optimizers, samplers and RNG from the latest
    /// checkpoint, after checking the run was made with this config (older
    /// layouts migrated), and drops metrics lines past it.
    fn resume(&mut self) -> Result<(), Error> {
        let saved_path = self.run_dir.join("config.json");
        let mut saved: Value =
            serde_json::from_slice(&std::fs::read(&saved_path).map_err(io(&saved_path))?)
                .map_err(|e| Error::Run(format!("{}: {e}", saved_path.display())))?;
        // A run written before methods and backbones owned their settings
        // resumes too: its config is migrated, then resolved (defaults
        // explicit) before the comparison.
        crate::config::migrate_legacy(&mut saved);
        let saved: ExperimentConfig = ebda_config::from_value(saved)
            .map_err(|e| Error::Run(format!("{}: {e}", saved_path.display())))?;
        let as_value = |c: &ExperimentConfig| serde_json::to_value(c).expect("config serializes");
        if as_value(&saved) != as_value(self.cfg) {
            return Err(Error::Run(format!(
                "{}: the run was made with a different config; resume with the same config (see its config.json)",
                self.run_dir.display()
            )));
        }
        let Some((ckpt, skipped)) = checkpoint::latest_intact(&self.ckpt_dir)? else {
            return Err(Error::Run(format!(
                "{}: no checkpoint to resume from",
                self.ckpt_dir.display()
            )));
        };
        for damaged in &skipped {
            tracing::warn!("{damaged}; falling back to {}", ckpt.display());
            eprintln!("warning: {damaged}; falling back to {}", ckpt.display());
        }
        let state = checkpoint::read_state(&ckpt)?;
        let device = self.device;
        checkpoint::load_vars(&self.shared.vars, &ckpt.join("shared.safetensors"), device)?;
        for (name, map) in self.method.var_maps() {
            checkpoint::load_vars(map, &ckpt.join(format!("{name}.safetensors")), device)?;
        }
        for (name, opt) in self.method.optimizers() {
            let tensors = checkpoint::read_optimizer(&ckpt, name, device)?;
            let steps = state.optimizer_steps.get(name).cloned().unwrap_or_default();
            opt.restore(tensors, steps)?;
        }
        self.source.restore(state.source_sampler)?;
        self.target.restore(state.target_sampler)?;
        self.shared.rng.restore(&state.rng);
        self.start = state.iteration;
        self.train_seconds = state.train_seconds;
        self.wall_before = state.wall_seconds;
        truncate_metrics(&self.metrics_path, self.start)?;
        self.last_ckpt = Some(ckpt.clone());
        self.resumed_window = state.window.clone();
        tracing::info!(
            "resumed {} at iteration {} from {}",
            self.run_dir.display(),
            self.start,
            ckpt.display()
        );
        Ok(())
    }

    fn images_per_iter(&self) -> usize {
        self.cfg.data.batch_size * if self.method.uses_target() { 2 } else { 1 }
    }

    /// One training step of iteration `it`; its statistics join `window`.
    fn step(&mut self, it: usize, window: &mut Window) -> Result<StepParams, Error> {
        let cfg = self.cfg;
        let p = schedule::progress(it, cfg.train.iterations);
        let sp = StepParams {
            p,
            lr: schedule::lr_at(&cfg.optim, p),
            lambda: schedule::lambda(cfg.adapt.lambda_max, cfg.adapt.gamma, p),
        };
        let rng_before = self.trace.is_some().then(|| self.shared.rng.state());
        let src = self.source.next_batch(self.device)?;
        let tgt = if self.method.uses_target() {
            Some(self.target.next_batch(self.device)?)
        } else {
            None
        };
        let stats = self.method.step(&self.shared, &src, tgt.as_ref(), sp)?;
        if let (Some(dir), Some(rng)) = (&self.trace, rng_before) {
            write_trace(dir, it, sp, &rng, &src, tgt.as_ref(), &stats)?;
        }
        add_stats(&mut window.sums, stats)?;
        window.merge_restored()?;
        window.steps += 1;
        Ok(sp)
    }

    /// The interval's mean statistics; a non-finite one stops the run with
    /// an error (recorded in `summary.json` as diverged) before anything
    /// else is written, so the last checkpoint stays the last good one.
    fn log_point(
        &self,
        done: usize,
        window: &Window,
    ) -> Result<BTreeMap<&'static str, f64>, Error> {
        let means = read_scalars(&window.sums, window.steps)?;
        if let Some((name, v)) = means.iter().find(|(_, v)| !v.is_finite()) {
            let err = Error::NonFinite {
                iteration: done,
                what: name.to_string(),
                value: *v,
                last_checkpoint: self.last_ckpt.clone(),
            };
            // Recorded for reports, which flag it instead of averaging it.
            let record = Summary::Diverged {
                iteration: done as u64,
                error: err.to_string(),
            };
            write_json(&self.run_dir.join("summary.json"), &record)?;
            return Err(err);
        }
        Ok(means)
    }

    /// Evaluates at `done`, appends the metrics line (and the energy
    /// snapshots of the first and last evaluation); returns the target
    /// accuracy.
    fn evaluate(
        &mut self,
        done: usize,
        sp: StepParams,
        means: &BTreeMap<&'static str, f64>,
        window: &mut Window,
    ) -> Result<f64, Error> {
        let cfg = self.cfg;
        let total = cfg.train.iterations;
        let seg_seconds = window.started.elapsed().as_secs_f64();
        self.train_seconds += seg_seconds;
        let (line, energies) = evaluation_line(
            cfg,
            &self.shared,
            self.method.as_ref(),
            self.data,
            self.device,
            done,
            sp,
            means,
            window.steps,
            seg_seconds,
            self.images_per_iter(),
        )?;
        if let Some(snap) =
            energies.filter(|_| done == cfg.train.eval_every.min(total) || done == total)
        {
            write_energies(self.run_dir, &snap)?;
        }
        tracing::info!(
            "{} {} seed {} it {done}/{total}: target acc {:.2}%{} loss {:.4}",
            cfg.task,
            cfg.method.name(),
            cfg.seed,
            line.target_acc * 100.0,
            line.source_acc
                .map(|a| format!(", source acc {:.2}%", a * 100.0))
                .unwrap_or_default(),
            means.get("loss").copied().unwrap_or(f64::NAN)
        );
        let path = &self.metrics_path;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io(path))?;
        writeln!(f, "{}", line.to_json_line()).map_err(io(path))?;
        Ok(line.target_acc)
    }

    /// Writes a checkpoint at `done` (atomically; older ones pruned); with
    /// `window`, the statistics of the evaluation interval in progress too
    /// (a stop between evaluations). Returns its directory.
    fn checkpoint(&mut self, done: usize, window: Option<&Window>) -> Result<PathBuf, Error> {
        let window_state = window
            .filter(|w| w.steps > 0)
            .map(Window::state)
            .transpose()?;
        let partial_seconds = window.map_or(0.0, |w| w.started.elapsed().as_secs_f64());
        let mut optimizers = Vec::new();
        let mut steps = BTreeMap::new();
        for (name, opt) in self.method.optimizers() {
            let (tensors, s) = opt.state();
            optimizers.push((name, tensors));
            steps.insert(name.to_string(), s);
        }
        let mut var_maps = vec![("shared", &self.shared.vars)];
        var_maps.extend(self.method.var_maps());
        let state = TrainerState {
            iteration: done,
            source_sampler: self.source.state(),
            target_sampler: self.target.state(),
            rng: self.shared.rng.state(),
            optimizer_steps: steps,
            train_seconds: self.train_seconds + partial_seconds,
            wall_seconds: self.wall_before + self.opened.elapsed().as_secs_f64(),
            window: window_state,
        };
        let dir = checkpoint::save(
            &self.ckpt_dir,
            CheckpointParts {
                var_maps,
                optimizers,
            },
            &state,
            self.cfg.train.keep_checkpoints,
        )?;
        self.last_ckpt = Some(dir.clone());
        Ok(dir)
    }

    /// Writes and returns the finished run's summary.
    fn finish(self) -> Result<Summary, Error> {
        let wall = self.wall_before + self.opened.elapsed().as_secs_f64();
        let summary = summarize(
            self.cfg,
            &self.metrics_path,
            wall,
            self.train_seconds,
            self.images_per_iter(),
        )?;
        write_json(&self.run_dir.join("summary.json"), &summary)?;
        Ok(summary)
    }
}

/// Builds the models of `cfg` and fills them from checkpoint directory `ckpt`.
pub fn restore_models(
    cfg: &ExperimentConfig,
    ckpt: &Path,
    device: &Device,
) -> Result<(Shared, Box<dyn Method>), Error> {
    let (shared, method) = build(cfg, device)?;
    checkpoint::load_vars(&shared.vars, &ckpt.join("shared.safetensors"), device)?;
    for (name, map) in method.var_maps() {
        checkpoint::load_vars(map, &ckpt.join(format!("{name}.safetensors")), device)?;
    }
    Ok((shared, method))
}

#[allow(clippy::too_many_arguments)]
fn evaluation_line(
    cfg: &ExperimentConfig,
    shared: &Shared,
    method: &dyn Method,
    data: &RunData,
    device: &Device,
    iteration: usize,
    sp: StepParams,
    train_means: &BTreeMap<&'static str, f64>,
    seg_iters: usize,
    seg_seconds: f64,
    images_per_iter: usize,
) -> Result<(MetricsLine, Option<EnergySnapshot>), Error> {
    let input = &cfg.data.input;
    let bs = cfg.data.eval_batch_size;
    let tgt: EvalResult = evaluate(shared, method, &data.target_test, input, bs, device)?;
    let src: Option<EvalResult> = data
        .source_test
        .as_ref()
        .map(|s| evaluate(shared, method, s, input, bs, device))
        .transpose()?;
    let mut line = MetricsLine {
        iteration: iteration as u64,
        progress: round6(iteration as f64 / cfg.train.iterations as f64),
        lr: round6(sp.lr),
        lambda: round6(sp.lambda),
        target_acc: round6(tgt.accuracy()),
        feat_norm_target_test: round6(tgt.mean_norm),
        train: train_means
            .iter()
            .map(|(k, v)| (k.to_string(), round6(*v)))
            .collect(),
        images_per_s: round6(images_per_iter as f64 * seg_iters as f64 / seg_seconds.max(1e-9)),
        ..MetricsLine::default()
    };
    if let Some(s) = &src {
        line.source_acc = Some(round6(s.accuracy()));
        line.feat_norm_source_test = Some(round6(s.mean_norm));
        // The same alignment measure for every method (seeded: deterministic).
        let pad_cfg = crate::pad::PadConfig {
            seed: cfg.seed,
            ..Default::default()
        };
        line.proxy_a_distance = Some(round6(crate::pad::proxy_a_distance(
            &s.features,
            &tgt.features,
            tgt.dim,
            &pad_cfg,
        )));
    }
    method.record(sp, &tgt, src.as_ref(), &mut line);
    let energies = match (src.and_then(|s| s.energies), tgt.energies) {
        (Some(source), Some(target)) => Some(EnergySnapshot {
            iteration: iteration as u64,
            source,
            target,
        }),
        _ => None,
    };
    Ok((line, energies))
}

/// Writes `energies/iter-XXXXXXXX.json` (atomically: a reader never sees half a file).
fn write_energies(run_dir: &Path, snap: &EnergySnapshot) -> Result<(), Error> {
    let dir = run_dir.join("energies");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let path = dir.join(EnergySnapshot::file_name(snap.iteration));
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(snap).expect("plain data serializes"),
    )
    .map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Builds `summary.json` from the run's metrics.
pub fn summarize(
    cfg: &ExperimentConfig,
    metrics_path: &Path,
    wall: f64,
    train_seconds: f64,
    images_per_iter: usize,
) -> Result<Summary, Error> {
    let lines = ebda_records::read_metrics(metrics_path)?;
    let last = lines
        .last()
        .ok_or_else(|| Error::Run(format!("{}: no evaluations", metrics_path.display())))?;
    let acc = |l: &MetricsLine| {
        if l.target_acc.is_nan() {
            0.0
        } else {
            l.target_acc
        }
    };
    // `max_by` keeps the last of equal maxima.
    let best = lines
        .iter()
        .max_by(|a, b| acc(a).total_cmp(&acc(b)))
        .expect("non-empty");
    let by_source = lines
        .iter()
        .filter_map(|l| l.source_acc.map(|s| (s, l)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| l);
    let select = |what: &str, l: &MetricsLine, with_source: bool| Selection {
        what: what.to_string(),
        target_acc: l.target_acc,
        source_acc: if with_source { l.source_acc } else { None },
        iteration: l.iteration,
    };
    Ok(Summary::Complete(Box::new(Complete {
        task: cfg.task.clone(),
        method: cfg.method.name().to_string(),
        seed: cfg.seed,
        iterations: cfg.train.iterations as u64,
        headline: select("target test accuracy at the last iteration", last, true),
        oracle_best_on_target: select(
            "ORACLE: the best target test accuracy over evaluations, selected with target test labels; not a valid result",
            best,
            false,
        ),
        selected_by_source_acc: by_source.map(|l| {
            select(
                "target test accuracy at the evaluation with the best source test accuracy (no target labels used)",
                l,
                false,
            )
        }),
        evaluations: lines.len() as u64,
        wall_seconds: round6(wall),
        train_seconds: round6(train_seconds),
        train_images_per_s: round6(
            images_per_iter as f64 * cfg.train.iterations as f64 / train_seconds.max(1e-9),
        ),
    })))
}
