//! `ebda features extract`: a pretrained backbone's pooled features of a
//! dataset, written in the `features` format the trainer reads.
//!
//! Evaluation-mode BatchNorm; each image is resized to `resize × resize`
//! (antialiased), centre-cropped to `input_size` and normalised with the
//! ImageNet mean and std — Transfer-Learning-Library's test transform. With
//! `--views K > 1`, each image gives K rows instead, each a random resized
//! crop (scale 0.08–1) with a random horizontal flip, seeded by
//! `(seed, view, batch start, slot)`: the same file for the same seed.
//!
//! The output holds `features` `[n·K, D]` (f32), `labels` `[n·K]` (u32),
//! `index` `[n·K]` (the sample's index in the dataset) and `view` `[n·K]`,
//! rows sample-major; its metadata names the backbone, the weights file and
//! its sha256, the transform, and every image path in dataset order.

use crate::data_cmd::parse_spec;
use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use clap::{Args, Subcommand};
use ebda_data::{Dataset, InputConfig, Samples};
use ebda_features::{BackboneConfig, FeaturesConfig, ResnetConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum FeaturesCommand {
    /// Pooled backbone features of a dataset, for training on cached features.
    Extract(ExtractArgs),
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// resnet18, resnet34, resnet50 or resnet101.
    #[arg(long)]
    backbone: String,
    /// Pretrained weights (.pth or .safetensors); `ebda data fetch resnet50` gets torchvision's.
    #[arg(long, conflicts_with = "random_init")]
    weights: Option<PathBuf>,
    /// Use torchvision's random initialisation instead of weights (tests, timing).
    #[arg(long)]
    random_init: bool,
    /// The dataset: FORMAT:ROOT[:SPLIT|DOMAIN] (e.g. office31:data/office31:amazon) or JSON.
    #[arg(long)]
    data: String,
    /// Output file (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Rows per image: 1 = the centre crop; K > 1 = K random augmented views.
    #[arg(long, default_value_t = 1)]
    views: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Side of the square crop fed to the network.
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    /// Side images are resized to before cropping.
    #[arg(long, default_value_t = 256)]
    resize: usize,
    /// Seed of the augmented views (and of the random initialisation).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(cmd: &FeaturesCommand, device: &Device) -> Result<()> {
    match cmd {
        FeaturesCommand::Extract(a) => extract(a, device),
    }
}

fn input_config(args: &ExtractArgs, augment: bool) -> InputConfig {
    let mut input = InputConfig::imagenet(augment);
    input.resize = Some(args.resize);
    input.height = args.input_size;
    input.width = args.input_size;
    input
}

fn extract(args: &ExtractArgs, device: &Device) -> Result<()> {
    let depth: usize = args
        .backbone
        .strip_prefix("resnet")
        .and_then(|d| d.parse().ok())
        .with_context(|| {
            format!(
                "--backbone {:?}: expected resnet18, resnet34, resnet50 or resnet101",
                args.backbone
            )
        })?;
    if args.weights.is_none() && !args.random_init {
        bail!(
            "--weights FILE is required (e.g. `ebda data fetch {}` gets torchvision's ImageNet weights); \
             pass --random-init to extract features of a randomly initialised network on purpose",
            args.backbone
        );
    }
    if args.views == 0 || args.batch == 0 {
        bail!("--views and --batch must be ≥ 1");
    }
    if args.resize < args.input_size {
        bail!(
            "--resize {} is smaller than --input-size {}: the crop would not fit",
            args.resize,
            args.input_size
        );
    }
    let ext_ok = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !ext_ok {
        bail!(
            "--out {}: the file must end in .safetensors",
            args.out.display()
        );
    }
    let spec = parse_spec(&args.data)?;
    let data = spec.load()?;
    let Samples::Files { paths } = &data.samples else {
        bail!(
            "--data {}: {} holds decoded arrays, not image files; features are extracted from image folders or lists (office31, image_list)",
            args.data,
            data.name
        );
    };
    let weights = args.weights.as_ref().map(|p| p.display().to_string());
    let features = FeaturesConfig::of(BackboneConfig::Resnet(ResnetConfig {
        depth,
        weights: weights.clone(),
        input_size: args.input_size,
        ..Default::default()
    }));
    let map = VarMap::new();
    let vb = ebda_nn::seeded_var_builder(&map, args.seed, DType::F32, device);
    let net = features.init(vb, &ebda_nn::Rng::new(args.seed))?;
    let weights_sha = match &args.weights {
        Some(p) => ebda_data::sha256_file(p)?,
        None => String::new(),
    };

    let n = data.len();
    let k = args.views;
    let total = n * k;
    // Drawn on stderr when it is a terminal (indicatif hides it otherwise).
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {wide_bar} {pos}/{len} images {per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{} {}", args.backbone, data.name));
    let started = Instant::now();
    let dim = net.out_dim();
    let mut rows = vec![0f32; total * dim];
    let (mut decode_s, mut compute_s) = (0.0, 0.0);
    for view in 0..k {
        let augment = k > 1;
        let input = input_config(args, augment);
        // Decode (parallel, on worker threads) one batch ahead of the network.
        let batches = prefetch(&data, &input, args.batch, augment, args.seed, view)?;
        for item in batches {
            let (start, batch, secs) = item?;
            decode_s += secs;
            let t = Instant::now();
            let x = batch.to_device(device)?;
            let f = net.forward_t(&x, false)?.to_dtype(DType::F32)?; // [b, D]
            let f: Vec<Vec<f32>> = f.to_device(&Device::Cpu)?.to_vec2()?;
            compute_s += t.elapsed().as_secs_f64();
            for (j, row) in f.into_iter().enumerate() {
                let r = (start + j) * k + view;
                rows[r * dim..(r + 1) * dim].copy_from_slice(&row);
            }
            bar.inc(batch.dim(0)? as u64);
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();

    let labels: Vec<u32> = data
        .labels
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, k))
        .collect();
    let index: Vec<u32> = (0..n as u32)
        .flat_map(|i| std::iter::repeat_n(i, k))
        .collect();
    let view: Vec<u32> = (0..n).flat_map(|_| 0..k as u32).collect();
    let cpu = Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        ("features", Tensor::from_vec(rows, (total, dim), &cpu)?),
        ("labels", Tensor::from_vec(labels, total, &cpu)?),
        ("index", Tensor::from_vec(index, total, &cpu)?),
        ("view", Tensor::from_vec(view, total, &cpu)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let transform = if k > 1 {
        format!(
            "resize {r}x{r} (triangle), random resized crop {s} (scale 0.08-1, ratio 3/4-4/3), horizontal flip, ImageNet mean/std; {k} views",
            r = args.resize,
            s = args.input_size
        )
    } else {
        format!(
            "resize {r}x{r} (triangle), centre crop {s}, ImageNet mean/std",
            r = args.resize,
            s = args.input_size
        )
    };
    let path_list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let metadata: HashMap<String, String> = [
        ("format", "ebda features v1".to_string()),
        ("ebda_version", env!("CARGO_PKG_VERSION").to_string()),
        ("backbone", args.backbone.clone()),
        (
            "weights",
            weights.unwrap_or_else(|| "random initialisation".into()),
        ),
        ("weights_sha256", weights_sha),
        ("seed", args.seed.to_string()),
        ("dataset", data.name.clone()),
        ("num_classes", data.num_classes.to_string()),
        ("views", k.to_string()),
        ("transform", transform),
        ("bn", "evaluation mode (running statistics)".into()),
        ("paths", serde_json::to_string(&path_list)?),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_safetensors(&tensors, metadata, &args.out)?;
    println!(
        "{} rows of {dim} features ({n} images × {k} views) from {} in {secs:.1} s: {:.1} images/s \
         (decode + resize + crop {decode_s:.1} s on worker threads, network {compute_s:.1} s); wrote {}",
        total,
        data.name,
        total as f64 / secs,
        args.out.display()
    );
    Ok(())
}

type Prefetched = Result<(usize, Tensor, f64)>;

/// Batches of `data` in order, assembled on a worker thread one batch ahead:
/// `(first index, [b, 3, s, s] on the CPU, seconds spent assembling)`.
fn prefetch(
    data: &Dataset,
    input: &InputConfig,
    batch: usize,
    augment: bool,
    seed: u64,
    view: usize,
) -> Result<std::sync::mpsc::IntoIter<Prefetched>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Prefetched>(1);
    let data = data.clone();
    let input = input.clone();
    std::thread::Builder::new()
        .name("ebda-decode".into())
        .spawn(move || {
            for start in (0..data.len()).step_by(batch) {
                let t = Instant::now();
                let indices: Vec<usize> = (start..(start + batch).min(data.len())).collect();
                let aug_seed = ebda_data::mix(&[seed, view as u64, start as u64]);
                let item =
                    ebda_data::assemble(&data, &input, &indices, augment, aug_seed, &Device::Cpu)
                        .map(|b| (start, b.inputs, t.elapsed().as_secs_f64()))
                        .map_err(anyhow::Error::from);
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        })
        .context("cannot start the decode thread")?;
    Ok(rx.into_iter())
}

/// Writes `tensors` with string `metadata` in the safetensors header.
fn write_safetensors(
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
    path: &std::path::Path,
) -> Result<()> {
    let tmp = path.with_extension("safetensors.part");
    let views: Vec<(String, &Tensor)> = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    ebda_train::checkpoint::set_created_permissions(&tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
