//! Autoencoder **energy critic** for unsupervised domain adaptation.
//!
//! The critic `A = Dec ∘ Enc` is an autoencoder over feature vectors, in the
//! spirit of EBGAN's discriminator (Zhao, Mathieu & LeCun, "Energy-based
//! Generative Adversarial Network", ICLR 2017). The energy of a feature `f` is
//! its reconstruction error; with `d = Dec(Enc(f)) − f` over `D` dimensions:
//!
//! | [`Energy`]   | `E(f)`                         |
//! |--------------|--------------------------------|
//! | `mse`        | `Σ d² / D`                     |
//! | `l2`         | `√(Σ d² + ε)` (EBGAN's norm)   |
//! | `l1`         | `Σ |d| / D`                    |
//! | `relative`   | `Σ d² / (Σ f² + ε)` (default; invariant to the scale of `f`) |
//!
//! Training alternates two players (DESIGN.md §1):
//! - critic step, features detached, only the critic moves —
//!   `L_A = mean E(f_s) + mean [m − E(f_t)]⁺` ([`EnergyCritic::critic_loss`]):
//!   source features are pulled to low energy, target energy is pushed up to
//!   the margin `m` and no further;
//! - feature step, critic frozen —
//!   `L_align = mean E(f_t) + β · PT(Enc(f_t))` ([`EnergyCritic::alignment_loss`]),
//!   added to the task loss with weight `λ_p`: the extractor is rewarded for
//!   target features the critic reconstructs as well as source ones.
//!
//! `PT` is EBGAN's pull-away term ([`pull_away`]), which keeps the codes of a
//! batch from collapsing onto one direction.
//!
//! The crate depends on candle, serde and thiserror only, so any UDA method can
//! add it as its domain critic. ebda's own second host is CDAN: the
//! `cdan-energy` method (`crates/ebda-train/src/methods/cdan_energy.rs`)
//! feeds the critic CDAN's class-conditioned map `g ⊗ f` instead of a
//! discriminator, using only this crate's public API. A minimal plug-in, with
//! one optimizer per player (the extractor here is a single linear layer):
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
//! use ebda_critic::CriticConfig;
//!
//! let dev = Device::Cpu;
//! // The host method's own model and optimizer.
//! let model_vars = VarMap::new();
//! let extractor = candle_nn::linear(8, 16, VarBuilder::from_varmap(&model_vars, DType::F32, &dev))?;
//! let mut model_opt = AdamW::new(model_vars.all_vars(), ParamsAdamW::default())?;
//! // The critic lives in its own VarMap with its own optimizer.
//! let critic_vars = VarMap::new();
//! let cfg = CriticConfig { in_dim: 16, code_dim: 8, ..CriticConfig::default() };
//! let critic = cfg.init(VarBuilder::from_varmap(&critic_vars, DType::F32, &dev))?;
//! let mut critic_opt = AdamW::new(critic_vars.all_vars(), ParamsAdamW::default())?;
//!
//! let (xs, xt) = (Tensor::randn(0f32, 1., (32, 8), &dev)?, Tensor::randn(1f32, 1., (32, 8), &dev)?);
//! for _ in 0..3 {
//!     let (fs, ft) = (extractor.forward(&xs)?, extractor.forward(&xt)?);
//!     // 1. Critic step: critic_loss detaches the features itself.
//!     let c = critic.critic_loss(&fs, &ft)?;
//!     critic_opt.backward_step(&c.total)?;
//!     // 2. Feature step: the critic is frozen inside alignment_loss.
//!     let a = critic.alignment_loss(&ft)?;
//!     let task_loss = fs.sqr()?.mean_all()?; // stands in for the host's own loss
//!     model_opt.backward_step(&(task_loss + (a.total * 0.5)?)?)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::{D, DType, Tensor};
use candle_nn::{Init, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// Errors of the critic: bad configuration, bad input, or a tensor error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; `key` is relative to the critic section.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    /// A feature batch does not have the shape the critic was built for.
    #[error("critic input: {0}")]
    Input(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// How reconstruction error becomes energy (see the crate docs for formulas).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Energy {
    /// Mean squared error over feature dimensions.
    Mse,
    /// Euclidean norm of the error, as written in the EBGAN paper.
    L2,
    /// Mean absolute error over feature dimensions.
    L1,
    /// Squared error relative to the squared feature norm (scale-invariant).
    ///
    /// The default: with `mse`, a PyTorch prototype on MNIST→USPS saw the
    /// extractor shrink target features (norm ≈19 vs ≈31 for source) to lower
    /// their energy, and adaptation gained nothing (DESIGN.md §1).
    #[default]
    Relative,
}

/// Configuration of an [`EnergyCritic`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriticConfig {
    /// Feature dimension `D` (the extractor's output; LeNet: 500).
    pub in_dim: usize,
    /// Hidden widths of the encoder between `in_dim` and `code_dim`; the
    /// decoder mirrors them. Empty: `in_dim → code_dim → in_dim`.
    pub hidden: Vec<usize>,
    /// Width of the code `Enc(f)` on which the pull-away term acts.
    pub code_dim: usize,
    /// Energy variant.
    pub energy: Energy,
    /// Hinge margin `m` of the critic loss (> 0).
    pub margin: f64,
    /// Weight `β` of the pull-away term in the alignment loss (≥ 0; EBGAN: 0.1).
    pub pull_away_weight: f64,
    /// `ε` guarding the `relative` denominator and the `l2` square root (> 0).
    pub eps: f64,
}

impl Default for CriticConfig {
    /// 500 → 256 → 500 with `relative` energy, `m = 1`, `β = 0.1`: the setting
    /// that worked in the PyTorch prototype on the shared digits (DESIGN.md §1).
    fn default() -> Self {
        Self {
            in_dim: 500,
            hidden: Vec::new(),
            code_dim: 256,
            energy: Energy::Relative,
            margin: 1.0,
            pull_away_weight: 0.1,
            eps: 1e-6,
        }
    }
}

fn invalid(key: &'static str, reason: String) -> Error {
    Error::Config { key, reason }
}

impl CriticConfig {
    /// Checks every field; the error names the field and the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.in_dim == 0 {
            return Err(invalid("in_dim", "must be > 0, got 0".into()));
        }
        if self.code_dim == 0 {
            return Err(invalid("code_dim", "must be > 0, got 0".into()));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return Err(invalid(
                "hidden",
                format!("widths must be > 0, got 0 at index {i}"),
            ));
        }
        if !(self.margin.is_finite() && self.margin > 0.0) {
            return Err(invalid(
                "margin",
                format!("must be > 0, got {}", self.margin),
            ));
        }
        if !(self.pull_away_weight.is_finite() && self.pull_away_weight >= 0.0) {
            return Err(invalid(
                "pull_away_weight",
                format!("must be >= 0, got {}", self.pull_away_weight),
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(invalid("eps", format!("must be > 0, got {}", self.eps)));
        }
        Ok(())
    }

    /// Builds the critic; variables are `encoder.{i}.{weight,bias}` and
    /// `decoder.{i}.{weight,bias}` under `vb`, initialised as PyTorch's
    /// `nn.Linear` (`U(±1/√fan_in)`).
    pub fn init(&self, vb: VarBuilder) -> Result<EnergyCritic> {
        self.validate()?;
        let mut widths = vec![self.in_dim];
        widths.extend(&self.hidden);
        widths.push(self.code_dim);
        let encoder = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| linear(w[0], w[1], vb.pp("encoder").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        widths.reverse();
        let decoder = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| linear(w[0], w[1], vb.pp("decoder").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(EnergyCritic {
            config: self.clone(),
            encoder,
            decoder,
        })
    }
}

/// `nn.Linear` with PyTorch's default initialisation (torch/nn/modules/linear.py).
fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// The critic's loss for one critic step (all fields are scalar tensors).
#[derive(Clone, Debug)]
pub struct CriticLoss {
    /// `mean E(f_s) + mean [m − E(f_t)]⁺`, the tensor to back-propagate.
    pub total: Tensor,
    /// `mean E(f_s)` (detached).
    pub source_energy: Tensor,
    /// `mean E(f_t)` (detached).
    pub target_energy: Tensor,
    /// `mean [m − E(f_t)]⁺` (detached).
    pub target_hinge: Tensor,
    /// Share of target samples with `E(f_t) ≥ m`, in [0, 1] (detached).
    pub beyond_margin: Tensor,
}

/// The extractor's alignment loss for one feature step (scalar tensors).
#[derive(Clone, Debug)]
pub struct AlignmentLoss {
    /// `mean E(f_t) + β · PT(Enc(f_t))`, to add to the task loss with weight `λ_p`.
    pub total: Tensor,
    /// `mean E(f_t)` (detached).
    pub energy: Tensor,
    /// `PT(Enc(f_t))` (detached).
    pub pull_away: Tensor,
}

/// The autoencoder energy critic (see the crate docs).
#[derive(Clone, Debug)]
pub struct EnergyCritic {
    config: CriticConfig,
    encoder: Vec<Linear>,
    decoder: Vec<Linear>,
}

impl EnergyCritic {
    /// The configuration the critic was built from.
    pub fn config(&self) -> &CriticConfig {
        &self.config
    }

    fn check_input(&self, f: &Tensor) -> Result<()> {
        match f.dims() {
            [b, d] if *d == self.config.in_dim && *b > 0 => Ok(()),
            dims => Err(Error::Input(format!(
                "expected features of shape [batch > 0, {}], got {dims:?}",
                self.config.in_dim
            ))),
        }
    }

    /// The code `Enc(f)`: each encoder layer is `ReLU(W·x + b)`.
    ///
    /// # Shapes
    /// `[b, in_dim] -> [b, code_dim]`
    pub fn encode(&self, f: &Tensor) -> Result<Tensor> {
        self.check_input(f)?;
        let mut x = f.clone();
        for layer in &self.encoder {
            x = layer.forward(&x)?.relu()?;
        }
        Ok(x)
    }

    /// `Dec(h)`: ReLU between decoder layers, the last one linear.
    ///
    /// # Shapes
    /// `[b, code_dim] -> [b, in_dim]`
    fn decode(&self, h: &Tensor) -> Result<Tensor> {
        let mut x = h.clone();
        let last = self.decoder.len() - 1;
        for (i, layer) in self.decoder.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }

    /// The reconstruction `Dec(Enc(f))`.
    ///
    /// # Shapes
    /// `[b, in_dim] -> [b, in_dim]`
    pub fn reconstruct(&self, f: &Tensor) -> Result<Tensor> {
        self.decode(&self.encode(f)?)
    }

    /// Per-sample energy `E(f)` for the configured variant.
    ///
    /// # Shapes
    /// `[b, in_dim] -> [b]`
    pub fn energy(&self, f: &Tensor) -> Result<Tensor> {
        Ok(self.energy_and_code(f)?.0)
    }

    /// Energy and code from one encoder pass: `([b], [b, code_dim])`.
    pub fn energy_and_code(&self, f: &Tensor) -> Result<(Tensor, Tensor)> {
        let code = self.encode(f)?;
        let recon = self.decode(&code)?;
        let energy = energy_of(self.config.energy, f, &recon, self.config.eps)?;
        Ok((energy, code))
    }

    /// Critic loss at the configured margin; see [`EnergyCritic::critic_loss_at`].
    pub fn critic_loss(&self, f_src: &Tensor, f_tgt: &Tensor) -> Result<CriticLoss> {
        self.critic_loss_at(f_src, f_tgt, self.config.margin)
    }

    /// `L_A = mean E(f_s) + mean [m − E(f_t)]⁺` at an explicit margin `m`
    /// (for annealed margins). The features are detached here, so this loss
    /// never reaches the extractor.
    ///
    /// # Shapes
    /// `f_src: [b_s, in_dim]`, `f_tgt: [b_t, in_dim]` → scalars
    pub fn critic_loss_at(
        &self,
        f_src: &Tensor,
        f_tgt: &Tensor,
        margin: f64,
    ) -> Result<CriticLoss> {
        let e_src = self.energy(&f_src.detach())?; // [b_s]
        let e_tgt = self.energy(&f_tgt.detach())?; // [b_t]
        let source_energy = e_src.mean_all()?;
        let hinge = margin_hinge(&e_tgt, margin)?;
        let total = (&source_energy + &hinge)?;
        let beyond_margin = e_tgt
            .detach()
            .ge(margin)?
            .to_dtype(e_tgt.dtype())?
            .mean_all()?;
        Ok(CriticLoss {
            total,
            source_energy: source_energy.detach(),
            target_energy: e_tgt.mean_all()?.detach(),
            target_hinge: hinge.detach(),
            beyond_margin,
        })
    }

    /// A copy whose weights are detached: gradients flow through it to its
    /// input but never into the critic's variables.
    pub fn frozen(&self) -> EnergyCritic {
        let freeze = |layers: &[Linear]| {
            layers
                .iter()
                .map(|l| Linear::new(l.weight().detach(), l.bias().map(Tensor::detach)))
                .collect()
        };
        EnergyCritic {
            config: self.config.clone(),
            encoder: freeze(&self.encoder),
            decoder: freeze(&self.decoder),
        }
    }

    /// `L_align = mean E(f_t) + β · PT(Enc(f_t))` through the frozen critic:
    /// gradients reach `f_tgt` (the extractor) and never the critic.
    ///
    /// # Shapes
    /// `f_tgt: [b, in_dim]` → scalars
    pub fn alignment_loss(&self, f_tgt: &Tensor) -> Result<AlignmentLoss> {
        let (energy, code) = self.frozen().energy_and_code(f_tgt)?;
        let energy = energy.mean_all()?;
        let pt = pull_away(&code, PULL_AWAY_EPS)?;
        let total = (&energy + (&pt * self.config.pull_away_weight)?)?;
        Ok(AlignmentLoss {
            total,
            energy: energy.detach(),
            pull_away: pt.detach(),
        })
    }
}

/// `ε` of the pull-away normalisation (as in the PyTorch reference, 1e-8).
pub const PULL_AWAY_EPS: f64 = 1e-8;

/// Per-sample energy of `f` against its reconstruction `r`.
///
/// # Shapes
/// `f, r: [b, d] -> [b]`
pub fn energy_of(kind: Energy, f: &Tensor, r: &Tensor, eps: f64) -> Result<Tensor> {
    let diff = (r - f)?;
    let e = match kind {
        Energy::Mse => diff.sqr()?.mean(D::Minus1)?,
        Energy::L2 => (diff.sqr()?.sum(D::Minus1)? + eps)?.sqrt()?,
        Energy::L1 => diff.abs()?.mean(D::Minus1)?,
        Energy::Relative => {
            let num = diff.sqr()?.sum(D::Minus1)?;
            let den = (f.sqr()?.sum(D::Minus1)? + eps)?;
            (num / den)?
        }
    };
    Ok(e)
}

/// `mean_i [m − e_i]⁺`: zero loss, and zero gradient, for samples with `e_i ≥ m`.
///
/// `∂/∂e_i = −1/N` where `e_i < m`, `0` where `e_i ≥ m`.
///
/// # Shapes
/// `[b] -> []`
pub fn margin_hinge(energy: &Tensor, margin: f64) -> Result<Tensor> {
    // (m − e) masked by [e < m] rather than ReLU(m − e): the value is the same,
    // and the gradient is exactly 0 at e = m (candle's ReLU passes 1 at 0).
    let below = energy.lt(margin)?.to_dtype(energy.dtype())?;
    Ok((energy.affine(-1.0, margin)? * below)?.mean_all()?)
}

/// EBGAN's pull-away term over a batch of codes `S` with `N` rows:
///
/// `PT(S) = 1/(N(N−1)) · Σ_i Σ_{j≠i} (S_iᵀS_j / (‖S_i‖‖S_j‖))²`
///
/// Norms are guarded as `√(‖S_i‖² + ε²)`, so an all-zero code (common after a
/// ReLU) contributes 0 with a finite gradient. `PT` of a single row is 0.
/// (The cosine is squared, as in the paper's formula.)
///
/// # Shapes
/// `[n, k] -> []`
pub fn pull_away(codes: &Tensor, eps: f64) -> Result<Tensor> {
    let (n, _) = codes.dims2()?;
    if n < 2 {
        return Ok(Tensor::zeros((), codes.dtype(), codes.device())?);
    }
    let norms = (codes.sqr()?.sum_keepdim(1)? + eps * eps)?.sqrt()?; // [n, 1]
    let unit = codes.broadcast_div(&norms)?; // [n, k]
    let cos2 = unit.matmul(&unit.t()?)?.sqr()?; // [n, n]
    let off_diag = Tensor::eye(n, DType::F32, codes.device())?
        .to_dtype(codes.dtype())?
        .affine(-1.0, 1.0)?;
    Ok(((cos2 * off_diag)?.sum_all()? / (n * (n - 1)) as f64)?)
}
