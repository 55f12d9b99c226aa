//! The experiment: one config that nests every component's config.
//!
//! An experiment is resolved from a JSON file, defaults and `--set`
//! overrides ([`ebda_config::resolve`]), then validated here: each section is
//! checked by its own crate and its errors are reported with the full key path
//! (`model.critic.margin: must be > 0, got -1`), and the sections are checked
//! against each other (every head's `in_dim` is the extractor's feature width).

mod config;

pub use config::{ExperimentConfig, ModelConfig};
