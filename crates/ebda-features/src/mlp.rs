//! MLP over precomputed feature vectors.

use crate::{Error, FeatureExtractor, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use ebda_nn::{Dropout, Rng};

/// `(Linear → ReLU → Dropout)` for each hidden width ([`ebda_nn::Mlp`]);
/// with no hidden width, the input vectors themselves (cached backbone
/// features, with the layers of the model — a bottleneck, the heads — on top).
pub struct Mlp {
    in_dim: usize,
    mlp: Option<ebda_nn::Mlp>,
}

impl Mlp {
    /// Builds the MLP with variables `layers.{i}.*` under `vb`.
    pub fn new(
        in_dim: usize,
        hidden: &[usize],
        dropout: f64,
        vb: VarBuilder,
        rng: &Rng,
    ) -> Result<Self> {
        let mut widths = vec![in_dim];
        widths.extend(hidden);
        let dropout =
            Dropout::new(dropout, rng).map_err(|e| crate::invalid("dropout", e.to_string()))?;
        let mlp = if hidden.is_empty() {
            None
        } else {
            Some(ebda_nn::Mlp::new(&widths, false, dropout, true, vb)?)
        };
        Ok(Self { in_dim, mlp })
    }
}

impl FeatureExtractor for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let in_dim = self.in_dim;
        match x.dims() {
            [b, d] if *b > 0 && *d == in_dim => {}
            dims => {
                return Err(Error::Input {
                    arch: "mlp",
                    reason: format!("expected [batch > 0, {in_dim}], got {dims:?}"),
                });
            }
        }
        match &self.mlp {
            Some(mlp) => Ok(mlp.forward_t(x, train)?), // [b, h_last]
            None => Ok(x.clone()),
        }
    }

    fn out_dim(&self) -> usize {
        self.mlp.as_ref().map_or(self.in_dim, |m| m.out_dim())
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![self.in_dim]
    }
}
