//! The methods behind one trait: a step over a source batch, a target batch
//! and progress `p`, returning its losses and diagnostics; per-sample
//! probes at evaluation; the method's own fields of a metrics line.
//!
//! Every method shares the extractor `F`, the classifier `C`, the data, the
//! optimizer of `F` and `C`, the schedules and the evaluation; a comparison
//! therefore differs only in the method.
//!
//! - [`source_only`]: `L = CE(C(F(x_s)), y_s)`.
//! - [`dann`]: `f = F([x_s; x_t])`, `L = CE + BCE(D(R_λ(f)), [1; 0])` with one
//!   optimizer over `F`, `C` and `D` (Ganin & Lempitsky 2015).
//! - [`cdan`]: CDAN / CDAN+E (Long et al., NeurIPS 2018): DANN whose
//!   discriminator sees `f ⊗ softmax(C(f))` (randomized above 4096 dims),
//!   optionally entropy-weighted.
//! - [`cdan_energy`] (`cdan-energy`): CDAN's conditioning fed to ebda's
//!   energy critic instead of a discriminator.
//! - [`ebda`]: `critic_steps` critic steps on the detached features (only the
//!   critic's variables move, with its own optimizer), then the feature step
//!   `L = CE + λ_p · (mean E(f_t) + β · PT)` through the frozen critic.
//!
//! # Adding a method
//! One module here with its config (serde, `Default`, `deny_unknown_fields`)
//! implementing [`MethodSpec`] (validation, construction, step cost) and a
//! type implementing [`Method`], then one line in the `methods!` list below.
//! Configs name it as `"method": "name"` (its defaults) or
//! `"method": {"name": {...its settings...}}`; nothing else in the trainer,
//! the evaluation or the report needs its name.

pub mod cdan;
pub mod cdan_energy;
pub mod dann;
pub mod ebda;
pub mod source_only;

use crate::Error;
use crate::config::ExperimentConfig;
use crate::eval::EvalResult;
use crate::optim::{Optimizer, ParamGroup};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ebda_classifier::Classifier;
use ebda_config::ConfigError;
use ebda_data::Batch;
use ebda_features::FeatureExtractor;
use ebda_nn::{Rng, seeded_var_builder, trainable_vars};
use ebda_records::MetricsLine;

/// Scalar diagnostics of one step, as detached device tensors (read on the
/// host only when logged, so a step never waits for the device).
pub type Stats = Vec<(&'static str, Tensor)>;

/// What every method trains: the extractor and the label classifier.
pub struct Shared {
    pub extractor: Box<dyn FeatureExtractor>,
    pub classifier: Classifier,
    /// Variables of `F` (`features.*`) and `C` (`classifier.*`).
    pub vars: VarMap,
    /// Dropout masks of every model.
    pub rng: Rng,
}

/// Per-step schedule values shared by every method.
#[derive(Clone, Copy, Debug)]
pub struct StepParams {
    /// Training progress in [0, 1].
    pub p: f64,
    /// Learning rate of the shared optimizer.
    pub lr: f64,
    /// Adaptation weight `λ_p`.
    pub lambda: f64,
}

/// Per-sample quantities a method measures on evaluation features.
#[derive(Debug, Default)]
pub struct Probes {
    /// Energy under the method's critic `[b]`.
    pub energy: Option<Tensor>,
    /// Logit of the method's domain discriminator `[b]` (source = 1).
    pub domain_logit: Option<Tensor>,
}

/// A domain-adaptation method, built from its [`MethodSpec`].
pub trait Method: Send {
    /// Whether the step reads a target batch.
    fn uses_target(&self) -> bool;
    /// One training step.
    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats, Error>;
    /// Named variable maps beyond the shared one (checkpointed by name).
    fn var_maps(&self) -> Vec<(&'static str, &VarMap)>;
    /// The optimizers, by name, for checkpoints.
    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)>;
    /// Per-sample probes of evaluation features `f` `[b, D]` and class
    /// logits `[b, K]` (detached).
    fn probe(&self, _f: &Tensor, _logits: &Tensor) -> Result<Probes, Error> {
        Ok(Probes::default())
    }
    /// The method's own fields of an evaluation's metrics line, from the
    /// target (and source) test results and the schedule values at `p`.
    fn record(
        &self,
        _sp: StepParams,
        _tgt: &EvalResult,
        _src: Option<&EvalResult>,
        _line: &mut MetricsLine,
    ) {
    }
}

/// What a method's heads are fed: the feature width and the class count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Feature width `D` of `model.features`.
    pub width: usize,
    /// Classes of `model.classifier`.
    pub classes: usize,
}

/// The config side of a method: validation, construction and step cost.
pub trait MethodSpec {
    /// Checks the settings; `section` is the config path (`method.ebda`),
    /// `heads` the shapes its heads must take.
    fn validate(&self, section: &str, heads: Heads) -> Result<(), ConfigError>;
    /// Sets the input width of the method's heads from `heads`.
    fn fit_width(&mut self, heads: Heads);
    /// The method, its own models seeded from `cfg.seed`.
    fn build(
        &self,
        cfg: &ExperimentConfig,
        shared: &Shared,
        device: &Device,
    ) -> Result<Box<dyn Method>, Error>;
    /// Forward multiply-adds of one step: `b` batch rows per domain,
    /// `enc`/`cls` the extractor's and classifier's multiply-adds per row.
    fn step_macs(&self, b: f64, enc: f64, cls: f64, heads: Heads) -> f64;
}

/// Declares the methods: the tagged config enum (see
/// [`ebda_config::tagged_config`]) and the dispatch to each variant's
/// [`MethodSpec`].
macro_rules! methods {
    ($( $name:literal => $variant:ident($config:ty) ),* $(,)?) => {
        ebda_config::tagged_config! {
            /// The adaptation method and its own settings. In a config:
            /// `"method": "dann"` (its defaults) or `"method": {"dann": {...}}`.
            pub enum MethodConfig {
                $( $name => $variant($config), )*
            }
        }

        impl MethodConfig {
            /// The settings, as a [`MethodSpec`].
            pub fn spec(&self) -> &dyn MethodSpec {
                match self {
                    $( Self::$variant(c) => c, )*
                }
            }

            /// The settings, as a mutable [`MethodSpec`].
            pub fn spec_mut(&mut self) -> &mut dyn MethodSpec {
                match self {
                    $( Self::$variant(c) => c, )*
                }
            }
        }
    };
}

methods! {
    "source-only" => SourceOnly(source_only::SourceOnlyConfig),
    "dann" => Dann(dann::DannConfig),
    "cdan" => Cdan(cdan::CdanConfig),
    "cdan-energy" => CdanEnergy(cdan_energy::CdanEnergyConfig),
    "ebda" => Ebda(ebda::EbdaConfig),
}

/// The methods' names, in the order reports list them (baselines first).
pub const NAMES: &[&str] = MethodConfig::NAMES;

impl Default for MethodConfig {
    fn default() -> Self {
        Self::Ebda(ebda::EbdaConfig::default())
    }
}

/// Where the shared models' variables live in `Shared::vars`.
const FEATURES: &str = "features";
const CLASSIFIER: &str = "classifier";

/// The optimizer of `F`, `C` and the method's `extra` variables: the
/// variables the extractor puts in its backbone group at
/// `optim.backbone_lr_mult`, the rest at 1; frozen ones not at all.
pub fn shared_optimizer(
    cfg: &ExperimentConfig,
    shared: &Shared,
    extra: Vec<(String, candle_core::Var)>,
) -> Optimizer {
    use ebda_features::Group;
    let group = |name: &str| {
        name.strip_prefix(FEATURES)
            .and_then(|r| r.strip_prefix('.'))
            .map_or(Group::NewLayers, |r| shared.extractor.group(r))
    };
    let (backbone, head): (Vec<_>, Vec<_>) = trainable_vars(&shared.vars)
        .into_iter()
        .filter(|(n, _)| group(n) != Group::Frozen)
        .partition(|(n, _)| group(n) == Group::Backbone);
    let mut others = head;
    others.extend(extra);
    Optimizer::new(
        &cfg.optim,
        vec![
            ParamGroup {
                vars: backbone,
                lr_mult: cfg.optim.backbone_lr_mult,
            },
            ParamGroup {
                vars: others,
                lr_mult: 1.0,
            },
        ],
    )
}

/// A fresh `VarMap` and a builder seeded by stream `stream` of `cfg.seed`.
pub fn method_vars(
    cfg: &ExperimentConfig,
    stream: u64,
    device: &Device,
) -> (VarMap, candle_nn::VarBuilder<'static>) {
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, stream_seed(cfg.seed, stream), DType::F32, device);
    (vars, vb)
}

/// Mean L2 norm of the rows of `f`, detached.
pub fn mean_norm(f: &Tensor) -> candle_core::Result<Tensor> {
    f.detach().sqr()?.sum(1)?.sqrt()?.mean_all()
}

/// Builds the shared models and the method of `cfg` (validated first),
/// seeded by `cfg.seed`.
pub fn build(cfg: &ExperimentConfig, device: &Device) -> Result<(Shared, Box<dyn Method>), Error> {
    cfg.validate()?;
    let rng = Rng::new(stream_seed(cfg.seed, 1));
    let vars = VarMap::new();
    let vb = seeded_var_builder(&vars, cfg.seed, DType::F32, device);
    let extractor = cfg.model.features.init(vb.pp(FEATURES), &rng)?;
    let classifier = cfg.model.classifier.init(vb.pp(CLASSIFIER), &rng)?;
    let shared = Shared {
        extractor,
        classifier,
        vars,
        rng,
    };
    let method = cfg.method.spec().build(cfg, &shared, device)?;
    Ok((shared, method))
}

/// The seed of sub-generator `stream` of a run seeded by `seed`.
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One extractor pass over `[x_s; x_t]` (so batch statistics see both
/// domains, as the references do) and the source cross-entropy.
pub struct Joint {
    /// Source features `[b_s, D]`.
    pub fs: Tensor,
    /// Target features `[b_t, D]`.
    pub ft: Tensor,
    /// Both, `[b_s + b_t, D]`.
    pub f: Tensor,
    /// Source logits `[b_s, K]`.
    pub logits_s: Tensor,
    /// `CE(C(f_s), y_s)`.
    pub ce: Tensor,
}

impl Joint {
    /// The joint forward of a step.
    pub fn forward(shared: &Shared, src: &Batch, tgt: &Batch) -> Result<Self, Error> {
        let bs = src.inputs.dim(0)?;
        let bt = tgt.inputs.dim(0)?;
        let x = Tensor::cat(&[&src.inputs, &tgt.inputs], 0)?; // [b_s + b_t, ...]
        let f = shared.extractor.forward_t(&x, true)?; // [b_s + b_t, D]
        let (fs, ft) = (f.narrow(0, 0, bs)?, f.narrow(0, bs, bt)?);
        let logits_s = shared.classifier.forward_t(&fs, true)?;
        let ce = shared.classifier.loss(&logits_s, &src.labels)?;
        Ok(Self {
            fs,
            ft,
            f,
            logits_s,
            ce,
        })
    }

    /// Target logits `[b_t, K]` (training mode), for methods that condition
    /// on the classifier's predictions.
    pub fn target_logits(&self, shared: &Shared) -> Result<Tensor, Error> {
        Ok(shared.classifier.forward_t(&self.ft, true)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_configs_read_as_names_or_sections_and_write_as_sections() {
        let a: MethodConfig = serde_json::from_str(r#""dann""#).unwrap();
        assert_eq!(a, MethodConfig::Dann(dann::DannConfig::default()));
        let b: MethodConfig = serde_json::from_str(r#"{"ebda": {"critic_steps": 3}}"#).unwrap();
        match &b {
            MethodConfig::Ebda(e) => assert_eq!(e.critic_steps, 3),
            other => panic!("{other:?}"),
        }
        let text = serde_json::to_string(&b).unwrap();
        assert!(text.starts_with(r#"{"ebda":{"#), "{text}");
        assert_eq!(serde_json::from_str::<MethodConfig>(&text).unwrap(), b);
        let e = serde_json::from_str::<MethodConfig>(r#""adda""#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `adda`"), "{e}");
        let e = serde_json::from_str::<MethodConfig>(r#"{"dann": {}, "ebda": {}}"#).unwrap_err();
        assert!(e.to_string().contains("one choice per section"), "{e}");
        let e = serde_json::from_str::<MethodConfig>(r#"{}"#).unwrap_err();
        assert!(e.to_string().contains("empty section"), "{e}");
        for name in NAMES {
            assert_eq!(MethodConfig::named(name).unwrap().name(), *name);
        }
    }

    #[test]
    fn configs_built_in_code_are_validated_not_panicked_on() {
        let mut cfg = ExperimentConfig::default();
        if let MethodConfig::Ebda(e) = &mut cfg.method {
            e.critic_steps = 0;
        }
        let err = build(&cfg, &Device::Cpu)
            .err()
            .expect("critic_steps 0 is refused");
        assert_eq!(
            err.to_string(),
            "method.ebda.critic_steps: must be >= 1, got 0"
        );
        let mut cfg = ExperimentConfig::default();
        cfg.train.eval_every = 0;
        let err = build(&cfg, &Device::Cpu)
            .err()
            .expect("eval_every 0 is refused");
        assert_eq!(err.to_string(), "train.eval_every: must be > 0, got 0");
    }
}
