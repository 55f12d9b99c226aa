//! The experiment config and its validation.

use crate::methods::MethodConfig;
use ebda_classifier::ClassifierConfig;
use ebda_config::ConfigError;
use ebda_data::{DataSpec, InputConfig, Sampling};
use ebda_features::FeaturesConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The models every method shares: the extractor and the label head (a
/// method's own models live in its section of `method`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub features: FeaturesConfig,
    pub classifier: ClassifierConfig,
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

/// The adaptation weight's schedule, shared by the adaptation methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptConfig {
    /// `λ_max` of `λ_p = λ_max (2/(1 + e^{−γp}) − 1)`.
    pub lambda_max: f64,
    /// `γ` of the λ schedule (DANN: 10).
    pub gamma: f64,
}

impl Default for AdaptConfig {
    /// `λ_max = 1`, `γ = 10` (Ganin & Lempitsky 2015).
    fn default() -> Self {
        Self {
            lambda_max: 1.0,
            gamma: 10.0,
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
    /// The method and its own settings: `"dann"` or `{"dann": {...}}`.
    pub method: MethodConfig,
    /// The name of the method's row in reports, when a setting makes it a
    /// variant worth its own row (e.g. `cdan+e` for `cdan` with `entropy`);
    /// `null`: the method's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
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
            method: MethodConfig::default(),
            label: None,
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
pub(crate) fn at(section: &str, key: &str, reason: String) -> ConfigError {
    ConfigError::invalid(format!("{section}.{key}"), reason)
}

/// A head's input width must be the extractor's feature width.
pub(crate) fn check_in_dim(section: &str, in_dim: usize, width: usize) -> Result<(), ConfigError> {
    if in_dim == width {
        Ok(())
    } else {
        Err(at(
            section,
            "in_dim",
            format!("must equal the feature width {width} of model.features, got {in_dim}"),
        ))
    }
}

fn data_err(section: &str, e: ebda_data::Error) -> ConfigError {
    match e {
        ebda_data::Error::Config { key, reason } => at(section, &key, reason),
        other => ConfigError::invalid(section, other.to_string()),
    }
}

impl OptimConfig {
    /// Checks every field; errors carry `section` as their key prefix.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
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

/// Rewrites a config written before methods owned their settings (the
/// layout of ebda 0.1 run directories: `"method": "ebda"` with
/// `model.critic`, `model.discriminator` and `adapt.{critic_steps,
/// critic_optim, margin_schedule, margin_start}`) into today's
/// `"method": {"ebda": {...}}`. Returns whether anything moved.
pub fn migrate_legacy(v: &mut Value) -> bool {
    let features = migrate_legacy_features(v);
    migrate_legacy_method(v) || features
}

/// `model.features` as ebda 0.1 wrote it (`arch`, `in_channels`, `in_dim`,
/// `hidden`, `dropout`, `spatial_dropout` side by side) into
/// `{"backbone": {"<arch>": {its own keys}}, "bottleneck": ...}`.
fn migrate_legacy_features(v: &mut Value) -> bool {
    let Some(f) = v
        .get_mut("model")
        .and_then(|m| m.get_mut("features"))
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    let Some(Value::String(arch)) = f.remove("arch") else {
        return false;
    };
    let keys: &[&str] = match arch.as_str() {
        "mlp" => &["in_dim", "hidden", "dropout"],
        _ => &["in_channels", "dropout", "spatial_dropout"],
    };
    let mut own = serde_json::Map::new();
    for k in [
        "in_channels",
        "in_dim",
        "hidden",
        "dropout",
        "spatial_dropout",
    ] {
        // `null` meant "the architecture's own", today's default.
        if let Some(x) = f.remove(k).filter(|x| !x.is_null())
            && keys.contains(&k)
        {
            own.insert(k.into(), x);
        }
    }
    let mut backbone = serde_json::Map::new();
    backbone.insert(arch, Value::Object(own));
    f.insert("backbone".into(), Value::Object(backbone));
    true
}

fn migrate_legacy_method(v: &mut Value) -> bool {
    let Some(obj) = v.as_object_mut() else {
        return false;
    };
    let legacy_keys = |obj: &serde_json::Map<String, Value>| {
        let model = obj.get("model").and_then(Value::as_object);
        let adapt = obj.get("adapt").and_then(Value::as_object);
        model.is_some_and(|m| m.contains_key("critic") || m.contains_key("discriminator"))
            || adapt.is_some_and(|a| {
                [
                    "critic_steps",
                    "critic_optim",
                    "margin_schedule",
                    "margin_start",
                ]
                .iter()
                .any(|k| a.contains_key(*k))
            })
    };
    if !legacy_keys(obj) {
        return false;
    }
    let name = match obj.get("method") {
        Some(Value::String(s)) => s.clone(),
        None => MethodConfig::default().name().to_string(),
        Some(_) => return false,
    };
    let mut take = |section: &str, key: &str| {
        obj.get_mut(section)
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove(key))
    };
    let critic = take("model", "critic");
    let discriminator = take("model", "discriminator");
    let ebda_keys: Vec<(&str, Option<Value>)> = [
        "critic_steps",
        "critic_optim",
        "margin_schedule",
        "margin_start",
    ]
    .into_iter()
    .map(|k| (k, take("adapt", k)))
    .collect();
    let mut own = serde_json::Map::new();
    match name.as_str() {
        "ebda" => {
            if let Some(c) = critic {
                own.insert("critic".into(), c);
            }
            for (k, x) in ebda_keys {
                if let Some(x) = x {
                    own.insert(k.into(), x);
                }
            }
        }
        "dann" => {
            if let Some(d) = discriminator {
                own.insert("discriminator".into(), d);
            }
        }
        _ => {}
    }
    let mut method = serde_json::Map::new();
    method.insert(name, Value::Object(own));
    obj.insert("method".into(), Value::Object(method));
    true
}

impl ExperimentConfig {
    /// Reads a run directory's `config.json`, rewriting the layout of older
    /// versions (see [`migrate_legacy`]), and validates it.
    pub fn load_run(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("config.json");
        let mut value = ebda_config::read_file(&path)?;
        migrate_legacy(&mut value);
        let mut cfg: Self = ebda_config::from_value(value).map_err(|err| match err {
            ConfigError::Invalid { key, reason } => {
                ConfigError::invalid(key, format!("{reason} (in {})", path.display()))
            }
            other => other,
        })?;
        cfg.fit_widths();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Resolves file → defaults → overrides, takes the heads' input width
    /// from the extractor ([`Self::fit_widths`]) and validates the result.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut cfg: Self = ebda_config::resolve(file, overrides)?;
        cfg.fit_widths();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets the input width (`in_dim`) of the classifier and of the
    /// method's heads to the feature width of `model.features`: a head can
    /// take no other, so switching the backbone (LeNet 500, DTN 512, a
    /// bottleneck) is one key, and the resolved config records the width used.
    pub fn fit_widths(&mut self) {
        let width = self.model.features.out_dim();
        self.model.classifier.in_dim = width;
        let heads = self.heads();
        self.method.spec_mut().fit_width(heads);
    }

    /// What the method's heads are fed: feature width and class count.
    pub fn heads(&self) -> crate::methods::Heads {
        crate::methods::Heads {
            width: self.model.features.out_dim(),
            classes: self.model.classifier.num_classes,
        }
    }

    /// Checks each section and the agreement between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.model;
        m.features.validate().map_err(|e| match e {
            ebda_features::Error::Config { key, reason } => at("model.features", &key, reason),
            other => ConfigError::invalid("model.features", other.to_string()),
        })?;
        m.classifier.validate().map_err(|e| match e {
            ebda_classifier::Error::Config { key, reason } => at("model.classifier", key, reason),
            other => ConfigError::invalid("model.classifier", other.to_string()),
        })?;
        let width = m.features.out_dim();
        check_in_dim("model.classifier", m.classifier.in_dim, width)?;
        let section = format!("method.{}", self.method.name());
        self.method.spec().validate(&section, self.heads())?;
        if let Some(label) = &self.label {
            let name = self.method.name();
            if label.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "label",
                    "must not be empty; omit it or use null",
                ));
            }
            if label != name && crate::methods::NAMES.contains(&label.as_str()) {
                return Err(ConfigError::invalid(
                    "label",
                    format!(
                        "{label:?} is the name of another method; a {name} run cannot be reported as it"
                    ),
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

    fn ebda(cfg: &ExperimentConfig) -> &crate::methods::ebda::EbdaConfig {
        match &cfg.method {
            MethodConfig::Ebda(e) => e,
            other => panic!("not ebda: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_and_overrides_land() {
        let cfg = load(&["method.ebda.critic.margin=2.5", "seed=3"]).unwrap();
        assert_eq!(ebda(&cfg).critic.margin, 2.5);
        assert_eq!(cfg.seed, 3);
        let cfg = load(&["method=dann"]).unwrap();
        assert_eq!(cfg.method.name(), "dann");
        // A method named by a string, then one of its keys set.
        let cfg = load(&["method=ebda", "method.ebda.critic_steps=2"]).unwrap();
        assert_eq!(ebda(&cfg).critic_steps, 2);
    }

    #[test]
    fn a_label_names_a_variant_but_not_another_method() {
        let cfg = load(&["method=cdan", "method.cdan.entropy=true", "label=cdan+e"]).unwrap();
        assert_eq!(cfg.label.as_deref(), Some("cdan+e"));
        let msg = |sets: &[&str]| load(sets).unwrap_err().to_string();
        assert!(msg(&["method=cdan", "label=dann"]).starts_with("label: \"dann\" is the name"));
        assert!(msg(&["label= "]).starts_with("label: must not be empty"));
        // Absent from a config (and from its config.json) unless given.
        let v = serde_json::to_value(load(&[]).unwrap()).unwrap();
        assert!(v.get("label").is_none());
    }

    #[test]
    fn errors_carry_the_full_key_path() {
        let msg = |sets: &[&str]| load(sets).unwrap_err().to_string();
        assert_eq!(
            msg(&["method.ebda.critic.margin=-1"]),
            "method.ebda.critic.margin: must be > 0, got -1"
        );
        assert!(
            msg(&["method.ebda.critic.margn=1"])
                .starts_with("method.ebda.critic.margn: unknown field `margn`, expected one of")
        );
        assert_eq!(
            msg(&["model.classifier.num_classes=1"]),
            "model.classifier.num_classes: must be >= 2, got 1"
        );
        assert_eq!(
            msg(&["method=dann", "method.dann.discriminator.dropout=3"]),
            "method.dann.discriminator.dropout: must be in [0, 1], got 3"
        );
        // A key of another method is unknown here.
        assert!(
            msg(&["method=dann", "method.dann.critic_steps=2"])
                .starts_with("method.dann.critic_steps: unknown field `critic_steps`")
        );
        assert_eq!(
            msg(&["model.features.bottleneck=0"]),
            "model.features.bottleneck: must be > 0, got 0"
        );
        assert!(
            msg(&["method.ebda.critic.energy=l3"])
                .starts_with("method.ebda.critic.energy: unknown variant `l3`")
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
            msg(&["method.ebda.critic_optim.lr=0"]),
            "method.ebda.critic_optim.lr: must be > 0, got 0"
        );
        assert_eq!(
            msg(&["method.ebda.critic_steps=0"]),
            "method.ebda.critic_steps: must be >= 1, got 0"
        );
        assert_eq!(
            msg(&["train.eval_every=0"]),
            "train.eval_every: must be > 0, got 0"
        );
        assert_eq!(
            msg(&["train.checkpoint_every=750"]),
            "train.checkpoint_every: must be a positive multiple of train.eval_every (500), got 750"
        );
    }

    #[test]
    fn heads_take_the_feature_width() {
        // One key switches the backbone; every head follows it.
        for method in ["ebda", "dann"] {
            let cfg = load(&["model.features.backbone=dtn", &format!("method={method}")]).unwrap();
            assert_eq!(cfg.model.classifier.in_dim, 512);
            let tree = serde_json::to_value(&cfg.method).unwrap();
            let head = if method == "ebda" {
                "critic"
            } else {
                "discriminator"
            };
            assert_eq!(tree[method][head]["in_dim"], 512, "{tree}");
        }
        let cfg = load(&["model.features.bottleneck=256"]).unwrap();
        assert_eq!(cfg.model.classifier.in_dim, 256);
        // A config built in code is still checked.
        let mut cfg = ExperimentConfig::default();
        cfg.model.features.backbone = ebda_features::BackboneConfig::named("dtn").unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "model.classifier.in_dim: must equal the feature width 512 of model.features, got 500"
        );
    }

    #[test]
    fn legacy_configs_migrate_to_method_sections() {
        // The layout of run directories written by ebda 0.1.
        let mut old = serde_json::json!({
            "task": "M2U",
            "method": "ebda",
            "model": {
                "features": {"arch": "dtn", "in_channels": null, "in_dim": 2048, "hidden": [500],
                             "dropout": 0.25, "spatial_dropout": false, "bottleneck": null},
                "critic": {"margin": 2.0, "in_dim": 512}, "discriminator": {"dropout": 0.5}
            },
            "adapt": {"lambda_max": 0.5, "critic_steps": 2, "margin_schedule": "fixed"}
        });
        assert!(migrate_legacy(&mut old));
        let cfg: ExperimentConfig = ebda_config::from_value(old.clone()).unwrap();
        assert_eq!(ebda(&cfg).critic.margin, 2.0);
        match &cfg.model.features.backbone {
            ebda_features::BackboneConfig::Dtn(d) => {
                assert_eq!(
                    (d.in_channels, d.dropout, d.spatial_dropout),
                    (3, 0.25, false)
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ebda(&cfg).critic_steps, 2);
        assert_eq!(cfg.adapt.lambda_max, 0.5);
        // Today's layout is left alone.
        assert!(!migrate_legacy(&mut old));
        let mut dann = serde_json::json!({"method": "dann", "model": {"discriminator": {"dropout": 0.25}, "critic": {}}});
        assert!(migrate_legacy(&mut dann));
        let cfg: ExperimentConfig = ebda_config::from_value(dann).unwrap();
        match cfg.method {
            MethodConfig::Dann(d) => assert_eq!(d.discriminator.dropout, 0.25),
            other => panic!("{other:?}"),
        }
    }
}
