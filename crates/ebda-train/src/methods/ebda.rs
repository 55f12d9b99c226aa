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
use ebda_critic::{CriticConfig, CriticLoss, EnergyCritic};
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
        Ok(Box::new(Ebda {
            cfg: self.clone(),
            player: CriticPlayer::new(
                cfg,
                &self.critic,
                &self.critic_optim,
                self.critic_steps,
                STREAM,
                device,
            )?,
            opt: shared_optimizer(cfg, shared, Vec::new()),
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

/// The energy critic as the adversarial player of a method: its variables
/// and optimizer, its steps on detached inputs, and what it logs and
/// records. EBDA feeds it features; `cdan-energy` CDAN's conditioned map.
pub(super) struct CriticPlayer {
    critic: EnergyCritic,
    vars: VarMap,
    opt: Optimizer,
    steps: usize,
}

impl CriticPlayer {
    /// A critic from `critic`, seeded by stream `stream` of `cfg.seed`, with
    /// its own optimizer and `steps` steps per iteration.
    pub(super) fn new(
        cfg: &ExperimentConfig,
        critic: &CriticConfig,
        optim: &OptimConfig,
        steps: usize,
        stream: u64,
        device: &Device,
    ) -> Result<Self, Error> {
        let (vars, vb) = method_vars(cfg, stream, device);
        let critic = critic.init(vb.pp("critic"))?;
        let opt = Optimizer::new(
            optim,
            vec![ParamGroup {
                vars: trainable_vars(&vars),
                lr_mult: 1.0,
            }],
        );
        Ok(Self {
            critic,
            vars,
            opt,
            steps,
        })
    }

    /// The critic steps of one iteration on source `s` and target `t`
    /// (detached inside `critic_loss_at`: only the critic moves); returns the
    /// last step's loss.
    pub(super) fn train(
        &mut self,
        s: &Tensor,
        t: &Tensor,
        margin: f64,
        p: f64,
    ) -> Result<CriticLoss, Error> {
        let lr = schedule::lr_at(self.opt.config(), p);
        let mut c = self.critic.critic_loss_at(s, t, margin)?;
        self.opt.step(&c.total.backward()?, lr)?;
        for _ in 1..self.steps {
            c = self.critic.critic_loss_at(s, t, margin)?;
            self.opt.step(&c.total.backward()?, lr)?;
        }
        Ok(c)
    }

    /// The extractor's feature step: `CE + λ · L_align(t)` through the
    /// frozen critic, taken by `opt`; returns the step's statistics.
    pub(super) fn feature_step(
        &self,
        opt: &mut Optimizer,
        sp: StepParams,
        ce: &Tensor,
        t: &Tensor,
        c: CriticLoss,
        (fs, ft): (&Tensor, &Tensor),
    ) -> Result<Stats, Error> {
        let align = self.critic.alignment_loss(t)?;
        let loss = (ce + (&align.total * sp.lambda)?)?;
        opt.step(&loss.backward()?, sp.lr)?;
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
            ("feat_norm_source", mean_norm(fs)?),
            ("feat_norm_target", mean_norm(ft)?),
        ])
    }

    /// Per-sample energies of `x`.
    pub(super) fn energy(&self, x: &Tensor) -> Result<Tensor, Error> {
        Ok(self.critic.energy(x)?)
    }

    /// The critic's variables, named for checkpoints.
    pub(super) fn var_map(&self) -> (&'static str, &VarMap) {
        ("critic", &self.vars)
    }

    /// Its optimizer, named for checkpoints.
    pub(super) fn optimizer(&mut self) -> (&'static str, &mut Optimizer) {
        ("critic_optim", &mut self.opt)
    }
}

/// The critic fields of a metrics line: the margin and the mean test
/// energies (and their gap when there is a source test set).
pub(super) fn record_energies(
    margin: f64,
    tgt: &EvalResult,
    src: Option<&EvalResult>,
    line: &mut MetricsLine,
) {
    let Some(target) = tgt.mean_energy() else {
        return;
    };
    let source = src.and_then(EvalResult::mean_energy);
    line.critic = Some(CriticEval {
        margin: round6(margin),
        target_energy: round6(target),
        source_energy: source.map(round6),
        energy_gap: source.map(|s| round6(target - s)),
    });
}

struct Ebda {
    cfg: EbdaConfig,
    player: CriticPlayer,
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
        let c = self
            .player
            .train(&fs, &ft, self.cfg.margin_at(sp.p), sp.p)?;
        self.player
            .feature_step(&mut self.opt, sp, &ce, &ft, c, (&fs, &ft))
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![self.player.var_map()]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt), self.player.optimizer()]
    }

    fn probe(&self, f: &Tensor, _logits: &Tensor) -> Result<Probes, Error> {
        Ok(Probes {
            energy: Some(self.player.energy(f)?),
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
        record_energies(self.cfg.margin_at(sp.p), tgt, src, line);
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
