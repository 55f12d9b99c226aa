//! MLP over precomputed feature vectors.

use crate::{Error, FeatureExtractor, Result};
use candle_core::Tensor;
use candle_nn::{Module, VarBuilder};
use ebda_nn::Linear;
use ebda_nn::{Dropout, Rng};

/// `(Linear → ReLU → Dropout)` for each hidden width.
pub struct Mlp {
    in_dim: usize,
    layers: Vec<Linear>,
    dropout: Dropout,
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
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| ebda_nn::linear(w[0], w[1], vb.pp("layers").pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let dropout =
            Dropout::new(dropout, rng).map_err(|e| crate::invalid("dropout", e.to_string()))?;
        Ok(Self {
            in_dim,
            layers,
            dropout,
        })
    }
}

impl FeatureExtractor for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match x.dims() {
            [b, d] if *b > 0 && *d == self.in_dim => {}
            dims => {
                return Err(Error::Input {
                    arch: "mlp",
                    reason: format!("expected [batch > 0, {}], got {dims:?}", self.in_dim),
                });
            }
        }
        let mut x = x.clone();
        for layer in &self.layers {
            x = self
                .dropout
                .forward_t(&ebda_nn::relu(&layer.forward(&x)?)?, train)?; // [b, h_i]
        }
        Ok(x)
    }

    fn out_dim(&self) -> usize {
        self.layers
            .last()
            .map(|l| l.weight().dims()[0])
            .unwrap_or(self.in_dim)
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![self.in_dim]
    }
}
