//! DANN's pieces: gradient reversal, the domain discriminator and its loss.
//!
//! Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation",
//! ICML 2015; Ganin et al., "Domain-Adversarial Training of Neural Networks",
//! JMLR 2016.
//!
//! - [`grad_reverse`]: `R_λ(x) = x` forward, `∂R_λ/∂x = −λ·I` backward.
//! - [`DomainDiscriminator`]: an MLP `f ↦ logit` (source = 1, target = 0);
//!   the default `500 → 500 → 500 → 1` with ReLU and dropout 0.5 is the
//!   discriminator of the DANN digits experiments (tllib
//!   `tllib/modules/domain_discriminator.py`, `batch_norm=False`).
//! - [`domain_loss`]: binary cross-entropy on logits, computed stably as
//!   `max(z, 0) − z·y + log(1 + e^{−|z|})`.
//! - CDAN's conditioning (Long et al., NeurIPS 2018): [`multilinear`],
//!   [`RandomizedMultilinear`], [`entropy_weights`],
//!   [`weighted_bce_with_logits`].
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use ebda_dann::{DiscriminatorConfig, domain_loss, grad_reverse};
//!
//! let dev = Device::Cpu;
//! let map = VarMap::new();
//! let vb = ebda_nn::seeded_var_builder(&map, 0, DType::F32, &dev);
//! let cfg = DiscriminatorConfig { in_dim: 8, hidden: vec![16], ..Default::default() };
//! let disc = cfg.init(vb, &ebda_nn::Rng::new(0))?;
//! let (fs, ft) = (Tensor::randn(0f32, 1., (4, 8), &dev)?, Tensor::randn(1f32, 1., (4, 8), &dev)?);
//! let d_s = disc.forward_t(&grad_reverse(&fs, 1.0)?, true)?; // [4]
//! let d_t = disc.forward_t(&grad_reverse(&ft, 1.0)?, true)?; // [4]
//! let loss = domain_loss(&d_s, &d_t)?;
//! assert!(loss.to_scalar::<f32>()? > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cdan;

pub use cdan::{RandomizedMultilinear, entropy_weights, multilinear, weighted_bce_with_logits};

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use ebda_nn::Mlp;
use ebda_nn::{Dropout, Rng};
use serde::{Deserialize, Serialize};

/// Errors of the DANN crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; `key` is relative to the discriminator section.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// A tensor handed in does not have the expected shape.
    #[error("discriminator input: {0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Gradient reversal layer: forward is exactly `x`, backward multiplies by `−λ`.
///
/// Written as `d + (x − d)·(−λ)` with `d = x.detach()`: `x − d` is exactly 0
/// forward, and only that term carries a gradient, scaled by `−λ`. Being plain
/// tensor ops it works on every backend; `λ` is an explicit argument (a
/// schedule value), never a hidden counter.
///
/// # Shapes
/// any → same
pub fn grad_reverse(x: &Tensor, lambda: f64) -> Result<Tensor> {
    let d = x.detach();
    Ok((&d + ((x - &d)? * (-lambda))?)?)
}

/// Configuration of the [`DomainDiscriminator`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscriminatorConfig {
    /// Feature dimension (the extractor's output).
    pub in_dim: usize,
    /// Hidden widths; each is `Linear → [BatchNorm] → ReLU → Dropout`.
    pub hidden: Vec<usize>,
    /// Dropout after each hidden layer.
    pub dropout: f64,
    /// Batch normalisation after each hidden linear layer.
    pub batch_norm: bool,
}

impl Default for DiscriminatorConfig {
    /// `500 → 500 → 500 → 1`, ReLU, dropout 0.5, no BN (DANN digits; tllib).
    fn default() -> Self {
        Self {
            in_dim: 500,
            hidden: vec![500, 500],
            dropout: 0.5,
            batch_norm: false,
        }
    }
}

fn invalid(key: &'static str, reason: String) -> Error {
    Error::Config { key, reason }
}

impl DiscriminatorConfig {
    /// Checks every field; the error names the field and the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.in_dim == 0 {
            return Err(invalid("in_dim", "must be > 0, got 0".into()));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(invalid(
                "hidden",
                format!("widths must be > 0, got 0 at index {i}"),
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(invalid(
                "dropout",
                format!("must be in [0, 1], got {}", self.dropout),
            ));
        }
        Ok(())
    }

    /// Builds the discriminator; variables are `layers.{i}.*` and `bn.{i}.*`.
    pub fn init(&self, vb: VarBuilder, rng: &Rng) -> Result<DomainDiscriminator> {
        self.validate()?;
        let mut widths = vec![self.in_dim];
        widths.extend(&self.hidden);
        widths.push(1);
        let dropout =
            Dropout::new(self.dropout, rng).map_err(|e| invalid("dropout", e.to_string()))?;
        Ok(DomainDiscriminator {
            config: self.clone(),
            mlp: Mlp::new(&widths, self.batch_norm, dropout, false, vb)?,
        })
    }
}

/// The domain discriminator MLP (see the crate docs).
#[derive(Clone, Debug)]
pub struct DomainDiscriminator {
    config: DiscriminatorConfig,
    mlp: Mlp,
}

impl DomainDiscriminator {
    /// The configuration the discriminator was built from.
    pub fn config(&self) -> &DiscriminatorConfig {
        &self.config
    }

    /// Domain logits (source = 1, target = 0).
    ///
    /// # Shapes
    /// `[b, in_dim] -> [b]`
    pub fn forward_t(&self, f: &Tensor, train: bool) -> Result<Tensor> {
        match f.dims() {
            [_, d] if *d == self.config.in_dim => {}
            dims => {
                return Err(Error::Input(format!(
                    "expected features of shape [batch, {}], got {dims:?}",
                    self.config.in_dim
                )));
            }
        }
        Ok(self.mlp.forward_t(f, train)?.squeeze(1)?) // [b, 1] -> [b]
    }
}

/// Mean binary cross-entropy on logits `z` against targets `y ∈ {0, 1}`:
/// `max(z, 0) − z·y + log(1 + e^{−|z|})` (no overflow for large `|z|`), with
/// the exact gradient `∂ℓ/∂z = σ(z) − y` everywhere. Differentiating the
/// stable formula instead would take sub-gradients of `max` and `|·|` at
/// `z = 0` and give `1 − y` or `−y` there (PyTorch's `BCEWithLogits` gives
/// `0.5 − y`); so the value is computed on detached logits and the gradient
/// enters through `(σ(z) − y)·(z − sg(z))`, which is exactly zero in value.
///
/// # Shapes
/// `z, y: [b] -> []`
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.dims() != targets.dims() {
        return Err(Error::Input(format!(
            "logits {:?} and targets {:?} differ in shape",
            logits.dims(),
            targets.dims()
        )));
    }
    let targets = targets.to_dtype(logits.dtype())?;
    let z = logits.detach();
    let softplus = z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    let value = ((z.relu()? - (&z * &targets)?)? + softplus)?; // [b]
    let slope = (candle_nn::ops::sigmoid(&z)? - &targets)?; // ∂ℓ/∂z = σ(z) − y
    let gradient = (slope * (logits - &z)?)?; // 0 in value, ∂/∂z = σ(z) − y
    Ok((value + gradient)?.mean_all()?)
}

/// DANN's domain loss: BCE over the source logits (label 1) and the target
/// logits (label 0) together, as one batch.
///
/// # Shapes
/// `d_src: [b_s]`, `d_tgt: [b_t]` → `[]`
pub fn domain_loss(d_src: &Tensor, d_tgt: &Tensor) -> Result<Tensor> {
    let (logits, targets) = domain_batch(d_src, d_tgt)?;
    bce_with_logits(&logits, &targets)
}

fn domain_batch(d_src: &Tensor, d_tgt: &Tensor) -> Result<(Tensor, Tensor)> {
    let logits = Tensor::cat(&[d_src, d_tgt], 0)?;
    let ones = Tensor::ones(d_src.dims(), DType::F32, d_src.device())?;
    let zeros = Tensor::zeros(d_tgt.dims(), DType::F32, d_tgt.device())?;
    Ok((logits, Tensor::cat(&[&ones, &zeros], 0)?))
}

/// Share of source logits > 0 and target logits ≤ 0, in [0, 1].
pub fn domain_accuracy(d_src: &Tensor, d_tgt: &Tensor) -> Result<f64> {
    let (logits, targets) = domain_batch(d_src, d_tgt)?;
    let n = logits.elem_count();
    if n == 0 {
        return Err(Error::Input("domain accuracy of an empty batch".into()));
    }
    let predicted = logits.gt(0.0)?.to_dtype(DType::F32)?;
    let hits = predicted.eq(&targets)?.to_dtype(DType::F32)?.sum_all()?;
    Ok(hits.to_scalar::<f32>()? as f64 / n as f64)
}
