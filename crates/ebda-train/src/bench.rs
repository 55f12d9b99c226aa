//! Throughput of training steps and inference on synthetic batches.
//!
//! Mirrors the protocol of the PyTorch reference `torch_bench.py`: a pool of
//! 8 pre-generated batch pairs (uniform [0, 1) pixels, uniform labels) is
//! cycled so no data generation is timed; each repeat builds fresh models
//! from the seed, runs `warmup` untimed steps, then `steps` timed ones; the
//! reported figure is the median over repeats. FLOPs are analytic: forward
//! multiply-accumulates × 2 (MAC → FLOP) × 3 (forward + backward), as the
//! reference counts them.

use crate::Error;
use crate::config::ExperimentConfig;
use crate::methods::{StepParams, build};
use candle_core::{DType, Device, Tensor};
use ebda_data::Batch;
use ebda_features::{BackboneConfig, FeaturesConfig};
use serde::Serialize;
use std::time::Instant;

/// Timing of one benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub name: String,
    /// Steps (or inference batches) per second, one per repeat.
    pub per_second: Vec<f64>,
    pub median_per_second: f64,
    pub images_per_step: usize,
    pub median_images_per_second: f64,
    pub flops_per_step: f64,
    pub median_gflops: f64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub(crate) fn linear_macs(widths: &[usize]) -> f64 {
    widths.windows(2).map(|w| (w[0] * w[1]) as f64).sum()
}

/// Forward multiply-accumulates of the extractor for one sample.
pub fn extractor_macs(f: &FeaturesConfig) -> f64 {
    let conv = |cin: usize, cout: usize, k: usize, hout: usize, wout: usize| {
        (cout * hout * wout * cin * k * k) as f64
    };
    let backbone = match &f.backbone {
        BackboneConfig::Lenet(c) => {
            conv(c.in_channels, 20, 5, 24, 24) + conv(20, 50, 5, 8, 8) + 800.0 * 500.0
        }
        BackboneConfig::DannMnist(c) => conv(c.in_channels, 32, 5, 24, 24) + conv(32, 48, 5, 8, 8),
        BackboneConfig::Dtn(c) => {
            conv(c.in_channels, 64, 5, 16, 16)
                + conv(64, 128, 5, 8, 8)
                + conv(128, 256, 5, 4, 4)
                + 4096.0 * 512.0
        }
        BackboneConfig::Mlp(c) => {
            let mut w = vec![c.in_dim];
            w.extend(&c.hidden);
            linear_macs(&w)
        }
        BackboneConfig::Resnet(c) => c.spec().map_or(0.0, |s| s.macs(c.input_size)),
    };
    backbone + f.bottleneck.map_or(0.0, |b| (f.backbone_dim() * b) as f64)
}

/// Training FLOPs of one step of `cfg` at its batch size.
pub fn train_flops(cfg: &ExperimentConfig) -> f64 {
    let b = cfg.data.batch_size as f64;
    let m = &cfg.model;
    let d = m.features.out_dim();
    let mut cls = vec![d];
    cls.extend(&m.classifier.hidden);
    cls.push(m.classifier.num_classes);
    let enc = extractor_macs(&m.features);
    let fwd = cfg
        .method
        .spec()
        .step_macs(b, enc, linear_macs(&cls), cfg.heads());
    fwd * 2.0 * 3.0
}

fn pool(
    cfg: &ExperimentConfig,
    batch: usize,
    device: &Device,
) -> Result<Vec<(Batch, Batch)>, Error> {
    let dims = {
        let mut d = vec![batch];
        match &cfg.model.features.backbone {
            BackboneConfig::Mlp(c) => d.push(c.in_dim),
            _ => d.extend([
                cfg.data.input.channels,
                cfg.data.input.height,
                cfg.data.input.width,
            ]),
        }
        d
    };
    let k = cfg.model.classifier.num_classes as f64;
    let make = || -> Result<Batch, Error> {
        let inputs = Tensor::rand(0f32, 1f32, dims.as_slice(), device)?;
        let labels = (Tensor::rand(0f32, k as f32, batch, device)?
            .floor()?
            .clamp(0f32, (k - 1.0) as f32))?
        .to_dtype(DType::U32)?;
        Ok(Batch {
            inputs,
            labels,
            indices: Vec::new(),
        })
    };
    (0..8).map(|_| Ok((make()?, make()?))).collect()
}

/// Times training steps of `cfg.method` (`warmup` untimed, `steps` timed, `repeats` times).
pub fn bench_train(
    cfg: &ExperimentConfig,
    warmup: usize,
    steps: usize,
    repeats: usize,
    device: &Device,
) -> Result<BenchResult, Error> {
    let pairs = pool(cfg, cfg.data.batch_size, device)?;
    let sp = StepParams {
        p: 0.5,
        lr: 0.01,
        lambda: 0.5,
    };
    let mut per_second = Vec::new();
    let mut images = cfg.data.batch_size;
    for _ in 0..repeats {
        let (shared, mut method) = build(cfg, device)?;
        let uses_target = method.uses_target();
        if uses_target {
            images = 2 * cfg.data.batch_size;
        }
        let mut run = |n: usize| -> Result<f64, Error> {
            let mut last = 0.0;
            for i in 0..n {
                let (s, t) = &pairs[i % pairs.len()];
                let stats = method.step(&shared, s, uses_target.then_some(t), sp)?;
                if i + 1 == n {
                    // Reading the loss waits for the device.
                    last = stats[0].1.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                }
            }
            Ok(last)
        };
        run(warmup.max(1))?;
        let t0 = Instant::now();
        let loss = run(steps)?;
        let dt = t0.elapsed().as_secs_f64();
        if !loss.is_finite() {
            return Err(Error::Run(format!("benchmark loss is {loss}")));
        }
        per_second.push(steps as f64 / dt);
    }
    Ok(result(
        format!(
            "train {} {}",
            cfg.method.name(),
            cfg.model.features.backbone.name()
        ),
        per_second,
        images,
        train_flops(cfg),
    ))
}

/// Times inference (extractor + classifier, evaluation mode) at `batch` images.
pub fn bench_infer(
    cfg: &ExperimentConfig,
    batch: usize,
    warmup: usize,
    steps: usize,
    repeats: usize,
    device: &Device,
) -> Result<BenchResult, Error> {
    let batches = pool(cfg, batch, device)?;
    let mut per_second = Vec::new();
    let err = |e: &dyn std::fmt::Display| Error::Run(e.to_string());
    for _ in 0..repeats {
        let (shared, _) = build(cfg, device)?;
        let run = |n: usize| -> Result<(), Error> {
            let mut out = None;
            for i in 0..n {
                let x = &batches[i % batches.len()].0.inputs;
                let f = shared.extractor.forward_t(x, false).map_err(|e| err(&e))?;
                out = Some(
                    shared
                        .classifier
                        .forward_t(&f, false)
                        .map_err(|e| err(&e))?,
                );
            }
            if let Some(o) = out {
                o.sum_all()?.to_scalar::<f32>()?;
            }
            Ok(())
        };
        run(warmup.max(1))?;
        let t0 = Instant::now();
        run(steps)?;
        per_second.push(steps as f64 / t0.elapsed().as_secs_f64());
    }
    let d = cfg.model.features.out_dim();
    let mut cls = vec![d];
    cls.extend(&cfg.model.classifier.hidden);
    cls.push(cfg.model.classifier.num_classes);
    let flops = batch as f64 * (extractor_macs(&cfg.model.features) + linear_macs(&cls)) * 2.0;
    Ok(result(
        format!("infer {} batch {batch}", cfg.model.features.backbone.name()),
        per_second,
        batch,
        flops,
    ))
}

fn result(name: String, per_second: Vec<f64>, images: usize, flops: f64) -> BenchResult {
    let med = median(&per_second);
    BenchResult {
        name,
        median_per_second: med,
        images_per_step: images,
        median_images_per_second: med * images as f64,
        flops_per_step: flops,
        median_gflops: med * flops / 1e9,
        per_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_match_the_reference_count() {
        // torch_bench.py: LeNet encoder 2 288 000 MACs / image; DANN step
        // (2·64·ENC + 64·CLS + 2·64·DISC)·6 FLOPs.
        let f = FeaturesConfig::default();
        assert_eq!(extractor_macs(&f), 2_288_000.0);
        let cfg = ExperimentConfig {
            method: crate::MethodConfig::named("dann").unwrap(),
            ..ExperimentConfig::default()
        };
        let want = (2.0 * 64.0 * 2_288_000.0 + 64.0 * 5000.0 + 2.0 * 64.0 * 500_500.0) * 6.0;
        assert_eq!(train_flops(&cfg), want);
        assert!(
            (train_flops(&cfg) / 1e9 - 2.14).abs() < 0.01,
            "≈ 2.1 GFLOP per DANN step"
        );
    }
}
