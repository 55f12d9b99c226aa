//! Source-only: `L = CE(C(F(x_s)), y_s)`, the baseline without adaptation.

use super::{Heads, Method, MethodSpec, Shared, Stats, StepParams, mean_norm, shared_optimizer};
use crate::Error;
use crate::config::ExperimentConfig;
use crate::optim::Optimizer;
use candle_core::Device;
use candle_nn::VarMap;
use ebda_config::ConfigError;
use ebda_data::Batch;
use serde::{Deserialize, Serialize};

/// Source-only has no settings of its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceOnlyConfig {}

impl MethodSpec for SourceOnlyConfig {
    fn validate(&self, _section: &str, _heads: Heads) -> Result<(), ConfigError> {
        Ok(())
    }

    fn fit_width(&mut self, _heads: Heads) {}

    fn build(
        &self,
        cfg: &ExperimentConfig,
        shared: &Shared,
        _device: &Device,
    ) -> Result<Box<dyn Method>, Error> {
        Ok(Box::new(SourceOnly {
            opt: shared_optimizer(cfg, shared, Vec::new()),
        }))
    }

    fn step_macs(&self, b: f64, enc: f64, cls: f64, _heads: Heads) -> f64 {
        b * (enc + cls)
    }
}

struct SourceOnly {
    opt: Optimizer,
}

impl Method for SourceOnly {
    fn uses_target(&self) -> bool {
        false
    }

    fn step(
        &mut self,
        shared: &Shared,
        src: &Batch,
        _tgt: Option<&Batch>,
        sp: StepParams,
    ) -> Result<Stats, Error> {
        let f = shared.extractor.forward_t(&src.inputs, true)?; // [b, D]
        let logits = shared.classifier.forward_t(&f, true)?; // [b, K]
        let ce = shared.classifier.loss(&logits, &src.labels)?;
        self.opt.step(&ce.backward()?, sp.lr)?;
        Ok(vec![
            ("loss", ce.detach()),
            ("ce", ce.detach()),
            ("feat_norm_source", mean_norm(&f)?),
        ])
    }

    fn var_maps(&self) -> Vec<(&'static str, &VarMap)> {
        Vec::new()
    }

    fn optimizers(&mut self) -> Vec<(&'static str, &mut Optimizer)> {
        vec![("optim", &mut self.opt)]
    }
}
