//! LeNet for 28×28 digits (tllib `LeNet`; ADDA's LeNet encoder).

use crate::{FeatureExtractor, Result, check_image};
use candle_core::Tensor;
use candle_nn::{Conv2dConfig, Module, VarBuilder};
use ebda_nn::Conv2d;
use ebda_nn::Linear;
use ebda_nn::{Dropout, Dropout2d, Pool2d, Rng};

/// Feature width.
pub(crate) const OUT_DIM: usize = 500;
/// Input channels of the reference (grayscale digits).
pub(crate) const IN_CHANNELS: usize = 1;
/// Channel dropout after the second convolution (tllib).
const SPATIAL_DROPOUT: f64 = 0.5;

/// `conv(c→20, 5) → pool 2 → ReLU → conv(20→50, 5) → Dropout2d → pool 2 → ReLU
/// → flatten 800 → fc 500 → ReLU → Dropout`.
pub struct LeNet {
    in_channels: usize,
    conv1: Conv2d,
    conv2: Conv2d,
    fc: Linear,
    spatial: Dropout2d,
    dropout: Dropout,
    pool: Pool2d,
}

impl LeNet {
    /// Builds LeNet with variables `conv1.*`, `conv2.*`, `fc.*` under `vb`.
    pub fn new(
        in_channels: usize,
        dropout: f64,
        spatial_dropout: bool,
        vb: VarBuilder,
        rng: &Rng,
    ) -> Result<Self> {
        let cfg = Conv2dConfig::default();
        let spatial_p = if spatial_dropout {
            SPATIAL_DROPOUT
        } else {
            0.0
        };
        let bad = |e: ebda_nn::Error| crate::invalid("dropout", e.to_string());
        Ok(Self {
            in_channels,
            conv1: ebda_nn::conv2d(in_channels, 20, 5, cfg, vb.pp("conv1"))?,
            conv2: ebda_nn::conv2d(20, 50, 5, cfg, vb.pp("conv2"))?,
            fc: ebda_nn::linear(50 * 4 * 4, OUT_DIM, vb.pp("fc"))?,
            spatial: Dropout2d::new(spatial_p, rng).map_err(bad)?,
            dropout: Dropout::new(dropout, rng).map_err(bad)?,
            pool: Pool2d::new(2, 2, 0),
        })
    }
}

impl FeatureExtractor for LeNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        check_image("lenet", x, [self.in_channels, 28, 28])?;
        // conv → pool → ReLU blocks, one op each on the CPU (equal to the
        // separate ops up to float rounding; see `ebda_nn::conv_pool_relu`).
        let x = ebda_nn::conv_pool_relu(x, &self.conv1, &self.pool, None)?; // [b, 20, 12, 12]
        let mask = self.spatial.channel_mask(x.dim(0)?, 50, train); // Dropout2d on conv2's output
        let x = ebda_nn::conv_pool_relu(&x, &self.conv2, &self.pool, mask.as_deref())?; // [b, 50, 4, 4]
        let x = x.flatten_from(1)?; // [b, 50, 4, 4] -> [b, 800]
        let x = ebda_nn::relu(&self.fc.forward(&x)?)?; // [b, 500]
        Ok(self.dropout.forward_t(&x, train)?)
    }

    fn out_dim(&self) -> usize {
        OUT_DIM
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![self.in_channels, 28, 28]
    }
}
