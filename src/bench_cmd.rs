//! `ebda bench`: training-step and inference throughput on synthetic batches.

use anyhow::{Context, Result};
use clap::Args;
use ebda_train::ExperimentConfig;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Methods to time (comma-separated; empty: inference only).
    #[arg(long, value_delimiter = ',', default_value = "source-only,dann,ebda")]
    methods: Vec<String>,
    /// Extractors to time (comma-separated): lenet, dtn, resnet18, resnet34,
    /// resnet50, resnet101 (ResNets: 224×224 RGB, bottleneck 256, 31 classes,
    /// a 1024-1024 discriminator with BN — the Office-31 protocol's shapes).
    #[arg(long, value_delimiter = ',', default_value = "lenet")]
    arch: Vec<String>,
    /// Source batch size (the target batch is the same).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    #[arg(long, default_value_t = 100)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Inference batch sizes (comma-separated; 0 skips inference).
    #[arg(long, value_delimiter = ',', default_value = "256")]
    infer_batch: Vec<usize>,
    /// The machine's measured FP32 peak in GFLOP/s, to print the share of it.
    #[arg(long)]
    peak_gflops: Option<f64>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn config(method: &str, arch: &str, batch: usize) -> Result<ExperimentConfig> {
    let mut sets = vec![
        format!("method={method}"),
        format!("model.features.backbone={arch}"),
        format!("data.batch_size={batch}"),
    ];
    if let Some(depth) = arch.strip_prefix("resnet") {
        let depth: usize = depth.parse().with_context(|| {
            format!("--arch {arch}: expected resnet18, resnet34, resnet50 or resnet101")
        })?;
        sets.retain(|s| !s.starts_with("model.features.backbone="));
        sets.extend([
            format!(r#"model.features.backbone={{"resnet": {{"depth": {depth}}}}}"#),
            "model.features.bottleneck=256".into(),
            "model.classifier.num_classes=31".into(),
            "data.input.channels=3".into(),
            "data.input.height=224".into(),
            "data.input.width=224".into(),
            "data.input.mean=[0.485, 0.456, 0.406]".into(),
            "data.input.std=[0.229, 0.224, 0.225]".into(),
        ]);
        if method == "dann" {
            sets.push(
                r#"method={"dann": {"discriminator": {"hidden": [1024, 1024], "batch_norm": true, "dropout": 0.0}}}"#
                    .into(),
            );
        }
    }
    if arch == "dtn" {
        sets.extend(
            [
                "data.input.channels=3",
                "data.input.height=32",
                "data.input.width=32",
                "data.input.mean=[0.5]",
                "data.input.std=[0.5]",
            ]
            .map(String::from),
        );
    }
    Ok(ExperimentConfig::load(None, &sets)?)
}

pub fn run(args: &BenchArgs, device: &candle_core::Device) -> Result<()> {
    let threads = candle_core::utils::get_num_threads();
    println!(
        "device {:?}, {threads} CPU threads; median of {} repeats of {} steps after {} warm-up",
        device.location(),
        args.repeats,
        args.steps,
        args.warmup
    );
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>8}",
        "benchmark", "steps/s", "images/s", "GFLOP/s", "% peak"
    );
    let mut results = Vec::new();
    for arch in &args.arch {
        for method in args.methods.iter().filter(|m| !m.is_empty()) {
            let cfg = config(method, arch, args.batch)?;
            results.push(ebda_train::bench::bench_train(
                &cfg,
                args.warmup,
                args.steps,
                args.repeats,
                device,
            )?);
            print_row(results.last().expect("pushed"), args.peak_gflops);
        }
        for &b in args.infer_batch.iter().filter(|&&b| b > 0) {
            let cfg = config("source-only", arch, args.batch)?;
            results.push(ebda_train::bench::bench_infer(
                &cfg,
                b,
                args.warmup,
                args.steps,
                args.repeats,
                device,
            )?);
            print_row(results.last().expect("pushed"), args.peak_gflops);
        }
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "device": format!("{:?}", device.location()),
            "threads": threads,
            "batch": args.batch,
            "warmup": args.warmup,
            "steps": args.steps,
            "repeats": args.repeats,
            "peak_gflops": args.peak_gflops,
            "results": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn print_row(r: &ebda_train::bench::BenchResult, peak: Option<f64>) {
    let share = peak.map_or("-".to_string(), |p| {
        format!("{:.1}", 100.0 * r.median_gflops / p)
    });
    println!(
        "{:<28} {:>10.3} {:>12.1} {:>10.1} {:>8}",
        r.name, r.median_per_second, r.median_images_per_second, r.median_gflops, share
    );
}
