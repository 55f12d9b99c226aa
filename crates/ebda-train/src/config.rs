//! The experiment config and its validation.

use ebda_classifier::ClassifierConfig;
use ebda_config::ConfigError;
use ebda_critic::CriticConfig;
use ebda_dann::DiscriminatorConfig;
use ebda_data::{DataSpec, InputConfig, Sampling};
use ebda_features::FeaturesConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The adaptation method; everything else in a run is shared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Cross-entropy on the source alone.
    SourceOnly,
    /// Gradient reversal into a domain discriminator (Ganin & Lempitsky 2015).
    Dann,
    /// The autoencoder energy critic (this project).
    #[default]
    Ebda,
}

impl Method {
    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::SourceOnly => "source-only",
            Method::Dann => "dann",
            Method::Ebda => "ebda",
        }
    }
}

/// The models of an experiment: extractor, label head, and the two domain
/// critics (the energy critic for `ebda`, the discriminator for `dann`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub features: FeaturesConfig,
    pub classifier: ClassifierConfig,
    pub critic: CriticConfig,
    pub discriminator: DiscriminatorConfig,
}

/// Where the data of a run comes from and how it is fed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Labelled source training data.
    pub source: DataSpec,
    /// Unlabelled target training data (its labels are never read in training).
    pub target: DataSpec,
    /// Target test set: the headline accuracy.
    pub target_test: DataSpec,
    /// Source test set (optional): source accuracy and source-side diagnostics.
    pub source_test: Option<DataSpec>,
    /// Preprocessing to the network input.
    pub input: InputConfig,
    /// Source batch size; the target batch has the same size.
    pub batch_size: usize,
    /// Training-batch sampling.
    pub sampling: Sampling,
    /// Batch size for evaluation passes.
    pub eval_batch_size: usize,
}

impl Default for DataConfig {
    /// MNIST (5k subset) → USPS on the shared digits, batch 64 + 64 (DANN digits recipe).
    fn default() -> Self {
        Self {
            source: DataSpec::new(ebda_data::Format::Mnist, "../shared/data/mnist", "train"),
            target: DataSpec::new(ebda_data::Format::Usps, "../shared/data/usps", "train"),
            target_test: DataSpec::new(ebda_data::Format::Usps, "../shared/data/usps", "test"),
            source_test: Some(DataSpec::new(
                ebda_data::Format::Mnist,
                "../shared/data/mnist",
                "test",
            )),
            input: InputConfig::default(),
            batch_size: 64,
            sampling: Sampling::Shuffle,
            eval_batch_size: 1000,
        }
    }
}

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

/// Learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `lr₀` throughout.
    Constant,
    /// `lr₀ · (1 + α p)^−β` (Ganin & Lempitsky 2015).
    Annealed,
}

/// An optimizer and its schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// SGD momentum (PyTorch semantics; 0 disables).
    pub momentum: f64,
    pub nesterov: bool,
    /// L2 weight decay (SGD, Adam) or decoupled decay (AdamW).
    pub weight_decay: f64,
    /// Adam β₁, β₂.
    pub betas: [f64; 2],
    pub eps: f64,
    pub schedule: LrSchedule,
    /// `α` of the annealed schedule (DANN: 10).
    pub alpha: f64,
    /// `β` of the annealed schedule (DANN: 0.75).
    pub beta: f64,
    /// Learning-rate multiplier of the feature extractor (tllib: 0.1 for a
    /// pretrained backbone; 1 for digits trained from scratch).
    pub backbone_lr_mult: f64,
}

impl Default for OptimConfig {
    /// SGD, momentum 0.9, weight decay 5e-4, `lr = 0.01 · (1 + 10p)^−0.75`
    /// (DANN, Ganin & Lempitsky 2015; tllib's DANN digits recipe).
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Sgd,
            lr: 0.01,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 5e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            schedule: LrSchedule::Annealed,
            alpha: 10.0,
            beta: 0.75,
            backbone_lr_mult: 1.0,
        }
    }
}

impl OptimConfig {
    /// Adam with a constant learning rate, no decay (the critic's default:
    /// Adam 1e-3, as the PyTorch prototype).
    pub fn adam(lr: f64) -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            schedule: LrSchedule::Constant,
            ..Self::default()
        }
    }
}

/// How the margin `m` evolves with progress `p`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarginSchedule {
    /// `m` throughout (`model.critic.margin`).
    #[default]
    Fixed,
    /// Linear from `margin_start` to `m` over training.
    Linear,
}

/// The adaptation terms shared by DANN and EBDA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptConfig {
    /// `λ_max` of `λ_p = λ_max (2/(1 + e^{−γp}) − 1)`.
    pub lambda_max: f64,
    /// `γ` of the λ schedule (DANN: 10).
    pub gamma: f64,
    /// Critic steps per iteration (EBDA).
    pub critic_steps: usize,
    /// The critic's optimizer (EBDA).
    pub critic_optim: OptimConfig,
    pub margin_schedule: MarginSchedule,
    /// Start of a linear margin schedule.
    pub margin_start: f64,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self {
            lambda_max: 1.0,
            gamma: 10.0,
            critic_steps: 1,
            critic_optim: OptimConfig::adam(1e-3),
            margin_schedule: MarginSchedule::Fixed,
            margin_start: 0.1,
        }
    }
}

/// The loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Training iterations (one source + one target batch each).
    pub iterations: usize,
    /// Evaluate every this many iterations (and at the end).
    pub eval_every: usize,
    /// Write a checkpoint every this many iterations (a multiple of
    /// `eval_every`, so a resumed run repeats the metrics exactly).
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk.
    pub keep_checkpoints: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            iterations: 6000,
            eval_every: 500,
            checkpoint_every: 500,
            keep_checkpoints: 2,
        }
    }
}

/// A whole experiment, as written resolved into a run directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// A label for reports, e.g. `M2U`.
    pub task: String,
    pub method: Method,
    /// Seed of every random choice of a run (initialisation, dropout, sampling).
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optim: OptimConfig,
    pub adapt: AdaptConfig,
    pub train: TrainConfig,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            task: "M2U".into(),
            method: Method::Ebda,
            seed: 0,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optim: OptimConfig::default(),
            adapt: AdaptConfig::default(),
            train: TrainConfig::default(),
        }
    }
}

/// Prefixes a component's relative key with its section path.
fn at(section: &str, key: &str, reason: String) -> ConfigError {
    ConfigError::invalid(format!("{section}.{key}"), reason)
}

fn data_err(section: &str, e: ebda_data::Error) -> ConfigError {
    match e {
        ebda_data::Error::Config { key, reason } => at(section, &key, reason),
        other => ConfigError::invalid(section, other.to_string()),
    }
}

impl OptimConfig {
    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(at(section, key, format!("must be > 0, got {v}")))
            }
        };
        let non_negative = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(at(section, key, format!("must be >= 0, got {v}")))
            }
        };
        positive("lr", self.lr)?;
        positive("eps", self.eps)?;
        positive("backbone_lr_mult", self.backbone_lr_mult)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("alpha", self.alpha)?;
        non_negative("beta", self.beta)?;
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(at(
                section,
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return Err(at(section, "nesterov", "needs momentum > 0".into()));
        }
        for (i, b) in self.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(at(
                    section,
                    &format!("betas[{i}]"),
                    format!("must be in [0, 1), got {b}"),
                ));
            }
        }
        Ok(())
    }
}

impl ExperimentConfig {
    /// Resolves file → defaults → overrides and validates the result.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let cfg: Self = ebda_config::resolve(file, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks each section and the agreement between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.model;
        m.features.validate().map_err(|e| match e {
            ebda_features::Error::Config { key, reason } => at("model.features", key, reason),
            other => ConfigError::invalid("model.features", other.to_string()),
        })?;
        m.classifier.validate().map_err(|e| match e {
            ebda_classifier::Error::Config { key, reason } => at("model.classifier", key, reason),
            other => ConfigError::invalid("model.classifier", other.to_string()),
        })?;
        m.critic.validate().map_err(|e| match e {
            ebda_critic::Error::Config { key, reason } => at("model.critic", key, reason),
            other => ConfigError::invalid("model.critic", other.to_string()),
        })?;
        m.discriminator.validate().map_err(|e| match e {
            ebda_dann::Error::Config { key, reason } => at("model.discriminator", key, reason),
            other => ConfigError::invalid("model.discriminator", other.to_string()),
        })?;
        let width = m.features.out_dim();
        for (section, in_dim) in [
            ("model.classifier", m.classifier.in_dim),
            ("model.critic", m.critic.in_dim),
            ("model.discriminator", m.discriminator.in_dim),
        ] {
            if in_dim != width {
                return Err(at(
                    section,
                    "in_dim",
                    format!("must equal the feature width {width} of model.features, got {in_dim}"),
                ));
            }
        }
        let d = &self.data;
        d.source
            .validate()
            .map_err(|e| data_err("data.source", e))?;
        d.target
            .validate()
            .map_err(|e| data_err("data.target", e))?;
        d.target_test
            .validate()
            .map_err(|e| data_err("data.target_test", e))?;
        if let Some(s) = &d.source_test {
            s.validate().map_err(|e| data_err("data.source_test", e))?;
        }
        d.input.validate().map_err(|e| data_err("data.input", e))?;
        if d.batch_size == 0 {
            return Err(at("data", "batch_size", "must be > 0, got 0".into()));
        }
        if d.eval_batch_size == 0 {
            return Err(at("data", "eval_batch_size", "must be > 0, got 0".into()));
        }
        self.optim.validate("optim")?;
        self.adapt.critic_optim.validate("adapt.critic_optim")?;
        let a = &self.adapt;
        if !(a.lambda_max.is_finite() && a.lambda_max >= 0.0) {
            return Err(at(
                "adapt",
                "lambda_max",
                format!("must be >= 0, got {}", a.lambda_max),
            ));
        }
        if !(a.gamma.is_finite() && a.gamma >= 0.0) {
            return Err(at(
                "adapt",
                "gamma",
                format!("must be >= 0, got {}", a.gamma),
            ));
        }
        if a.critic_steps == 0 {
            return Err(at("adapt", "critic_steps", "must be >= 1, got 0".into()));
        }
        if a.margin_schedule == MarginSchedule::Linear
            && !(a.margin_start.is_finite() && a.margin_start > 0.0)
        {
            return Err(at(
                "adapt",
                "margin_start",
                format!("must be > 0, got {}", a.margin_start),
            ));
        }
        let t = &self.train;
        if t.iterations == 0 {
            return Err(at("train", "iterations", "must be > 0, got 0".into()));
        }
        if t.eval_every == 0 {
            return Err(at("train", "eval_every", "must be > 0, got 0".into()));
        }
        if t.checkpoint_every == 0 || !t.checkpoint_every.is_multiple_of(t.eval_every) {
            return Err(at(
                "train",
                "checkpoint_every",
                format!(
                    "must be a positive multiple of train.eval_every ({}), got {}",
                    t.eval_every, t.checkpoint_every
                ),
            ));
        }
        if t.keep_checkpoints == 0 {
            return Err(at(
                "train",
                "keep_checkpoints",
                "must be >= 1, got 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sets: &[&str]) -> Result<ExperimentConfig, ConfigError> {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        ExperimentConfig::load(None, &sets)
    }

    #[test]
    fn defaults_are_valid_and_overrides_land() {
        let cfg = load(&["model.critic.margin=2.5", "seed=3", "method=dann"]).unwrap();
        assert_eq!(cfg.model.critic.margin, 2.5);
        assert_eq!(cfg.seed, 3);
        assert_eq!(cfg.method, Method::Dann);
    }

    #[test]
    fn errors_carry_the_full_key_path() {
        let msg = |sets: &[&str]| load(sets).unwrap_err().to_string();
        assert_eq!(
            msg(&["model.critic.margin=-1"]),
            "model.critic.margin: must be > 0, got -1"
        );
        assert!(
            msg(&["model.critic.margn=1"])
                .starts_with("model.critic.margn: unknown field `margn`, expected one of")
        );
        assert_eq!(
            msg(&["model.classifier.num_classes=1"]),
            "model.classifier.num_classes: must be >= 2, got 1"
        );
        assert_eq!(
            msg(&["model.discriminator.dropout=3"]),
            "model.discriminator.dropout: must be in [0, 1], got 3"
        );
        assert_eq!(
            msg(&["model.features.bottleneck=0"]),
            "model.features.bottleneck: must be > 0, got 0"
        );
        assert!(
            msg(&["model.critic.energy=l3"])
                .starts_with("model.critic.energy: unknown variant `l3`")
        );
        assert!(msg(&["method=adda"]).starts_with("method: unknown variant `adda`"));
        assert_eq!(
            msg(&["data.target.split=dev"]),
            "data.target.split: must be one of [\"train\", \"test\"] for Usps, got \"dev\""
        );
        assert_eq!(
            msg(&["data.input.channels=2"]),
            "data.input.channels: must be 1 or 3, got 2"
        );
        assert_eq!(
            msg(&["optim.momentum=1.5"]),
            "optim.momentum: must be in [0, 1), got 1.5"
        );
        assert_eq!(
            msg(&["adapt.critic_optim.lr=0"]),
            "adapt.critic_optim.lr: must be > 0, got 0"
        );
        assert_eq!(
            msg(&["train.checkpoint_every=750"]),
            "train.checkpoint_every: must be a positive multiple of train.eval_every (500), got 750"
        );
    }

    #[test]
    fn heads_must_match_the_feature_width() {
        let msg = load(&["model.features.arch=dtn"]).unwrap_err().to_string();
        assert_eq!(
            msg,
            "model.classifier.in_dim: must equal the feature width 512 of model.features, got 500"
        );
        let ok = load(&[
            "model.features.arch=dtn",
            "model.classifier.in_dim=512",
            "model.critic.in_dim=512",
            "model.discriminator.in_dim=512",
        ]);
        assert!(ok.is_ok());
    }
}
