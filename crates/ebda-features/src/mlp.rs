//! MLP over precomputed feature vectors.

use crate::{Error, FeatureExtractor, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use ebda_nn::{Dropout, Rng};

/// `(Linear → ReLU → Dropout)` for each hidden width ([`ebda_nn::Mlp`]).
pub struct Mlp {
    mlp: ebda_nn::Mlp,
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
        Ok(Self {
            mlp: ebda_nn::Mlp::new(&widths, false, dropout, true, vb)?,
        })
    }
}

impl FeatureExtractor for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let in_dim = self.mlp.in_dim();
        match x.dims() {
            [b, d] if *b > 0 && *d == in_dim => {}
            dims => {
                return Err(Error::Input {
                    arch: "mlp",
                    reason: format!("expected [batch > 0, {in_dim}], got {dims:?}"),
                });
            }
        }
        Ok(self.mlp.forward_t(x, train)?) // [b, h_last]
    }

    fn out_dim(&self) -> usize {
        self.mlp.out_dim()
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![self.mlp.in_dim()]
    }
}
