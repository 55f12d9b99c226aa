//! EBDA (this project): an autoencoder energy critic in place of DANN's
//! discriminator. `critic_steps` critic steps on the detached features
//! (`L_A = mean E(f_s) + mean [m − E(f_t)]⁺`, only the critic moves, with
//! its own optimizer), then the feature step
//! `L_F = CE + λ_p · (mean E(f_t) + β · PT)` through the frozen critic.

use super::{
    Heads, Joint, Method, MethodSpec, Probes, Shared, Stats, StepParams, mean_norm, method_vars,
    shared_optimizer,
};
use crate::Error;
use crate::config::{ExperimentConfig, OptimConfig, at};
use crate::eval::EvalResult;
use crate::optim::{Optimizer, ParamGroup};
use crate::schedule;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use ebda_config::ConfigError;
use ebda_critic::{CriticConfig, EnergyCritic};
use ebda_data::Batch;
use ebda_nn::trainable_vars;
use ebda_records::{CriticEval, MetricsLine, round6};
use serde::{Deserialize, Serialize};

/// Seed stream of the critic's initialisation.
const STREAM: u64 = 3;

/// How the margin `m` evolves with progress `p`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarginSchedule {
    /// `m` throughout (`critic.margin`).
    #[default]
    Fixed,
    /// Linear from `margin_start` to `m` over training.
    Linear,
}

/// EBDA's settings: the critic, its optimizer and steps, the margin schedule
/// (the λ schedule is `adapt`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbdaConfig {
    pub critic: CriticConfig,
    /// Critic steps per iteration.
    pub critic_steps: usize,
    /// The critic's optimizer (default Adam 1e-3, constant, as the PyTorch
    /// prototype `torch_da.py`).
    pub critic_optim: OptimConfig,
    pub margin_schedule: MarginSchedule,
    /// Start of a linear margin schedule.
    pub margin_start: f64,
}

impl Default for EbdaConfig {
    fn default() -> Self {
        Self {
            critic: CriticConfig::default(),
            critic_steps: 1,
            critic_optim: OptimConfig::adam(1e-3),
            margin_schedule: MarginSchedule::Fixed,
            margin_start: 0.1,
        }
    }
}

impl EbdaConfig {
    /// The margin at progress `p`.
    pub fn margin_at(&self, p: f64) -> f64 {
        match self.margin_schedule {
            MarginSchedule::Fixed => self.critic.margin,
            MarginSchedule::Linear => schedule::linear(self.margin_start, self.critic.margin, p),
        }
    }
}

impl MethodSpec for EbdaConfig {
    fn validate(&self, section: &str, heads: Heads) -> Result<(), ConfigError> {
        let here = format!("{section}.critic");
        self.critic.validate().map_err(|e| match e {
            ebda_critic::Error::Config { key, reason } => at(&here, key, reason),
            other => ConfigError::invalid(&here, other.to_string()),
        })?;
        crate::config::check_in_dim(&here, self.critic.in_dim, heads.width)?;
        self.critic_optim
            .validate(&format!("{section}.critic_optim"))?;
        if self.critic_steps == 0 {
            return Err(at(section, "critic_steps", "must be >= 1, got 0".into()));
        }
        if self.margin_schedule == MarginSchedule::Linear
            && !(self.margin_start.is_finite() && self.margin_start > 0.0)
        {
            return Err(at(
                section,
                "margin_start",
                format!("must be > 0, got {}", self.margin_start),
            ));
        }
        Ok(())
    }

    fn fit_width(&mut self, heads: Heads) {
        self.critic.in_dim = heads.width;
    }

    fn build(
        &self,
        cfg: &ExperimentConfig,
        shared: &Shared,
        device: &Device,
    ) -> Result<Box<dyn Method>, Error> {
        let (vars, vb) = method_vars(cfg, STREAM, device);
        let critic = self.critic.init(vb.pp("critic"))?;
        let critic_opt = Optimizer::new(
            &self.critic_optim,
            vec![ParamGroup {
                vars: trainable_vars(&vars),
                lr_mult: 1.0,
            }],
        );
        let opt = shared_optimizer(cfg, shared, Vec::new());
        Ok(Box::new(Ebda {
            cfg: self.clone(),
            critic,
            vars,
            critic_opt,
            opt,
        }))
    }

    fn step_macs(&self, b: f64, enc: f64, cls: f64, heads: Heads) -> f64 {
        let mut ae = vec![heads.width];
        ae.extend(&self.critic.hidden);
        ae.push(self.critic.code_dim);
        let back: Vec<usize> = ae.iter().rev().copied().collect();
        let critic = crate::bench::linear_macs(&ae) + crate::bench::linear_macs(&back);
        let steps = self.critic_steps as f64;
        // critic steps on 2b rows, then the frozen pass on b target rows with the pull-away Gram matrix
        2.0 * b * enc
            + b * cls
            + steps * 2.0 * b * critic
            + b * critic
            + b * b * self.critic.code_dim as f64
    }
}

struct Ebda {
    cfg: EbdaConfig,
    critic: EnergyCritic,
    vars: VarMap,
    critic_opt: Optimizer,
    opt: Optimizer,
}

impl Method for Ebda {
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
        let tgt = tgt.ok_or_else(|| Error::Run("ebda needs a target batch".into()))?;
        let Joint { fs, ft, ce, .. } = Joint::forward(shared, src, tgt)?;
        let margin = self.cfg.margin_at(sp.p);
        // Critic steps: features detached inside critic_loss_at; only the critic moves.
        let critic_lr = schedule::lr_at(self.critic_opt.config(), sp.p);
        let mut c = self.critic.critic_loss_at(&fs, &ft, margin)?;
        self.critic_opt.step(&c.total.backward()?, critic_lr)?;
        for _ in 1..self.cfg.critic_steps {
            c = self.critic.critic_loss_at(&fs, &ft, margin)?;
            self.critic_opt.step(&c.total.backward()?, critic_lr)?;
        }
        // Feature step through the updated, frozen critic.
        let align = self.critic.alignment_loss(&ft)?;
        let loss = (&ce + (&align.total * sp.lambda)?)?;
        self.opt.step(&loss.backward()?, sp.lr)?;
        Ok(vec![
            ("loss", loss.detach()),
            ("ce", ce.detach()),
            ("critic_loss", c.total.detach()),
            ("critic_source_energy", c.source_energy),
            ("critic_target_energy", c.target_energy),
            ("critic_target_hinge", c.target_hinge),
            ("critic_beyond_margin", c.beyond_margin),
            ("align_energy", align.energy),
            ("pull_away", align.pull_away),
            ("feat_norm_source", mean_norm(&fs)?),
            ("feat_norm_target", mean_norm(&ft)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("critic", &self.vars)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![
            ("optim", &mut self.opt),
            ("critic_optim", &mut self.critic_opt),
        ]
    }

    fn probe(&self, f: &Tensor, _logits: &Tensor) -> Result<Probes, Error> {
        Ok(Probes {
            energy: Some(self.critic.energy(f)?),
            ..Probes::default()
        })
    }

    fn record(
        &self,
        sp: StepParams,
        tgt: &EvalResult,
        src: Option<&EvalResult>,
        line: &mut MetricsLine,
    ) {
        let Some(target) = tgt.mean_energy() else {
            return;
        };
        let source = src.and_then(EvalResult::mean_energy);
        line.critic = Some(CriticEval {
            margin: round6(self.cfg.margin_at(sp.p)),
            target_energy: round6(target),
            source_energy: source.map(round6),
            energy_gap: source.map(|s| round6(target - s)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_schedules() {
        let mut cfg = EbdaConfig::default();
        assert_eq!(cfg.margin_at(0.3), 1.0);
        cfg.margin_schedule = MarginSchedule::Linear;
        cfg.margin_start = 0.2;
        assert!((cfg.margin_at(0.5) - 0.6).abs() < 1e-12);
        assert_eq!(cfg.margin_at(2.0), 1.0);
    }
}
