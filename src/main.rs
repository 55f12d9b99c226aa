//! `ebda`: command-line entry point (argument parsing and wiring only).

mod bench_cmd;
mod data_cmd;
mod demo;
mod device;
mod features_cmd;
mod report_cmd;
mod sweep_cmd;
mod train_cmd;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use device::DeviceChoice;
use ebda_train::ExperimentConfig;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

// glibc's allocator hands the large per-step tensors back to the OS and page-
// faults them in again on every training step; mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Unsupervised domain adaptation with an autoencoder energy critic.
#[derive(Parser, Debug)]
#[command(name = "ebda", version, about, long_about = None)]
struct Cli {
    /// Device to run on: auto (CUDA if compiled in and present, else CPU), cpu, cuda or cuda:N.
    #[arg(long, global = true, default_value = "auto")]
    device: DeviceChoice,

    /// CPU threads for tensor work (rayon pool size); default: all cores or RAYON_NUM_THREADS.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Less log output (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Inspect experiment configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the devices this binary can use.
    Devices,
    /// Source-only vs EBDA on a synthetic domain shift made in code (no data needed).
    Demo(demo::DemoArgs),
    /// Train a run (source-only, DANN or EBDA) into a run directory.
    Train(train_cmd::TrainArgs),
    /// Evaluate a run's checkpoint: accuracy per domain, confusion matrix, per-sample CSV.
    Eval(train_cmd::EvalArgs),
    /// Throughput of training steps and inference on synthetic batches.
    Bench(bench_cmd::BenchArgs),
    /// Tables over runs: mean ± std over seeds per task and method (oracle labelled).
    Report(report_cmd::ReportArgs),
    /// Inspect, check and fetch datasets.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Extract a pretrained backbone's features of a dataset (cached-feature training).
    #[command(subcommand)]
    Features(features_cmd::FeaturesCommand),
    /// Grids of runs (configs × methods × seeds × any key) from a sweep file:
    /// plan, run here N at a time, or as a SLURM job array.
    #[command(subcommand)]
    Sweep(sweep_cmd::SweepCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the resolved config (file, then defaults, then --set) as JSON.
    Show(ConfigArgs),
}

/// Where an experiment config comes from.
#[derive(Args, Debug)]
struct ConfigArgs {
    /// JSON config file; omitted fields take their defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one key, e.g. --set method.ebda.critic.margin=2.5 (repeatable; value read as JSON, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn init_logging(verbose: u8, quiet: u8, log_file: Option<&std::path::Path>) -> Result<()> {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    use tracing_subscriber::prelude::*;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour only on a terminal: `ebda ... 2>&1 | tee log` writes plain text.
    let console = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let file = match log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(console)
        .with(file)
        .init();
    Ok(())
}

fn set_threads(threads: Option<u16>) -> Result<()> {
    // candle's element-wise kernels split work over a pool of their own whose
    // workers spin between ops; beside rayon's workers (our kernels, GEMM)
    // they take cores from them: on 2 cores a DANN step ran 25 % faster with
    // that pool off. Element-wise ops then run on the calling thread, unless
    // the user sets CANDLE_NUM_THREADS.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    let Some(n) = threads else { return Ok(()) };
    // candle sizes its CPU kernels from RAYON_NUM_THREADS; set it before any
    // tensor work so candle and the rayon pool agree.
    // SAFETY: called at the start of main, before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(usize::from(n))
        .build_global()
        .context("cannot size the rayon thread pool")
}

fn main() -> std::process::ExitCode {
    // `ebda ... | head` should end quietly when the reader goes away, as other
    // command-line tools do, rather than panic on the broken pipe.
    // SAFETY: restoring the default disposition of one signal before any
    // thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // A run stopped by SIGINT / SIGTERM exits 128 + signal, as a
            // shell reports it (130, 143), after its checkpoint is written.
            if let Some(ebda_train::Error::Interrupted { signal, .. }) =
                err.downcast_ref::<ebda_train::Error>()
            {
                eprintln!("{err}");
                return std::process::ExitCode::from((128 + signal) as u8);
            }
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    set_threads(cli.threads)?;
    if let Command::Train(args) = &cli.command {
        // The run directory is known before logging starts, so the log lands in it.
        let (cfg, run_dir) = args.resolve()?;
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        init_logging(cli.verbose, cli.quiet, Some(&run_dir.join("train.log")))?;
        let device = cli.device.open()?;
        return train_cmd::train(args, &cfg, &run_dir, &device);
    }
    init_logging(cli.verbose, cli.quiet, None)?;
    match cli.command {
        Command::Train(_) => unreachable!("handled above"),
        Command::Eval(args) => train_cmd::eval(&args, &cli.device.open()?)?,
        Command::Demo(args) => demo::run(&args, &cli.device.open()?)?,
        Command::Report(args) => report_cmd::run(&args)?,
        Command::Bench(args) => bench_cmd::run(&args, &cli.device.open()?)?,
        Command::Features(cmd) => features_cmd::run(&cmd, &cli.device.open()?)?,
        Command::Config(ConfigCommand::Show(args)) => {
            let cfg = ExperimentConfig::load(args.config.as_deref(), &args.sets)?;
            println!("{}", serde_json::to_string_pretty(&cfg)?);
        }
        Command::Devices => device::list(&cli.device)?,
        Command::Data(cmd) => data_cmd::run(&cmd)?,
        Command::Sweep(cmd) => sweep_cmd::run(&cmd, cli.device, cli.threads)?,
    }
    Ok(())
}
