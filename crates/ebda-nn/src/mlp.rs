//! A multilayer perceptron: `x ↦ L_n(… a(L_1(x)))` with
//! `a = Dropout ∘ ReLU ∘ [BatchNorm]` after each hidden layer (and after the
//! last when `activate_last`). The label head, the domain discriminator and
//! the MLP feature extractor are all this module.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarMap;
//! use ebda_nn::{Dropout, Mlp, Rng, seeded_var_builder};
//!
//! let map = VarMap::new();
//! let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
//! let rng = Rng::new(0);
//! let mlp = Mlp::new(&[8, 16, 3], false, Dropout::new(0.5, &rng)?, false, vb)?;
//! let x = Tensor::zeros((4, 8), DType::F32, &Device::Cpu)?;
//! assert_eq!(mlp.forward_t(&x, false)?.dims(), &[4, 3]); // [4, 8] -> [4, 3]
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::{Dropout, Linear};
use candle_core::{Result, Tensor};
use candle_nn::{BatchNorm, Module, ModuleT, VarBuilder};

/// Linear layers with ReLU, optional BatchNorm and dropout between them.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    norms: Vec<BatchNorm>,
    dropout: Dropout,
    activate_last: bool,
}

impl Mlp {
    /// Layers `widths[i] → widths[i+1]` as `layers.{i}.{weight,bias}` under
    /// `vb` (PyTorch's initialisation), then, with `batch_norm`, a
    /// BatchNorm1d per activated layer as `bn.{i}.*`. `widths` holds at
    /// least the input and the output width.
    pub fn new(
        widths: &[usize],
        batch_norm: bool,
        dropout: Dropout,
        activate_last: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if widths.len() < 2 {
            candle_core::bail!("mlp: needs an input and an output width, got {widths:?}")
        }
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| crate::linear(w[0], w[1], vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let activated = if activate_last {
            &widths[1..]
        } else {
            &widths[1..widths.len() - 1]
        };
        let norms = if batch_norm {
            activated
                .iter()
                .enumerate()
                .map(|(i, &h)| crate::batch_norm(h, vb.pp("bn").pp(i)))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        Ok(Self {
            layers,
            norms,
            dropout,
            activate_last,
        })
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.layers[0].weight().dims()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.layers[self.layers.len() - 1].weight().dims()[0]
    }

    /// # Shapes
    /// `[b, widths[0]] -> [b, widths[last]]`
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?; // [b, widths[i + 1]]
            if i < last || self.activate_last {
                if let Some(bn) = self.norms.get(i) {
                    x = bn.forward_t(&x, train)?;
                }
                x = self.dropout.forward_t(&crate::relu(&x)?, train)?;
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Rng, parameter_count, seeded_var_builder};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn layers_norms_and_activation_of_the_last_layer() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
        let rng = Rng::new(0);
        let head = Mlp::new(
            &[6, 5, 4],
            true,
            Dropout::new(0.0, &rng).unwrap(),
            false,
            vb,
        )
        .unwrap();
        // Linear 6→5, 5→4, one BN(5) (γ, β; running stats are buffers).
        assert_eq!(parameter_count(&map), 6 * 5 + 5 + 5 * 4 + 4 + 2 * 5);
        assert_eq!((head.in_dim(), head.out_dim()), (6, 4));
        // Without activating the last layer, outputs can be negative.
        let x = Tensor::randn(0f32, 3., (32, 6), &dev).unwrap();
        let y: Vec<f32> = head
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y.iter().any(|v| *v < 0.0));
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
        let body = Mlp::new(
            &[6, 5, 4],
            false,
            Dropout::new(0.0, &rng).unwrap(),
            true,
            vb,
        )
        .unwrap();
        let y: Vec<f32> = body
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y.iter().all(|v| *v >= 0.0), "ReLU after the last layer");
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &dev);
        assert!(Mlp::new(&[6], false, Dropout::new(0.0, &rng).unwrap(), false, vb).is_err());
    }
}
