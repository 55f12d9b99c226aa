//! Training: source-only, DANN and EBDA from one trainer.
//!
//! - [`config`]: the experiment config (data, model, optimizers, schedules,
//!   loop), resolved from JSON + defaults + `--set` and validated with
//!   full key paths;
//! - [`methods`]: the methods behind one [`methods::Method`] trait, one
//!   module each, each owning its config (a variant of [`MethodConfig`]);
//! - [`optim`]: PyTorch-equal SGD (momentum, Nesterov, weight decay), Adam
//!   and AdamW with parameter groups;
//! - [`schedule`]: DANN's learning-rate and λ schedules, margin schedules;
//! - [`trainer`]: the loop, evaluation, `metrics.jsonl`, checkpoints, summary;
//! - [`eval`]: accuracy, per-sample energy, confusion matrices;
//! - [`pad`]: the proxy A-distance between source and target features.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod methods;
pub mod optim;
pub mod pad;
pub mod schedule;
pub mod trainer;

pub use config::{ExperimentConfig, ModelConfig};
pub use ebda_records::Summary;
pub use methods::MethodConfig;
pub use trainer::{RunData, RunOptions, code_revision, train};

use std::path::PathBuf;

/// Errors of a run; each names the file, key or iteration concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ebda_config::ConfigError),
    #[error(transparent)]
    Data(#[from] ebda_data::Error),
    /// A dataset of the config could not be read: `key` is its config key.
    #[error("{key}: {error}{hint}")]
    DataAt {
        key: &'static str,
        error: ebda_data::Error,
        hint: &'static str,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Record(#[from] ebda_records::Error),
    #[error(transparent)]
    Features(#[from] ebda_features::Error),
    #[error(transparent)]
    Classifier(#[from] ebda_classifier::Error),
    #[error(transparent)]
    Critic(#[from] ebda_critic::Error),
    #[error(transparent)]
    Dann(#[from] ebda_dann::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error(
        "non-finite {what} ({value}) by iteration {iteration}: training stopped; {}",
        match last_checkpoint { Some(p) => format!("the last good checkpoint is {}", p.display()), None => "no checkpoint was written yet".to_string() }
    )]
    NonFinite {
        iteration: usize,
        what: String,
        value: f64,
        last_checkpoint: Option<PathBuf>,
    },
    #[error(
        "stopped by signal {signal} at iteration {iteration}; checkpoint written to {}; continue with --resume",
        checkpoint.display()
    )]
    Interrupted {
        signal: i32,
        iteration: usize,
        checkpoint: PathBuf,
    },
    #[error("{0}")]
    Run(String),
}
