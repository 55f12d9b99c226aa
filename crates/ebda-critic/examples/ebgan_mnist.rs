//! EBGAN on MNIST with [`ebda_critic::EnergyCritic`] as the discriminator.
//!
//! The critic is EBGAN's autoencoder discriminator (Zhao, Mathieu & LeCun,
//! "Energy-based Generative Adversarial Network", ICLR 2017) — here on 784-d
//! pixels instead of features, trained with the crate's two losses and
//! nothing else:
//!
//! - discriminator: `L_D = D(x) + [m − D(G(z))]⁺` is
//!   `critic.critic_loss(x, G(z))` (the real images stand where the source
//!   features stand in domain adaptation, the generated ones where the target
//!   features stand; the generator's output is detached inside);
//! - generator: `L_G = D(G(z)) + λ_PT · PT(Enc(G(z)))` is
//!   `critic.alignment_loss(G(z))` with `pull_away_weight = λ_PT`.
//!
//! Settings (stated, with their source):
//! - energy `D(x) = ‖Dec(Enc(x)) − x‖` (the paper's reconstruction norm, the
//!   crate's `l2` energy), margin `m = 10` (the value listed for MNIST with the
//!   paper's per-dataset margins: LSUN 80, CelebA 20, ImageNet 40 / 80),
//!   `λ_PT = 0.1` (the paper's pull-away weight; `--pull-away-weight 0` gives
//!   plain EBGAN for the comparison);
//! - networks from the paper's MNIST MLP grid (generator depth 2–5 × width
//!   400–3200, autoencoder depth 2–5 × width 128–1024): generator
//!   `z ∈ N(0, I)¹⁰⁰ → 800 → 800 → 784` with BatchNorm + ReLU and a `tanh`
//!   output (pixels in [−1, 1]), autoencoder `784 → 256 → 784` (ReLU code,
//!   linear decoder); Adam (β₁ = 0.5) for each player, one step each per
//!   iteration, batch 64.
//!
//! Whether it works is measured with a LeNet trained here on the real MNIST
//! training labels: on generated digits, the entropy of the predicted-class
//! histogram (ln 10 = 2.303 when all ten digits are equally frequent), the
//! mean max-probability (confident = recognisable), and
//! `exp E_x KL(p(y|x) ‖ p(y))` (the "inception score" with a digits
//! classifier, at most 10); the same three on the real test images say what
//! the classifier gives for real digits.
//!
//! Writes into `--out`: `grid-<iteration>.png` (10 × 10 samples of a fixed
//! noise batch), `energy.{png,svg}` and `energy.csv` (mean energy of real and
//! generated batches during training), and `summary.json`.
//!
//! ```text
//! cargo run --release -p ebda-critic --example ebgan_mnist -- \
//!     --data ../shared/data/mnist-full --out runs/ebgan/pt
//! cargo run --release -p ebda-critic --example ebgan_mnist -- \
//!     --data ../shared/data/mnist-full --out runs/ebgan/no-pt --pull-away-weight 0
//! ```

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::Parser;
use ebda_critic::{CriticConfig, Energy, EnergyCritic};
use ebda_features::{BackboneConfig, FeatureExtractor, FeaturesConfig};
use ebda_nn::{BatchNorm, Linear, Rng, seeded_var_builder, trainable_vars};
use rand::{Rng as _, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
const CLASSES: usize = 10;
/// Samples in each grid (10 × 10).
const GRID: usize = 10;

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(about = "EBGAN on MNIST with ebda-critic's EnergyCritic as the discriminator")]
struct Args {
    /// MNIST directory (train-/t10k- idx files, plain or .gz).
    #[arg(long, default_value = "../shared/data/mnist-full")]
    data: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "runs/ebgan-mnist")]
    out: PathBuf,
    /// GAN iterations (one discriminator and one generator step each).
    #[arg(long, default_value_t = 6000)]
    iterations: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Hinge margin m.
    #[arg(long, default_value_t = 10.0)]
    margin: f64,
    /// λ_PT, the pull-away weight in the generator loss (0: plain EBGAN).
    #[arg(long, default_value_t = 0.1)]
    pull_away_weight: f64,
    /// Adam learning rate of both players.
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Noise width.
    #[arg(long, default_value_t = 100)]
    z_dim: usize,
    /// Hidden widths of the generator.
    #[arg(long, value_delimiter = ',', default_value = "800,800")]
    gen_hidden: Vec<usize>,
    /// Code width of the autoencoder.
    #[arg(long, default_value_t = 256)]
    code_dim: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Iterations at which a sample grid is written (the last one always is).
    #[arg(long, value_delimiter = ',', default_value = "250,1000,3000")]
    snapshots: Vec<usize>,
    /// Mean energies are logged over windows of this many iterations.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// Training iterations of the LeNet that scores the samples (batch 128).
    #[arg(long, default_value_t = 1500)]
    classifier_iterations: usize,
    /// Generated (and real test) samples scored by the classifier.
    #[arg(long, default_value_t = 10000)]
    eval_samples: usize,
    /// Instead of training: read every `summary.json` under this directory
    /// and print the with/without-PT table (mean ± std over seeds) as markdown.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

/// MNIST as `[n, 784]` floats in [−1, 1] and its labels.
struct Digits {
    x: Tensor,
    y: Vec<u32>,
}

fn load(root: &Path, split: &str) -> Result<Digits> {
    let ds = ebda_data::digits::mnist(root, split)
        .with_context(|| format!("loading MNIST {split} from {}", root.display()))?;
    let ebda_data::Samples::Images { pixels, dims } = &ds.samples else {
        bail!("{}: expected images", root.display());
    };
    if dims[1..] != [SIDE, SIDE] {
        bail!(
            "{}: expected {SIDE}×{SIDE} images, found {:?}",
            root.display(),
            &dims[1..]
        );
    }
    let n = ds.labels.len();
    let v: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect();
    Ok(Digits {
        x: Tensor::from_vec(v, (n, PIXELS), &Device::Cpu)?,
        y: ds.labels.clone(),
    })
}

/// `z → [Linear → BatchNorm → ReLU]* → Linear → tanh`.
struct Generator {
    hidden: Vec<(Linear, BatchNorm)>,
    out: Linear,
}

impl Generator {
    fn new(z_dim: usize, widths: &[usize], vb: VarBuilder) -> Result<Self> {
        let mut hidden = Vec::new();
        let mut d = z_dim;
        for (i, &w) in widths.iter().enumerate() {
            let lin = ebda_nn::linear(d, w, vb.pp(format!("fc{i}")))?;
            let bn = ebda_nn::batch_norm2d(w, vb.pp(format!("bn{i}")))?;
            hidden.push((lin, bn));
            d = w;
        }
        let out = ebda_nn::linear(d, PIXELS, vb.pp("out"))?;
        Ok(Self { hidden, out })
    }

    /// `[b, z] -> [b, 784]` in [−1, 1].
    fn forward_t(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = z.clone();
        for (lin, bn) in &self.hidden {
            x = bn.forward_t(&lin.forward(&x)?, train)?.relu()?;
        }
        Ok(self.out.forward(&x)?.tanh()?)
    }
}

/// Standard-normal noise from the example's own seeded generator (candle's
/// CPU backend cannot be seeded).
fn noise(rng: &mut Pcg64Mcg, b: usize, d: usize) -> Result<Tensor> {
    let v: Vec<f32> = (0..b * d).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, (b, d), &Device::Cpu)?)
}

fn batch(data: &Digits, rng: &mut Pcg64Mcg, b: usize) -> Result<(Tensor, Vec<u32>)> {
    let n = data.y.len();
    let idx: Vec<u32> = (0..b).map(|_| rng.random_range(0..n as u32)).collect();
    let x = data
        .x
        .index_select(&Tensor::new(idx.as_slice(), &Device::Cpu)?, 0)?;
    Ok((x, idx.iter().map(|&i| data.y[i as usize]).collect()))
}

fn adam(vars: &VarMap, lr: f64) -> Result<AdamW> {
    let params = ParamsAdamW {
        lr,
        beta1: 0.5,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let vars = trainable_vars(vars).into_iter().map(|(_, v)| v).collect();
    Ok(AdamW::new(vars, params)?)
}

/// 10 × 10 tiles of 28 px, 2 px apart, scaled ×2, as a grayscale PNG.
fn write_grid(path: &Path, samples: &Tensor) -> Result<()> {
    const GAP: usize = 2;
    const SCALE: usize = 2;
    let v: Vec<f32> = samples.flatten_all()?.to_vec1()?;
    let side = GRID * (SIDE + GAP) + GAP;
    let mut img = image::GrayImage::from_pixel(
        (side * SCALE) as u32,
        (side * SCALE) as u32,
        image::Luma([255]),
    );
    for k in 0..GRID * GRID {
        let (r0, c0) = (
            GAP + (k / GRID) * (SIDE + GAP),
            GAP + (k % GRID) * (SIDE + GAP),
        );
        for i in 0..SIDE {
            for j in 0..SIDE {
                let p = v[k * PIXELS + i * SIDE + j];
                // Digits white on black, as MNIST stores them.
                let g = ((p + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                for di in 0..SCALE {
                    for dj in 0..SCALE {
                        img.put_pixel(
                            ((c0 + j) * SCALE + dj) as u32,
                            ((r0 + i) * SCALE + di) as u32,
                            image::Luma([g]),
                        );
                    }
                }
            }
        }
    }
    img.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// LeNet (ebda-features' `lenet`: tllib's, with its dropouts) + a linear head.
struct Classifier {
    features: Box<dyn FeatureExtractor>,
    head: Linear,
}

impl Classifier {
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.reshape((x.dim(0)?, 1, SIDE, SIDE))?;
        Ok(self.head.forward(&self.features.forward_t(&x, train)?)?)
    }

    fn probs(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = Vec::new();
        for start in (0..x.dim(0)?).step_by(500) {
            let len = 500.min(x.dim(0)? - start);
            out.push(candle_nn::ops::softmax(
                &self.logits(&x.narrow(0, start, len)?, false)?,
                D::Minus1,
            )?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }
}

/// Seeded by `--seed` alone, so runs that differ only in GAN settings are
/// scored by the same classifier.
fn train_classifier(train: &Digits, args: &Args) -> Result<Classifier> {
    let rng = &mut Pcg64Mcg::seed_from_u64(args.seed ^ 0x1e4e7);
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, args.seed ^ 0xc1a5, DType::F32, &Device::Cpu);
    let features = FeaturesConfig::of(BackboneConfig::Lenet(Default::default()))
        .init(vb.pp("features"), &Rng::new(args.seed ^ 0xd0))?;
    let head = ebda_nn::linear(features.out_dim(), CLASSES, vb.pp("head"))?;
    let clf = Classifier { features, head };
    let mut opt = AdamW::new(
        trainable_vars(&vars).into_iter().map(|(_, v)| v).collect(),
        ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    for _ in 0..args.classifier_iterations {
        let (x, y) = batch(train, rng, 128)?;
        let y = Tensor::new(y.as_slice(), &Device::Cpu)?;
        let loss = candle_nn::loss::cross_entropy(&clf.logits(&x, true)?, &y)?;
        opt.backward_step(&loss)?;
    }
    Ok(clf)
}

/// What the classifier says about a set of images.
#[derive(serde::Serialize)]
struct Scores {
    /// Share of samples per predicted class.
    class_histogram: Vec<f64>,
    /// Entropy of `class_histogram` in nats (ln 10 = 2.303 at most).
    class_entropy: f64,
    /// Mean over samples of the largest class probability.
    mean_max_probability: f64,
    /// `exp E_x KL(p(y|x) ‖ p(y))`, at most 10.
    digits_score: f64,
}

fn scores(probs: &Tensor) -> Result<Scores> {
    let p: Vec<Vec<f32>> = probs.to_vec2()?;
    let n = p.len() as f64;
    let mut hist = vec![0f64; CLASSES];
    let mut marginal = vec![0f64; CLASSES];
    let mut max_sum = 0.0;
    for row in &p {
        let (arg, &max) = row
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .context("empty probability row")?;
        hist[arg] += 1.0 / n;
        max_sum += f64::from(max);
        for (m, &q) in marginal.iter_mut().zip(row) {
            *m += f64::from(q) / n;
        }
    }
    let entropy = -hist
        .iter()
        .filter(|&&q| q > 0.0)
        .map(|&q| q * q.ln())
        .sum::<f64>();
    let kl = p
        .iter()
        .map(|row| {
            row.iter()
                .zip(&marginal)
                .filter(|(q, _)| **q > 0.0)
                .map(|(&q, &m)| f64::from(q) * (f64::from(q).ln() - m.ln()))
                .sum::<f64>()
        })
        .sum::<f64>()
        / n;
    Ok(Scores {
        class_histogram: hist,
        class_entropy: entropy,
        mean_max_probability: max_sum / n,
        digits_score: kl.exp(),
    })
}

fn accuracy(probs: &Tensor, labels: &[u32]) -> Result<f64> {
    let pred: Vec<u32> = probs.argmax(D::Minus1)?.to_vec1()?;
    let hits = pred.iter().zip(labels).filter(|(p, y)| p == y).count();
    Ok(hits as f64 / labels.len() as f64)
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
}

fn check(args: &Args) -> Result<()> {
    if args.iterations == 0 || args.batch_size < 2 || args.log_every == 0 {
        bail!("--iterations and --log-every must be > 0 and --batch-size ≥ 2");
    }
    if args.eval_samples < GRID * GRID {
        bail!(
            "--eval-samples must be ≥ {}, got {}",
            GRID * GRID,
            args.eval_samples
        );
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr must be > 0, got {}", args.lr);
    }
    Ok(())
}

fn summaries(dir: &Path, out: &mut Vec<(PathBuf, serde_json::Value)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            summaries(&p, out)?;
        } else if p.file_name().is_some_and(|n| n == "summary.json") {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let v =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            out.push((p, v));
        }
    }
    Ok(())
}

fn mean_std(v: &[f64]) -> String {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    format!("{m:.3} ± {sd:.3}")
}

/// The with/without-PT table of every run under `dir`.
fn report(dir: &Path) -> Result<()> {
    let mut runs = Vec::new();
    summaries(dir, &mut runs)?;
    if runs.is_empty() {
        bail!("{}: no summary.json below it", dir.display());
    }
    let num = |v: &serde_json::Value, path: &[&str], file: &Path| -> Result<f64> {
        let mut x = v;
        for k in path {
            x = &x[*k];
        }
        x.as_f64()
            .with_context(|| format!("{}: no number at {}", file.display(), path.join(".")))
    };
    let mut groups: std::collections::BTreeMap<String, Vec<(PathBuf, serde_json::Value)>> =
        Default::default();
    for (p, v) in runs {
        let w = num(&v, &["args", "pull_away_weight"], &p)?;
        groups.entry(format!("{w}")).or_default().push((p, v));
    }
    println!(
        "| generator loss | seeds | class entropy (nats; ln 10 = 2.303) | mean max-probability | digits score (max 10) |"
    );
    println!("|---|---|---|---|---|");
    let mut real = Vec::new();
    for (w, runs) in &groups {
        let mut cols: [Vec<f64>; 3] = Default::default();
        for (p, v) in runs {
            for (c, key) in
                cols.iter_mut()
                    .zip(["class_entropy", "mean_max_probability", "digits_score"])
            {
                c.push(num(v, &["generated", key], p)?);
            }
            real.push([
                num(v, &["real_test", "class_entropy"], p)?,
                num(v, &["real_test", "mean_max_probability"], p)?,
                num(v, &["real_test", "digits_score"], p)?,
            ]);
        }
        let name = if w == "0" {
            "EBGAN: D(G(z))".to_string()
        } else {
            format!("EBGAN-PT: D(G(z)) + {w} · PT")
        };
        println!(
            "| {name} | {} | {} | {} | {} |",
            runs.len(),
            mean_std(&cols[0]),
            mean_std(&cols[1]),
            mean_std(&cols[2])
        );
    }
    let col = |i: usize| mean_std(&real.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!(
        "| real MNIST test images (same classifiers) | {} | {} | {} | {} |",
        real.len(),
        col(0),
        col(1),
        col(2)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.report {
        return report(dir);
    }
    check(&args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let train = load(&args.data, "train")?;
    let test = load(&args.data, "test")?;
    let mut rng = Pcg64Mcg::seed_from_u64(args.seed);

    let gen_vars = VarMap::new();
    let generator = Generator::new(
        args.z_dim,
        &args.gen_hidden,
        seeded_var_builder(&gen_vars, args.seed, DType::F32, &Device::Cpu),
    )?;
    let critic_vars = VarMap::new();
    let critic: EnergyCritic = CriticConfig {
        in_dim: PIXELS,
        hidden: Vec::new(),
        code_dim: args.code_dim,
        energy: Energy::L2,
        margin: args.margin,
        pull_away_weight: args.pull_away_weight,
        eps: 1e-6,
    }
    .init(seeded_var_builder(
        &critic_vars,
        args.seed ^ 0xd15c,
        DType::F32,
        &Device::Cpu,
    ))?;
    let mut gen_opt = adam(&gen_vars, args.lr)?;
    let mut critic_opt = adam(&critic_vars, args.lr)?;
    let fixed_z = noise(&mut rng, GRID * GRID, args.z_dim)?;

    let mut csv = std::fs::File::create(args.out.join("energy.csv"))?;
    writeln!(csv, "iteration,real_energy,generated_energy,pull_away")?;
    let (mut real_curve, mut fake_curve) = (Vec::new(), Vec::new());
    let (mut sum_real, mut sum_fake, mut sum_pt) = (0.0, 0.0, 0.0);
    let mut grids = Vec::new();
    let started = Instant::now();
    for it in 1..=args.iterations {
        // Discriminator step: L_D = D(x) + [m − D(G(z))]⁺ (G(z) detached inside).
        let (x, _) = batch(&train, &mut rng, args.batch_size)?;
        let fake = generator.forward_t(&noise(&mut rng, args.batch_size, args.z_dim)?, true)?;
        let d = critic.critic_loss(&x, &fake)?;
        critic_opt.backward_step(&d.total)?;
        // Generator step: L_G = D(G(z)) + λ_PT · PT(Enc(G(z))), critic frozen.
        let fake = generator.forward_t(&noise(&mut rng, args.batch_size, args.z_dim)?, true)?;
        let g = critic.alignment_loss(&fake)?;
        gen_opt.backward_step(&g.total)?;

        let (er, ef) = (
            d.source_energy.to_scalar::<f32>()?,
            d.target_energy.to_scalar::<f32>()?,
        );
        if !(er.is_finite() && ef.is_finite()) {
            bail!("iteration {it}: non-finite energy (real {er}, generated {ef})");
        }
        sum_real += f64::from(er);
        sum_fake += f64::from(ef);
        sum_pt += f64::from(g.pull_away.to_scalar::<f32>()?);
        if it % args.log_every == 0 {
            let k = args.log_every as f64;
            let (r, f, p) = (sum_real / k, sum_fake / k, sum_pt / k);
            writeln!(csv, "{it},{r},{f},{p}")?;
            real_curve.push((it as f64, r));
            fake_curve.push((it as f64, f));
            println!(
                "it {it:>6}  E(real) {r:7.3}  E(G(z)) {f:7.3}  PT {p:.3}  {:.0} s",
                started.elapsed().as_secs_f64()
            );
            (sum_real, sum_fake, sum_pt) = (0.0, 0.0, 0.0);
        }
        if args.snapshots.contains(&it) || it == args.iterations {
            let path = args.out.join(format!("grid-{it}.png"));
            write_grid(&path, &generator.forward_t(&fixed_z, false)?)?;
            grids.push(path.file_name().map(|f| f.to_string_lossy().into_owned()));
        }
    }
    let gan_seconds = started.elapsed().as_secs_f64();
    ebda_report::line_chart(
        &args.out,
        "energy",
        &format!(
            "EBGAN on MNIST: critic energy ‖Dec(Enc(x)) − x‖ (m = {}, λ_PT = {})",
            args.margin, args.pull_away_weight
        ),
        "mean energy per window",
        &[
            ebda_report::Series {
                label: "real x".into(),
                points: real_curve,
            },
            ebda_report::Series {
                label: "generated G(z)".into(),
                points: fake_curve,
            },
        ],
    )?;

    let clf_started = Instant::now();
    let clf = train_classifier(&train, &args)?;
    let test_probs = clf.probs(&test.x)?;
    let classifier_accuracy = accuracy(&test_probs, &test.y)?;
    let n = args.eval_samples;
    let mut fakes = Vec::new();
    for start in (0..n).step_by(500) {
        let z = noise(&mut rng, 500.min(n - start), args.z_dim)?;
        fakes.push(generator.forward_t(&z, false)?);
    }
    let generated = scores(&clf.probs(&Tensor::cat(&fakes, 0)?)?)?;
    let real = scores(&test_probs.narrow(0, 0, n.min(test.y.len()))?)?;
    let summary = serde_json::json!({
        "args": args,
        "git_revision": git_revision(),
        "cpu": cpu_model(),
        "gan_seconds": gan_seconds,
        "classifier_seconds": clf_started.elapsed().as_secs_f64(),
        "classifier_test_accuracy": classifier_accuracy,
        "generated": generated,
        "real_test": real,
        "grids": grids,
    });
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "GAN {gan_seconds:.0} s; LeNet test accuracy {:.2} %; generated: class entropy {:.3} \
         (real {:.3}), mean max-probability {:.3} (real {:.3}), digits score {:.2} (real {:.2})",
        100.0 * classifier_accuracy,
        generated.class_entropy,
        real.class_entropy,
        generated.mean_max_probability,
        real.mean_max_probability,
        generated.digits_score,
        real.digits_score,
    );
    Ok(())
}
