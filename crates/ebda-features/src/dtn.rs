//! DTN for 32×32 digits (tllib `DTN`; CDAN's `DTN`, `thuml/CDAN` pytorch/network.py).

use crate::{FeatureExtractor, Result, check_image};
use candle_core::Tensor;
use candle_nn::{BatchNorm, Conv2dConfig, Module, ModuleT, VarBuilder};
use ebda_nn::Conv2d;
use ebda_nn::Linear;
use ebda_nn::{Dropout, Dropout2d, Rng};

/// Feature width.
pub(crate) const OUT_DIM: usize = 512;
/// Input channels of the reference (SVHN colour images).
pub(crate) const IN_CHANNELS: usize = 3;
/// Channels of the three conv blocks and their channel-dropout rates (tllib).
const BLOCKS: [(usize, f64); 3] = [(64, 0.1), (128, 0.3), (256, 0.5)];

struct Block {
    conv: Conv2d,
    bn: BatchNorm,
    dropout: Dropout2d,
}

/// Three blocks `conv(k5, s2, p2) → BN → Dropout2d → ReLU` (64/128/256
/// channels, 32 → 16 → 8 → 4), then `fc 4096 → 512 → BN → ReLU → Dropout`.
pub struct Dtn {
    in_channels: usize,
    blocks: Vec<Block>,
    fc: Linear,
    bn_fc: BatchNorm,
    dropout: Dropout,
}

impl Dtn {
    /// Builds DTN with variables `conv{1,2,3}.*`, `bn{1,2,3}.*`, `fc.*`, `bn_fc.*`.
    pub fn new(
        in_channels: usize,
        dropout: f64,
        spatial_dropout: bool,
        vb: VarBuilder,
        rng: &Rng,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: 2,
            stride: 2,
            ..Default::default()
        };
        let bad = |e: ebda_nn::Error| crate::invalid("dropout", e.to_string());
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        let mut c_in = in_channels;
        for (i, (c_out, p)) in BLOCKS.into_iter().enumerate() {
            let p = if spatial_dropout { p } else { 0.0 };
            blocks.push(Block {
                conv: ebda_nn::conv2d(c_in, c_out, 5, cfg, vb.pp(format!("conv{}", i + 1)))?,
                bn: ebda_nn::batch_norm(c_out, vb.pp(format!("bn{}", i + 1)))?,
                dropout: Dropout2d::new(p, rng).map_err(bad)?,
            });
            c_in = c_out;
        }
        Ok(Self {
            in_channels,
            blocks,
            fc: ebda_nn::linear(256 * 4 * 4, OUT_DIM, vb.pp("fc"))?,
            bn_fc: ebda_nn::batch_norm(OUT_DIM, vb.pp("bn_fc"))?,
            dropout: Dropout::new(dropout, rng).map_err(bad)?,
        })
    }
}

impl FeatureExtractor for Dtn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        check_image("dtn", x, [self.in_channels, 32, 32])?;
        let mut x = x.clone();
        for block in &self.blocks {
            // [b, c, s, s] -> [b, c', s/2, s/2]
            x = block.conv.forward(&x)?;
            x = block.bn.forward_t(&x, train)?;
            x = ebda_nn::relu(&block.dropout.forward_t(&x, train)?)?;
        }
        let x = x.flatten_from(1)?; // [b, 256, 4, 4] -> [b, 4096]
        let x = self.fc.forward(&x)?; // [b, 512]
        let x = ebda_nn::relu(&self.bn_fc.forward_t(&x, train)?)?;
        Ok(self.dropout.forward_t(&x, train)?)
    }

    fn out_dim(&self) -> usize {
        OUT_DIM
    }

    fn input_dims(&self) -> Vec<usize> {
        vec![self.in_channels, 32, 32]
    }
}
