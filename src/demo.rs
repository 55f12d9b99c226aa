//! `ebda demo`: source-only and EBDA on a synthetic digit-style domain shift,
//! generated in code, so it runs on a fresh machine with no data.

use anyhow::{Context, Result};
use clap::Args;
use ebda_data::synthetic::{SOURCE_STYLE, TARGET_STYLE, dataset};
use ebda_train::{ExperimentConfig, RunData, RunOptions};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the two runs are written (replaced if present).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Training iterations per method.
    #[arg(long, default_value_t = 400)]
    iterations: usize,
    /// Seed of the data and the runs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: &DemoArgs, device: &candle_core::Device) -> Result<()> {
    let t0 = std::time::Instant::now();
    let data = RunData {
        source: Arc::new(dataset(
            "synthetic-source/train",
            3000,
            &SOURCE_STYLE,
            args.seed,
        )),
        target: Arc::new(dataset(
            "synthetic-target/train",
            3000,
            &TARGET_STYLE,
            args.seed + 1,
        )),
        target_test: Arc::new(dataset(
            "synthetic-target/test",
            1000,
            &TARGET_STYLE,
            args.seed + 2,
        )),
        source_test: Some(Arc::new(dataset(
            "synthetic-source/test",
            1000,
            &SOURCE_STYLE,
            args.seed + 3,
        ))),
    };
    println!(
        "synthetic digits: source = thin upright glyphs, target = thick slanted glyphs on a grey noisy background \
         ({} source / {} target training images, {} target test images)",
        data.source.len(),
        data.target.len(),
        data.target_test.len()
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let view = ebda_data::InputConfig {
        mean: vec![0.0],
        std: vec![1.0],
        ..ebda_data::InputConfig::default()
    };
    for (ds, name) in [
        (&data.source, "source.png"),
        (&data.target_test, "target.png"),
    ] {
        ebda_data::write_grid(ds, &view, 8, &args.out.join(name))?;
    }
    println!(
        "sample grids: {} and {}",
        args.out.join("source.png").display(),
        args.out.join("target.png").display()
    );
    let eval_every = (args.iterations / 4).max(1);
    let mut results = Vec::new();
    for method in ["source-only", "ebda"] {
        let sets = vec![
            format!("task=\"synthetic\""),
            format!("method={method}"),
            format!("seed={}", args.seed),
            "data.batch_size=32".to_string(),
            format!("train.iterations={}", args.iterations),
            format!("train.eval_every={eval_every}"),
            format!("train.checkpoint_every={}", eval_every * 4),
        ];
        let cfg = ExperimentConfig::load(None, &sets)?;
        let dir = args.out.join(method);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        let opts = RunOptions {
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            command: std::env::args().collect(),
            ..RunOptions::default()
        };
        let summary = ebda_train::train(&cfg, &data, device, &dir, &opts)?;
        crate::train_cmd::draw_plots(&dir);
        let acc = summary
            .complete()
            .map_or(f64::NAN, |c| c.headline.target_acc);
        println!(
            "  {:<12} target accuracy {:6.2}%   ({})",
            method,
            acc * 100.0,
            dir.display()
        );
        results.push((method, acc));
    }
    let (so, eb) = (results[0].1, results[1].1);
    println!(
        "EBDA {} source-only on the synthetic target by {:+.2} points (last iterate, one seed; {:.0} s)",
        if eb > so { "beats" } else { "does not beat" },
        (eb - so) * 100.0,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
