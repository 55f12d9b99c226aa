//! The experiment config and its validation.

use ebda_classifier::ClassifierConfig;
use ebda_config::ConfigError;
use ebda_critic::CriticConfig;
use ebda_dann::DiscriminatorConfig;
use ebda_features::FeaturesConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

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

/// A whole experiment, as written resolved into a run directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Seed of every random choice of a run (initialisation, dropout, sampling).
    pub seed: u64,
    pub model: ModelConfig,
}

/// Prefixes a component's relative key with its section path.
fn at(section: &str, key: &str, reason: String) -> ConfigError {
    ConfigError::invalid(format!("{section}.{key}"), reason)
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
        let cfg = load(&["model.critic.margin=2.5", "seed=3"]).unwrap();
        assert_eq!(cfg.model.critic.margin, 2.5);
        assert_eq!(cfg.seed, 3);
    }

    #[test]
    fn component_errors_carry_the_full_key_path() {
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
