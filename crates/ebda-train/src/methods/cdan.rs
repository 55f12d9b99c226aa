//! CDAN and CDAN+E (Long, Cao, Wang & Jordan, "Conditional Adversarial
//! Domain Adaptation", NeurIPS 2018): DANN whose discriminator sees the
//! features conditioned on the prediction, `T(f, g)` with
//! `g = softmax(C(f))` (detached, as tllib's `ConditionalDomainAdversarialLoss`):
//! `f = F([x_s; x_t])`, `L = CE + BCE_w(D(R_λ(T(f, g))), [1; 0])`, one optimizer
//! over `F`, `C` and `D`. `T` is the multilinear map `g ⊗ f`, or its
//! randomized form (`d = random_dim`) when `F·C > 4096` (the paper's rule;
//! `randomized` overrides it). With `entropy` the BCE is weighted by
//! `1 + e^{−H(g)}` (CDAN+E).

use super::{
    Heads, Joint, Method, MethodSpec, Probes, Shared, Stats, StepParams, mean_norm, method_vars,
    shared_optimizer,
};
use crate::Error;
use crate::config::{ExperimentConfig, at};
use crate::eval::{EvalResult, domain_accuracy};
use crate::optim::Optimizer;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarMap;
use ebda_config::ConfigError;
use ebda_dann::{DiscriminatorConfig, DomainDiscriminator, RandomizedMultilinear};
use ebda_data::Batch;
use ebda_nn::trainable_vars;
use ebda_records::{MetricsLine, round6};
use serde::{Deserialize, Serialize};

/// Seed stream of the discriminator's initialisation (and the random maps).
const STREAM: u64 = 4;

/// Above this `F·C` the randomized map is used unless `randomized` says
/// otherwise (Long et al. 2018, §3.2).
const RANDOMIZE_ABOVE: usize = 4096;

/// CDAN's settings (the λ schedule is `adapt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdanConfig {
    /// The discriminator; its `in_dim` is the map's output width.
    pub discriminator: DiscriminatorConfig,
    /// CDAN+E: weight the domain loss by `1 + e^{−H(g)}`.
    pub entropy: bool,
    /// Force (`true`) or forbid (`false`) the randomized map; `null` uses it
    /// when `F·C > 4096`.
    pub randomized: Option<bool>,
    /// Output width of the randomized map (the paper's 1024).
    pub random_dim: usize,
}

impl Default for CdanConfig {
    fn default() -> Self {
        Self {
            discriminator: DiscriminatorConfig::default(),
            entropy: false,
            randomized: None,
            random_dim: 1024,
        }
    }
}

/// Whether `T` is the randomized map: `randomized`, else `F·C > 4096`.
pub(super) fn randomize(randomized: Option<bool>, heads: Heads) -> bool {
    randomized.unwrap_or(heads.width * heads.classes > RANDOMIZE_ABOVE)
}

/// Width of `T(f, g)`.
pub(super) fn map_dim(randomized: Option<bool>, random_dim: usize, heads: Heads) -> usize {
    if randomize(randomized, heads) {
        random_dim
    } else {
        heads.width * heads.classes
    }
}

/// Multiply-adds of `T` per row.
pub(super) fn map_macs(randomized: Option<bool>, random_dim: usize, heads: Heads) -> f64 {
    let d = map_dim(randomized, random_dim, heads);
    if randomize(randomized, heads) {
        ((heads.width + heads.classes) * d) as f64
    } else {
        d as f64
    }
}

/// The conditioning `T(f, softmax(logits))` of CDAN, shared by the methods
/// that condition on the prediction.
pub(super) struct Conditioning {
    map: Option<RandomizedMultilinear>,
}

impl Conditioning {
    /// The map for `cfg`'s heads; the randomized map's matrices come from
    /// their own seeded stream (constants: not trained, not checkpointed).
    pub(super) fn new(
        cfg: &ExperimentConfig,
        randomized: Option<bool>,
        random_dim: usize,
        device: &Device,
    ) -> Result<Self, Error> {
        let heads = cfg.heads();
        let map = if randomize(randomized, heads) {
            let (_, vb) = method_vars(cfg, STREAM + 100, device);
            Some(RandomizedMultilinear::new(
                heads.width,
                heads.classes,
                random_dim,
                vb.pp("random_map"),
            )?)
        } else {
            None
        };
        Ok(Self { map })
    }

    /// `T(f, g)` with `g = softmax(logits)` detached; returns `(T, g)`.
    pub(super) fn apply(&self, f: &Tensor, logits: &Tensor) -> Result<(Tensor, Tensor), Error> {
        let g = candle_nn::ops::softmax(&logits.detach(), D::Minus1)?; // [b, C]
        let t = match &self.map {
            Some(m) => m.forward(f, &g)?,
            None => ebda_dann::multilinear(f, &g)?,
        };
        Ok((t, g))
    }
}

impl CdanConfig {
    /// Width of `T(f, g)`.
    pub fn map_dim(&self, heads: Heads) -> usize {
        map_dim(self.randomized, self.random_dim, heads)
    }
}

impl MethodSpec for CdanConfig {
    fn validate(&self, section: &str, heads: Heads) -> Result<(), ConfigError> {
        if self.random_dim == 0 {
            return Err(at(section, "random_dim", "must be > 0, got 0".into()));
        }
        let here = format!("{section}.discriminator");
        self.discriminator.validate().map_err(|e| match e {
            ebda_dann::Error::Config { key, reason } => at(&here, key, reason),
            other => ConfigError::invalid(&here, other.to_string()),
        })?;
        let want = self.map_dim(heads);
        if self.discriminator.in_dim != want {
            return Err(at(
                &here,
                "in_dim",
                format!(
                    "must equal the conditioning map's width {want} (features {} × classes {}{}), got {}",
                    heads.width,
                    heads.classes,
                    if randomize(self.randomized, heads) {
                        ", randomized"
                    } else {
                        ""
                    },
                    self.discriminator.in_dim
                ),
            ));
        }
        Ok(())
    }

    fn fit_width(&mut self, heads: Heads) {
        self.discriminator.in_dim = self.map_dim(heads);
    }

    fn build(
        &self,
        cfg: &ExperimentConfig,
        shared: &Shared,
        device: &Device,
    ) -> Result<Box<dyn Method>, Error> {
        let (vars, vb) = method_vars(cfg, STREAM, device);
        let disc = self
            .discriminator
            .init(vb.pp("discriminator"), &shared.rng)?;
        let opt = shared_optimizer(cfg, shared, trainable_vars(&vars));
        Ok(Box::new(Cdan {
            disc,
            vars,
            opt,
            map: Conditioning::new(cfg, self.randomized, self.random_dim, device)?,
            entropy: self.entropy,
        }))
    }

    fn step_macs(&self, b: f64, enc: f64, cls: f64, heads: Heads) -> f64 {
        let d = self.map_dim(heads);
        let map = map_macs(self.randomized, self.random_dim, heads);
        let mut disc = vec![d];
        disc.extend(&self.discriminator.hidden);
        disc.push(1);
        2.0 * b * (enc + cls + map) + 2.0 * b * crate::bench::linear_macs(&disc)
    }
}

struct Cdan {
    disc: DomainDiscriminator,
    vars: VarMap,
    opt: Optimizer,
    map: Conditioning,
    entropy: bool,
}

impl Method for Cdan {
    fn uses_target(&self) -> bool {
        true
    }

    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats, Error> {
        let tgt = tgt.ok_or_else(|| Error::Run("cdan needs a target batch".into()))?;
        let joint = Joint::forward(shared, src, tgt)?;
        let logits_t = joint.target_logits(shared)?;
        let logits = Tensor::cat(&[&joint.logits_s, &logits_t], 0)?; // [b_s + b_t, C]
        let (t, g) = self.map.apply(&joint.f, &logits)?;
        let reversed = ebda_dann::grad_reverse(&t, sp.lambda)?;
        let d = self.disc.forward_t(&reversed, true)?; // [b_s + b_t]
        let (bs, bt) = (joint.fs.dim(0)?, joint.ft.dim(0)?);
        let targets = Tensor::cat(
            &[
                &Tensor::ones(bs, DType::F32, d.device())?,
                &Tensor::zeros(bt, DType::F32, d.device())?,
            ],
            0,
        )?;
        let weights = if self.entropy {
            ebda_dann::entropy_weights(&g)?
        } else {
            Tensor::ones(bs + bt, DType::F32, d.device())?
        };
        let dloss = ebda_dann::weighted_bce_with_logits(&d, &targets, &weights)?;
        let loss = (&joint.ce + &dloss)?;
        self.opt.step(&loss.backward()?, sp.lr)?;
        let domain_acc = super::dann::batch_domain_acc(&d, bs)?;
        Ok(vec![
            ("loss", loss.detach()),
            ("ce", joint.ce.detach()),
            ("domain_loss", dloss.detach()),
            ("domain_acc", domain_acc),
            ("feat_norm_source", mean_norm(&joint.fs)?),
            ("feat_norm_target", mean_norm(&joint.ft)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("discriminator", &self.vars)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt)]
    }

    fn probe(&self, f: &Tensor, logits: &Tensor) -> Result<Probes, Error> {
        let (t, _) = self.map.apply(f, logits)?;
        Ok(Probes {
            domain_logit: Some(self.disc.forward_t(&t, false)?),
            ..Probes::default()
        })
    }

    fn record(
        &self,
        _sp: StepParams,
        tgt: &EvalResult,
        src: Option<&EvalResult>,
        line: &mut MetricsLine,
    ) {
        line.domain_acc = src.and_then(|s| domain_accuracy(s, tgt)).map(round6);
    }
}
