//! Evaluation of a model on a labelled set: accuracy and the per-sample
//! quantities the reports use (prediction, energy under the critic, domain
//! logit, feature norm).

use crate::methods::{Method, Shared};
use candle_core::{DType, Device, Result, Tensor};
use ebda_data::{Dataset, InputConfig, eval_batches};

/// Everything measured on one evaluation set.
#[derive(Clone, Debug, Default)]
pub struct EvalResult {
    pub n: usize,
    pub correct: usize,
    /// Predicted class per sample.
    pub predictions: Vec<u32>,
    /// True class per sample.
    pub labels: Vec<u32>,
    /// Critic energy per sample (methods whose probes measure one).
    pub energies: Option<Vec<f32>>,
    /// Domain-discriminator logit per sample (likewise).
    pub domain_logits: Option<Vec<f32>>,
    /// Mean feature norm ‖F(x)‖.
    pub mean_norm: f64,
    /// Features of the first [`KEPT_FEATURES`] samples, row-major `[k, D]`.
    pub features: Vec<f32>,
    /// Feature width `D`.
    pub dim: usize,
}

/// Samples per set whose features are kept for the proxy A-distance.
pub const KEPT_FEATURES: usize = 2000;

impl EvalResult {
    /// Share of correct predictions.
    pub fn accuracy(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.correct as f64 / self.n as f64
        }
    }

    /// Mean critic energy, if measured.
    pub fn mean_energy(&self) -> Option<f64> {
        self.energies
            .as_ref()
            .map(|e| e.iter().map(|&v| f64::from(v)).sum::<f64>() / e.len().max(1) as f64)
    }
}

/// Evaluates `data` in evaluation mode (no dropout, BN running statistics).
pub fn evaluate(
    shared: &Shared,
    method: &dyn Method,
    data: &Dataset,
    input: &InputConfig,
    batch: usize,
    device: &Device,
) -> std::result::Result<EvalResult, crate::Error> {
    let mut out = EvalResult {
        ..EvalResult::default()
    };
    let mut norm_sum = 0.0;
    for b in eval_batches(data, input, batch, device) {
        let b = b?;
        let f = shared.extractor.forward_t(&b.inputs, false)?.detach(); // [b, D]
        let logits = shared.classifier.forward_t(&f, false)?;
        let pred: Vec<u32> = logits.argmax(1)?.to_vec1()?;
        let labels: Vec<u32> = b.labels.to_vec1()?;
        out.correct += pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
        out.n += labels.len();
        out.predictions.extend(pred);
        out.labels.extend(labels);
        norm_sum += f
            .sqr()?
            .sum(1)?
            .sqrt()?
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        out.dim = f.dim(1)?;
        let have = out.features.len() / out.dim.max(1);
        if have < KEPT_FEATURES {
            let keep = (KEPT_FEATURES - have).min(f.dim(0)?);
            out.features
                .extend(f.narrow(0, 0, keep)?.flatten_all()?.to_vec1::<f32>()?);
        }
        let probes = method.probe(&f, &logits)?;
        for (t, dst) in [
            (probes.energy, &mut out.energies),
            (probes.domain_logit, &mut out.domain_logits),
        ] {
            if let Some(t) = t {
                dst.get_or_insert_with(Vec::new).extend(t.to_vec1::<f32>()?);
            }
        }
    }
    out.mean_norm = norm_sum / out.n.max(1) as f64;
    Ok(out)
}

/// Domain accuracy of a discriminator on a source set (label 1) and a
/// target set (label 0), from their per-sample domain logits (methods whose
/// probes give them).
pub fn domain_accuracy(source: &EvalResult, target: &EvalResult) -> Option<f64> {
    let (s, t) = (
        source.domain_logits.as_ref()?,
        target.domain_logits.as_ref()?,
    );
    let hits = s.iter().filter(|&&z| z > 0.0).count() + t.iter().filter(|&&z| z <= 0.0).count();
    Some(hits as f64 / (s.len() + t.len()).max(1) as f64)
}

/// A `[k, k]` confusion matrix: rows true class, columns prediction.
pub fn confusion(result: &EvalResult, k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; k]; k];
    for (&y, &p) in result.labels.iter().zip(&result.predictions) {
        if (y as usize) < k && (p as usize) < k {
            m[y as usize][p as usize] += 1;
        }
    }
    m
}

/// Device-side sum of stats for averaging (avoids a host sync per step).
pub(crate) fn add_stats(
    acc: &mut Vec<(&'static str, Tensor)>,
    stats: Vec<(&'static str, Tensor)>,
) -> Result<()> {
    if acc.is_empty() {
        *acc = stats.into_iter().map(|(n, v)| (n, v.detach())).collect();
        return Ok(());
    }
    for ((name, sum), (other, v)) in acc.iter_mut().zip(stats) {
        debug_assert_eq!(*name, other);
        *sum = (&*sum + v.detach())?;
    }
    Ok(())
}
