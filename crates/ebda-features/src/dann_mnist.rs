//! The MNIST → MNIST-M feature extractor of the DANN paper (Ganin et al.,
//! "Domain-Adversarial Training of Neural Networks", JMLR 2016, Fig. 4a):
//! RGB 28×28 input, `conv(c→32, 5) → ReLU → max-pool 2 → conv(32→48, 5) →
//! ReLU → max-pool 2 → flatten 768`. The paper's label predictor (100-100-10)
//! and domain classifier (100-1) are the classifier and discriminator heads
//! of the config (`experiments/digits/M2MM.json`).

use crate::{FeatureExtractor, Result, check_image};
use candle_core::Tensor;
use candle_nn::{Conv2dConfig, VarBuilder};
use ebda_nn::{Conv2d, Dropout, Pool2d, Rng};

/// Feature width: 48 channels × 4 × 4.
pub(crate) const OUT_DIM: usize = 48 * 4 * 4;
/// Input channels of the paper (MNIST replicated to RGB, MNIST-M).
pub(crate) const IN_CHANNELS: usize = 3;

/// See the module docs.
pub struct DannMnist {
    in_channels: usize,
    conv1: Conv2d,
    conv2: Conv2d,
    pool: Pool2d,
    dropout: Dropout,
}

impl DannMnist {
    /// Builds the network with variables `conv1.*`, `conv2.*` under `vb`.
    pub fn new(in_channels: usize, dropout: f64, vb: VarBuilder, rng: &Rng) -> Result<Self> {
        let cfg = Conv2dConfig::default();
        Ok(Self {
            in_channels,
            conv1: ebda_nn::conv2d(in_channels, 32, 5, cfg, vb.pp("conv1"))?,
            conv2: ebda_nn::conv2d(32, 48, 5, cfg, vb.pp("conv2"))?,
            pool: Pool2d::new(2, 2, 0),
            dropout: Dropout::new(dropout, rng)
                .map_err(|e| crate::invalid("dropout", e.to_string()))?,
        })
    }
}

impl FeatureExtractor for DannMnist {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        check_image("dann_mnist", x, [self.in_channels, 28, 28])?;
        // ReLU then max-pool equals max-pool then ReLU (ReLU is monotone),
        // values and gradients alike: one fused op each on the CPU.
        let x = ebda_nn::conv_pool_relu(x, &self.conv1, &self.pool, None)?; // [b, 32, 12, 12]
        let x = ebda_nn::conv_pool_relu(&x, &self.conv2, &self.pool, None)?; // [b, 48, 4, 4]
        let x = x.flatten_from(1)?; // [b, 768]
        Ok(self.dropout.forward_t(&x, train)?)
    }

    fn out_dim(&self) -> usize {
        OUT_DIM
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![self.in_channels, 28, 28]
    }
}
