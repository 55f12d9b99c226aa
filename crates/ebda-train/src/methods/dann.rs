//! DANN (Ganin & Lempitsky, ICML 2015): gradient reversal into a domain
//! discriminator. `f = F([x_s; x_t])`, `L = CE + BCE(D(R_λ(f)), [1; 0])`,
//! one optimizer over `F`, `C` and `D`.

use super::{
    Heads, Joint, Method, MethodSpec, Probes, Shared, Stats, StepParams, mean_norm, method_vars,
    shared_optimizer,
};
use crate::Error;
use crate::config::{ExperimentConfig, at};
use crate::eval::{EvalResult, domain_accuracy};
use crate::optim::Optimizer;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use ebda_config::ConfigError;
use ebda_dann::{DiscriminatorConfig, DomainDiscriminator};
use ebda_data::Batch;
use ebda_nn::trainable_vars;
use ebda_records::{MetricsLine, round6};
use serde::{Deserialize, Serialize};

/// Seed stream of the discriminator's initialisation.
const STREAM: u64 = 2;

/// DANN's settings: its discriminator (the λ schedule is `adapt`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DannConfig {
    pub discriminator: DiscriminatorConfig,
}

impl MethodSpec for DannConfig {
    fn validate(&self, section: &str, heads: Heads) -> Result<(), ConfigError> {
        let here = format!("{section}.discriminator");
        self.discriminator.validate().map_err(|e| match e {
            ebda_dann::Error::Config { key, reason } => at(&here, key, reason),
            other => ConfigError::invalid(&here, other.to_string()),
        })?;
        crate::config::check_in_dim(&here, self.discriminator.in_dim, heads.width)
    }

    fn fit_width(&mut self, heads: Heads) {
        self.discriminator.in_dim = heads.width;
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
        Ok(Box::new(Dann { disc, vars, opt }))
    }

    fn step_macs(&self, b: f64, enc: f64, cls: f64, heads: Heads) -> f64 {
        let mut disc = vec![heads.width];
        disc.extend(&self.discriminator.hidden);
        disc.push(1);
        2.0 * b * enc + b * cls + 2.0 * b * crate::bench::linear_macs(&disc)
    }
}

struct Dann {
    disc: DomainDiscriminator,
    vars: VarMap,
    opt: Optimizer,
}

impl Method for Dann {
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
        let tgt = tgt.ok_or_else(|| Error::Run("dann needs a target batch".into()))?;
        let Joint { fs, ft, f, ce, .. } = Joint::forward(shared, src, tgt)?;
        let reversed = ebda_dann::grad_reverse(&f, sp.lambda)?;
        let d = self.disc.forward_t(&reversed, true)?; // [b_s + b_t]
        let bs = fs.dim(0)?;
        let (d_s, d_t) = (d.narrow(0, 0, bs)?, d.narrow(0, bs, ft.dim(0)?)?);
        let dloss = ebda_dann::domain_loss(&d_s, &d_t)?;
        let loss = (&ce + &dloss)?;
        self.opt.step(&loss.backward()?, sp.lr)?;
        let domain_acc = batch_domain_acc(&d, bs)?;
        Ok(vec![
            ("loss", loss.detach()),
            ("ce", ce.detach()),
            ("domain_loss", dloss.detach()),
            ("domain_acc", domain_acc),
            ("feat_norm_source", mean_norm(&fs)?),
            ("feat_norm_target", mean_norm(&ft)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        vec![("discriminator", &self.vars)]
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt)]
    }

    fn probe(&self, f: &Tensor, _logits: &Tensor) -> Result<Probes, Error> {
        Ok(Probes {
            domain_logit: Some(self.disc.forward_t(f, false)?),
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

/// Share of a step's domain logits `d` `[b_s + b_t]` on the right side
/// (source > 0, target ≤ 0), as a detached device scalar (read only when
/// logged).
pub(super) fn batch_domain_acc(d: &Tensor, bs: usize) -> Result<Tensor, Error> {
    let d = d.detach();
    let n = d.dim(0)?;
    let hits_s = d
        .narrow(0, 0, bs)?
        .gt(0.0)?
        .to_dtype(DType::F32)?
        .sum_all()?;
    let hits_t = d
        .narrow(0, bs, n - bs)?
        .le(0.0)?
        .to_dtype(DType::F32)?
        .sum_all()?;
    Ok(((hits_s + hits_t)? / n as f64)?)
}
