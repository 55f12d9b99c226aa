//! Layers with PyTorch's default initialisation and constants.
//!
//! PyTorch's `nn.Linear` and `nn.Conv2d` draw weights with
//! `kaiming_uniform_(a = √5)`, i.e. `U(−1/√fan_in, 1/√fan_in)`, and biases
//! from the same interval (torch/nn/modules/linear.py `reset_parameters`,
//! torch/nn/modules/conv.py `_ConvNd.reset_parameters`). candle-nn's `linear`
//! uses a Kaiming-normal weight instead; matching PyTorch matters when results
//! are compared against PyTorch references trained from its defaults.

use candle_core::Result;
use candle_nn::{BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, Init, Linear, VarBuilder};

fn fan_in_uniform(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// `y = x·Wᵀ + b` with `W: [out, in]`, `b: [out]`, PyTorch's default init.
///
/// # Shapes
/// `[b, in] -> [b, out]`
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let init = fan_in_uniform(in_dim);
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// 2-D convolution with bias, `W: [out, in/groups, k, k]`, PyTorch's default init.
///
/// # Shapes
/// `[b, in, h, w] -> [b, out, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let fan_in = in_channels / cfg.groups.max(1) * kernel * kernel;
    let init = fan_in_uniform(fan_in);
    let weight = vb.get_with_hints(
        (
            out_channels,
            in_channels / cfg.groups.max(1),
            kernel,
            kernel,
        ),
        "weight",
        init,
    )?;
    let bias = vb.get_with_hints(out_channels, "bias", init)?;
    Ok(Conv2d::new(weight, Some(bias), cfg))
}

/// Batch normalisation with PyTorch's defaults: `eps = 1e-5`, `momentum = 0.1`,
/// affine (γ = 1, β = 0), running mean 0 and variance 1 kept in the `VarMap`
/// (torch/nn/modules/batchnorm.py `_NormBase`).
///
/// # Shapes
/// `[b, c, ...] -> [b, c, ...]`
pub fn batch_norm(num_features: usize, vb: VarBuilder) -> Result<BatchNorm> {
    let cfg = BatchNormConfig {
        eps: 1e-5,
        remove_mean: true,
        affine: true,
        momentum: 0.1,
    };
    candle_nn::batch_norm(num_features, cfg, vb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded_var_builder;
    use candle_core::{DType, Device, Module, Tensor};
    use candle_nn::VarMap;

    #[test]
    fn linear_init_is_bounded_by_one_over_sqrt_fan_in() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
        let lin = linear(100, 7, vb.pp("fc")).unwrap();
        let w: Vec<f32> = lin.weight().flatten_all().unwrap().to_vec1().unwrap();
        assert!(w.iter().all(|v| v.abs() <= 0.1));
        // A uniform draw over ±0.1 has max |w| close to 0.1 for 700 samples.
        assert!(w.iter().fold(0f32, |m, v| m.max(v.abs())) > 0.09);
        let y = lin.forward(&Tensor::zeros((3, 100), DType::F32, &Device::Cpu).unwrap());
        assert_eq!(y.unwrap().dims(), &[3, 7]);
    }

    #[test]
    fn conv_init_uses_fan_in_of_kernel() {
        let map = VarMap::new();
        let vb = seeded_var_builder(&map, 0, DType::F32, &Device::Cpu);
        let conv = conv2d(4, 3, 5, Conv2dConfig::default(), vb).unwrap();
        let bound = 1.0 / (100f32).sqrt();
        let w: Vec<f32> = conv.weight().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(w.len(), 3 * 4 * 25);
        assert!(w.iter().all(|v| v.abs() <= bound));
    }
}
