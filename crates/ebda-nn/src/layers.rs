//! Layers with PyTorch's default initialisation and constants.
//!
//! PyTorch's `nn.Linear` and `nn.Conv2d` draw weights with
//! `kaiming_uniform_(a = √5)`, i.e. `U(−1/√fan_in, 1/√fan_in)`, and biases
//! from the same interval (torch/nn/modules/linear.py `reset_parameters`,
//! torch/nn/modules/conv.py `_ConvNd.reset_parameters`). candle-nn's `linear`
//! uses a Kaiming-normal weight instead; matching PyTorch matters when results
//! are compared against PyTorch references trained from its defaults.

use crate::Linear;
use crate::ops::{Conv2dOp, Window, cpu_float};
use candle_core::{Module, Result, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, Conv2dConfig, Init, VarBuilder};

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
    Ok(Conv2d {
        weight,
        bias: Some(bias),
        cfg,
    })
}

/// A 2-D convolution: `y = W ⋆ x + b`.
///
/// On the CPU (groups 1, dilation 1) it runs as `im2col` + one GEMM over the
/// whole batch, whose backward is two GEMMs and a `col2im` — much faster than
/// candle 0.11.1's CPU convolution backward (a naive transposed convolution).
/// Elsewhere it is candle's `conv2d`. Both give the same values up to float
/// rounding (tested).
///
/// # Shapes
/// `[b, c, h, w] -> [b, out, (h + 2p − k)/s + 1, (w + 2p − k)/s + 1]`
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv2dConfig,
}

impl Conv2d {
    /// A convolution with the given weight `[out, in/groups, k, k]` and bias.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: Conv2dConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight `[out, in/groups, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Stride, padding, dilation and groups.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let plain = self.cfg.groups == 1 && self.cfg.dilation == 1;
        if cpu_float(x) && plain {
            // One fused op: im2col + GEMM + bias, with its own backward (a
            // bias-free convolution gets a zero bias that no one trains).
            let (oc, ic, kh, kw) = self.weight.dims4()?;
            let g = Window::new(x.dims4()?, (kh, kw), self.cfg.stride, self.cfg.padding)?;
            if x.dim(1)? != ic {
                candle_core::bail!(
                    "conv2d: input has {} channels, the weight expects {ic}",
                    x.dim(1)?
                )
            }
            let zero;
            let bias = match &self.bias {
                Some(b) => b,
                None => {
                    zero = Tensor::zeros(oc, self.weight.dtype(), self.weight.device())?;
                    &zero
                }
            };
            return x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &bias.contiguous()?,
                Conv2dOp::new(g),
            );
        }
        let y = x.conv2d(
            &self.weight,
            self.cfg.padding,
            self.cfg.stride,
            self.cfg.dilation,
            self.cfg.groups,
        )?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
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
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;
    use rand::{Rng, SeedableRng};

    /// Our convolution against candle's `conv2d`, values and gradients of
    /// input, weight and bias, for L = Σ g ⊙ y with random g (f64).
    #[allow(clippy::too_many_arguments)]
    fn check_conv(
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        oc: usize,
        k: usize,
        stride: usize,
        pad: usize,
        seed: u64,
    ) {
        let dev = Device::Cpu;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut rand =
            |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let x =
            Var::from_tensor(&Tensor::from_vec(rand(b * c * h * w), (b, c, h, w), &dev).unwrap())
                .unwrap();
        let wt =
            Var::from_tensor(&Tensor::from_vec(rand(oc * c * k * k), (oc, c, k, k), &dev).unwrap())
                .unwrap();
        let bias = Var::from_tensor(&Tensor::from_vec(rand(oc), oc, &dev).unwrap()).unwrap();
        let cfg = Conv2dConfig {
            padding: pad,
            stride,
            ..Default::default()
        };
        let ours = Conv2d::new(wt.as_tensor().clone(), Some(bias.as_tensor().clone()), cfg)
            .forward(&x)
            .unwrap();
        let theirs = x
            .conv2d(&wt, pad, stride, 1, 1)
            .unwrap()
            .broadcast_add(&bias.as_tensor().reshape((1, oc, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        let g = Tensor::from_vec(rand(ours.elem_count()), ours.shape(), &dev).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        assert!(
            diff(&ours, &theirs) < 1e-12,
            "values {b}x{c}x{h}x{w} k{k} s{stride} p{pad}"
        );
        // The unfused path (no bias) agrees too.
        let unfused = Conv2d::new(wt.as_tensor().clone(), None, cfg)
            .forward(&x)
            .unwrap();
        let plain = x.conv2d(&wt, pad, stride, 1, 1).unwrap();
        assert!(diff(&unfused, &plain) < 1e-12);
        let ga = (&ours * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (&theirs * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("x", &x), ("w", &wt), ("b", &bias)] {
            let d = diff(ga.get(v).unwrap(), gb.get(v).unwrap());
            assert!(
                d < 1e-10,
                "grad {name} {b}x{c}x{h}x{w} k{k} s{stride} p{pad}: {d}"
            );
        }
    }

    #[test]
    fn im2col_conv_matches_candle_values_and_gradients() {
        check_conv(2, 1, 28, 28, 20, 5, 1, 0, 1); // LeNet conv1
        check_conv(3, 20, 12, 12, 50, 5, 1, 0, 2); // LeNet conv2
        check_conv(2, 3, 32, 32, 8, 5, 2, 2, 3); // DTN block
        check_conv(1, 2, 7, 9, 3, 3, 2, 1, 4); // odd sizes, stride and padding
        check_conv(2, 4, 6, 5, 2, 1, 1, 0, 5); // 1×1
        check_conv(1, 3, 13, 10, 4, 7, 3, 3, 6); // ResNet-like stem geometry
    }

    /// Where (h + 2p − k) is not a multiple of the stride, candle's own
    /// conv2d backward returns an input gradient of the wrong shape (its
    /// transposed convolution lacks an output padding), so ours is checked
    /// against central finite differences instead: dL/dθ ≈ (L(θ+h) − L(θ−h))/2h,
    /// h = 1e-6, f64, tolerance 1e-7.
    #[test]
    fn im2col_conv_gradient_matches_finite_differences_on_uneven_strides() {
        let dev = Device::Cpu;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
        let mut rand =
            |n: usize| -> Vec<f64> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let (b, c, h, w, oc, k, s, p) = (1, 2, 8, 7, 3, 3, 3, 1);
        let xs = rand(b * c * h * w);
        let ws = rand(oc * c * k * k);
        let gs = rand(b * oc * 3 * 3);
        let cfg = Conv2dConfig {
            padding: p,
            stride: s,
            ..Default::default()
        };
        let loss = |xv: &[f64], wv: &[f64]| -> (Tensor, Var, Var) {
            let x = Var::from_tensor(&Tensor::from_slice(xv, (b, c, h, w), &dev).unwrap()).unwrap();
            let wt =
                Var::from_tensor(&Tensor::from_slice(wv, (oc, c, k, k), &dev).unwrap()).unwrap();
            let y = Conv2d::new(wt.as_tensor().clone(), None, cfg)
                .forward(&x)
                .unwrap();
            assert_eq!(y.dims(), &[b, oc, 3, 3]);
            let g = Tensor::from_slice(&gs, y.shape(), &dev).unwrap();
            ((y * g).unwrap().sum_all().unwrap(), x, wt)
        };
        let (l, x, wt) = loss(&xs, &ws);
        let grads = l.backward().unwrap();
        let gx: Vec<f64> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let gw: Vec<f64> = grads
            .get(&wt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let hstep = 1e-6;
        for i in 0..xs.len() {
            let (mut up, mut down) = (xs.clone(), xs.clone());
            up[i] += hstep;
            down[i] -= hstep;
            let num = (loss(&up, &ws).0.to_scalar::<f64>().unwrap()
                - loss(&down, &ws).0.to_scalar::<f64>().unwrap())
                / (2.0 * hstep);
            assert!((num - gx[i]).abs() < 1e-7, "dx[{i}]: {num} vs {}", gx[i]);
        }
        for i in 0..ws.len() {
            let (mut up, mut down) = (ws.clone(), ws.clone());
            up[i] += hstep;
            down[i] -= hstep;
            let num = (loss(&xs, &up).0.to_scalar::<f64>().unwrap()
                - loss(&xs, &down).0.to_scalar::<f64>().unwrap())
                / (2.0 * hstep);
            assert!((num - gw[i]).abs() < 1e-7, "dw[{i}]: {num} vs {}", gw[i]);
        }
    }

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
