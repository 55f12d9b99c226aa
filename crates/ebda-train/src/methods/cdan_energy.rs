//! The energy critic inside CDAN (`cdan-energy`): CDAN's conditioning
//! `T(f, g) = g ⊗ f` (randomized above 4096 dims, `g = softmax(C(f))`
//! detached) fed to ebda's autoencoder energy critic instead of CDAN's
//! discriminator. Critic step: `L_A = mean E(T_s) + mean [m − E(T_t)]⁺`
//! (only the critic moves); feature step:
//! `L_F = CE + λ_p · (mean E(T_t) + β · PT)` through the frozen critic, so
//! the extractor makes the class-conditioned target features
//! reconstructable. Not to be confused with CDAN+E (`cdan` with `entropy`).
//!
//! The critic player (`ebda::CriticPlayer`, shared with EBDA) uses only
//! `ebda-critic`'s public API (`CriticConfig::init`, `critic_loss_at`,
//! `alignment_loss`, `energy`): the critic drops into another UDA method as
//! a user of the crate would drop it in.

use super::cdan::{Conditioning, map_dim, map_macs};
use super::ebda::{CriticPlayer, record_energies};
use super::{
    Heads, Joint, Method, MethodSpec, Probes, Shared, Stats, StepParams, shared_optimizer,
};
use crate::Error;
use crate::config::{ExperimentConfig, OptimConfig, at};
use crate::eval::EvalResult;
use crate::optim::Optimizer;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use ebda_config::ConfigError;
use ebda_critic::CriticConfig;
use ebda_data::Batch;
use ebda_records::MetricsLine;
use serde::{Deserialize, Serialize};

/// Seed stream of the critic's initialisation.
const STREAM: u64 = 5;

/// Settings of the conditional energy critic (the λ schedule is `adapt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdanEnergyConfig {
    /// The critic; its `in_dim` is the map's output width, its `margin` the
    /// hinge's `m`.
    pub critic: CriticConfig,
    /// Critic steps per iteration.
    pub critic_steps: usize,
    /// The critic's optimizer (Adam 1e-3, constant, as EBDA's).
    pub critic_optim: OptimConfig,
    /// Force or forbid the randomized map; `null`: when `F·C > 4096`.
    pub randomized: Option<bool>,
    /// Output width of the randomized map.
    pub random_dim: usize,
}

impl Default for CdanEnergyConfig {
    fn default() -> Self {
        Self {
            critic: CriticConfig::default(),
            critic_steps: 1,
            critic_optim: OptimConfig::adam(1e-3),
            randomized: None,
            random_dim: 1024,
        }
    }
}

impl MethodSpec for CdanEnergyConfig {
    fn validate(&self, section: &str, heads: Heads) -> Result<(), ConfigError> {
        if self.random_dim == 0 {
            return Err(at(section, "random_dim", "must be > 0, got 0".into()));
        }
        if self.critic_steps == 0 {
            return Err(at(section, "critic_steps", "must be >= 1, got 0".into()));
        }
        let here = format!("{section}.critic");
        self.critic.validate().map_err(|e| match e {
            ebda_critic::Error::Config { key, reason } => at(&here, key, reason),
            other => ConfigError::invalid(&here, other.to_string()),
        })?;
        let want = map_dim(self.randomized, self.random_dim, heads);
        if self.critic.in_dim != want {
            return Err(at(
                &here,
                "in_dim",
                format!(
                    "must equal the conditioning map's width {want}, got {}",
                    self.critic.in_dim
                ),
            ));
        }
        self.critic_optim
            .validate(&format!("{section}.critic_optim"))
    }

    fn fit_width(&mut self, heads: Heads) {
        self.critic.in_dim = map_dim(self.randomized, self.random_dim, heads);
    }

    fn build(
        &self,
        cfg: &ExperimentConfig,
        shared: &Shared,
        device: &Device,
    ) -> Result<Box<dyn Method>, Error> {
        Ok(Box::new(CdanEnergy {
            player: CriticPlayer::new(
                cfg,
                &self.critic,
                &self.critic_optim,
                self.critic_steps,
                STREAM,
                device,
            )?,
            margin: self.critic.margin,
            opt: shared_optimizer(cfg, shared, Vec::new()),
            map: Conditioning::new(cfg, self.randomized, self.random_dim, device)?,
        }))
    }

    fn step_macs(&self, b: f64, enc: f64, cls: f64, heads: Heads) -> f64 {
        let d = map_dim(self.randomized, self.random_dim, heads);
        let mut ae = vec![d];
        ae.extend(&self.critic.hidden);
        ae.push(self.critic.code_dim);
        let back: Vec<usize> = ae.iter().rev().copied().collect();
        let critic = crate::bench::linear_macs(&ae) + crate::bench::linear_macs(&back);
        let map = map_macs(self.randomized, self.random_dim, heads);
        2.0 * b * (enc + cls + map)
            + self.critic_steps as f64 * 2.0 * b * critic
            + b * critic
            + b * b * self.critic.code_dim as f64
    }
}

struct CdanEnergy {
    player: CriticPlayer,
    margin: f64,
    opt: Optimizer,
    map: Conditioning,
}

impl Method for CdanEnergy {
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
        let tgt = tgt.ok_or_else(|| Error::Run("cdan-energy needs a target batch".into()))?;
        let joint = Joint::forward(shared, src, tgt)?;
        let logits_t = joint.target_logits(shared)?;
        let (ts, _) = self.map.apply(&joint.fs, &joint.logits_s)?; // [b_s, d]
        let (tt, _) = self.map.apply(&joint.ft, &logits_t)?; // [b_t, d]
        let c = self.player.train(&ts, &tt, self.margin, sp.p)?;
        self.player
            .feature_step(&mut self.opt, sp, &joint.ce, &tt, c, (&joint.fs, &joint.ft))
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![self.player.var_map()]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt), self.player.optimizer()]
    }

    fn probe(&self, f: &Tensor, logits: &Tensor) -> Result<Probes, Error> {
        let (t, _) = self.map.apply(f, logits)?;
        Ok(Probes {
            energy: Some(self.player.energy(&t)?),
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
        record_energies(self.margin, tgt, src, line);
    }
}
