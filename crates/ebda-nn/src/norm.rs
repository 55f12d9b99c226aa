//! Batch normalisation with PyTorch's semantics and a fused CPU kernel.
//!
//! `y = γ · (x − μ_B) / √(σ²_B + ε) + β` over every axis but the channel
//! axis 1, with batch statistics in training (biased variance for the
//! normalisation, unbiased for the running variance, momentum 0.1: PyTorch's
//! `BatchNorm{1,2}d`) and running statistics in evaluation.
//!
//! candle 0.11.1's `BatchNorm::forward_train` is eleven tensor ops whose
//! autograd graph keeps about six full-size intermediates per layer; a
//! ResNet-50 training step at batch 32 + 32 then needs more than 24 GB. On
//! the CPU the training forward here is one op that keeps only its input,
//! output and per-channel `μ`, `1/σ`, with the closed-form backward
//! `dx = γ/σ · (dy − mean(dy) − x̂ · mean(dy · x̂))`, `dγ = Σ dy · x̂`,
//! `dβ = Σ dy` (sums in f64). Other devices compose candle tensor ops. Both
//! agree with PyTorch (tested against torchvision in f64 to 1e-12).

use crate::ops::cpu_float;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, Var, WithDType};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// PyTorch's defaults.
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// A batch-normalisation layer over axis 1 of `[b, c, ...]` inputs.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

/// A [`BatchNorm`] of `c` channels with PyTorch's defaults (γ = 1, β = 0,
/// running mean 0 and variance 1, ε = 1e-5, momentum 0.1); variables
/// `weight`, `bias`, `running_mean`, `running_var` under `vb`.
pub fn batch_norm2d(c: usize, vb: VarBuilder) -> Result<BatchNorm> {
    let weight = vb.get_with_hints(c, "weight", Init::Const(1.0))?;
    let bias = vb.get_with_hints(c, "bias", Init::Const(0.0))?;
    let mean = vb.get_with_hints(c, "running_mean", Init::Const(0.0))?;
    let var = vb.get_with_hints(c, "running_var", Init::Const(1.0))?;
    BatchNorm::new(weight, bias, mean, var)
}

impl BatchNorm {
    /// From its four tensors (running statistics must be variables of a
    /// `VarMap`, so that their updates persist).
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
    ) -> Result<Self> {
        let c = weight.elem_count();
        for (name, t) in [
            ("bias", &bias),
            ("running_mean", &running_mean),
            ("running_var", &running_var),
        ] {
            if t.dims() != [c] {
                candle_core::bail!(
                    "batch norm: {name} has shape {:?}, expected [{c}]",
                    t.dims()
                )
            }
        }
        Ok(Self {
            weight,
            bias,
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            eps: EPS,
            momentum: MOMENTUM,
        })
    }

    /// γ.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// β.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The running mean.
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running (unbiased) variance.
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    fn channels(&self) -> usize {
        self.weight.elem_count()
    }

    /// Batch statistics and a running-statistics update with `train`,
    /// running statistics without.
    ///
    /// # Shapes
    /// `[b, c, ...] -> [b, c, ...]`
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.channels();
        if x.rank() < 2 || x.dim(1)? != c {
            candle_core::bail!("batch norm: expected [batch, {c}, ...], got {:?}", x.dims())
        }
        if !train {
            return self.forward_eval(x);
        }
        let m = x.elem_count() / c;
        if m < 2 {
            candle_core::bail!(
                "batch norm: training needs more than one value per channel, got input {:?}",
                x.dims()
            )
        }
        let same = x.dtype() == self.weight.dtype() && x.dtype() == self.bias.dtype();
        let (y, mean, var) = if cpu_float(x) && same {
            let saved = Arc::new(Mutex::new(None));
            let op = BnTrain {
                eps: self.eps,
                saved: saved.clone(),
            };
            let y = x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                op,
            )?;
            // The statistics the kernel used (f64, detached).
            let stats = saved.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let stats =
                stats.ok_or_else(|| candle_core::Error::Msg("batch norm: no statistics".into()))?;
            let dev = x.device();
            (
                y,
                Tensor::new(stats.mean, dev)?,
                Tensor::new(stats.var, dev)?,
            )
        } else {
            self.forward_train_generic(x)?
        };
        // running ← (1 − m)·running + m·batch, with the unbiased batch variance.
        let unbiased = (var * (m as f64 / (m as f64 - 1.0)))?;
        let rm = self.running_mean.as_tensor();
        let rv = self.running_var.as_tensor();
        let new_mean = ((rm.detach() * (1.0 - self.momentum))?
            + (mean.to_dtype(rm.dtype())? * self.momentum)?)?;
        let new_var = ((rv.detach() * (1.0 - self.momentum))?
            + (unbiased.to_dtype(rv.dtype())? * self.momentum)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        Ok(y)
    }

    /// `[1, c, 1, ...]` for broadcasting a per-channel vector over `x`.
    fn channel_shape(x: &Tensor) -> Vec<usize> {
        let mut s = vec![1; x.rank()];
        s[1] = x.dim(1).unwrap_or(1);
        s
    }

    /// The per-channel affine map of evaluation mode, `y = s·x + t` with
    /// `s = γ/√(σ²_run + ε)`, `t = β − μ_run·s` (`[c]` each, in `dtype`;
    /// differentiable in γ and β, the running statistics detached). A
    /// convolution before the BN can absorb it.
    pub fn running_affine(&self, dtype: DType) -> Result<(Tensor, Tensor)> {
        let var = self.running_var.as_tensor().detach().to_dtype(dtype)?;
        let mean = self.running_mean.as_tensor().detach().to_dtype(dtype)?;
        let scale = (self.weight.to_dtype(dtype)? * (var + self.eps)?.sqrt()?.recip()?)?;
        let shift = (self.bias.to_dtype(dtype)? - (mean * &scale)?)?;
        Ok((scale, shift))
    }

    fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        let shape = Self::channel_shape(x);
        let (scale, shift) = self.running_affine(x.dtype())?;
        x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
            .broadcast_add(&shift.reshape(shape.as_slice())?)
    }

    /// Training forward from candle tensor ops (every device): the output
    /// and the batch mean and biased variance (detached, `[c]`).
    fn forward_train_generic(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let shape = Self::channel_shape(x);
        let axes: Vec<usize> = (0..x.rank()).filter(|&a| a != 1).collect();
        let mean = x.mean_keepdim(axes.as_slice())?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(axes.as_slice())?;
        let xhat = centred.broadcast_div(&(&var + self.eps)?.sqrt()?)?;
        let y = xhat
            .broadcast_mul(&self.weight.reshape(shape.as_slice())?)?
            .broadcast_add(&self.bias.reshape(shape.as_slice())?)?;
        Ok((y, mean.detach().flatten_all()?, var.detach().flatten_all()?))
    }
}

/// Per-channel batch statistics of a training forward (f64).
#[derive(Clone, Debug)]
struct Stats {
    mean: Vec<f64>,
    /// Biased variance (the normalisation's).
    var: Vec<f64>,
    /// `1/√(var + ε)`.
    inv: Vec<f64>,
}

/// The fused training forward: `(x, γ, β) ↦ y`. Its statistics land in
/// `saved`, shared with the layer (for the running-statistics update) and
/// read again by the backward.
struct BnTrain {
    eps: f64,
    saved: Arc<Mutex<Option<Stats>>>,
}

/// `(n, c, inner)` of a `[n, c, ...]` shape.
fn split(dims: &[usize]) -> (usize, usize, usize) {
    (dims[0], dims[1], dims[2..].iter().product())
}

/// Per-channel mean and biased variance of `x` `[n, c, inner]` (two passes, f64).
fn moments<T: WithDType>(x: &[T], n: usize, c: usize, inner: usize) -> Vec<(f64, f64)> {
    let m = (n * inner) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let plane = |b: usize| &x[(b * c + ch) * inner..(b * c + ch + 1) * inner];
            let sum: f64 = (0..n)
                .map(|b| plane(b).iter().map(|v| v.to_f64()).sum::<f64>())
                .sum();
            let mean = sum / m;
            let ss: f64 = (0..n)
                .map(|b| {
                    plane(b)
                        .iter()
                        .map(|v| (v.to_f64() - mean).powi(2))
                        .sum::<f64>()
                })
                .sum();
            (mean, ss / m)
        })
        .collect()
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "ebda-batch-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, inner) = split(xl.dims());
        fn run<T: WithDType>(
            x: &[T],
            w: &[T],
            b: &[T],
            (n, c, inner): (usize, usize, usize),
            eps: f64,
            stats: &mut Option<Stats>,
        ) -> Vec<T> {
            let moments = moments(x, n, c, inner);
            let mean: Vec<f64> = moments.iter().map(|s| s.0).collect();
            let var: Vec<f64> = moments.iter().map(|s| s.1).collect();
            let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
            let mut y = vec![T::zero(); x.len()];
            y.par_chunks_mut(inner).enumerate().for_each(|(p, out)| {
                let ch = p % c;
                let (mu, s) = (mean[ch], inv[ch]);
                let (g, bb) = (w[ch].to_f64(), b[ch].to_f64());
                let src = &x[p * inner..(p + 1) * inner];
                for (o, v) in out.iter_mut().zip(src) {
                    *o = T::from_f64((v.to_f64() - mu) * s * g + bb);
                }
            });
            *stats = Some(Stats { mean, var, inv });
            y
        }
        let mut stats = None;
        let out = float_dispatch3!(
            "ebda-batch-norm",
            (xs, xl),
            (ws, wl),
            (bs, bl),
            |x, w, b| run(x, w, b, (n, c, inner), self.eps, &mut stats)
        );
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = stats;
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self
            .saved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                candle_core::Error::Msg("ebda-batch-norm: backward before forward".into())
            })?;
        let c = w.elem_count();
        let numel = x.elem_count();
        let packed = x.contiguous()?.apply_op3_no_bwd(
            &grad.contiguous()?,
            &w.contiguous()?,
            &BnGrad { stats: saved },
        )?;
        let dx = packed.narrow(0, 0, numel)?.reshape(x.shape())?;
        let dw = packed.narrow(0, numel, c)?;
        let db = packed.narrow(0, numel + c, c)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(x, dy, γ) ↦ [dx (flattened) | dγ | dβ]`.
struct BnGrad {
    stats: Stats,
}

impl CustomOp3 for BnGrad {
    fn name(&self) -> &'static str {
        "ebda-batch-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, inner) = split(xl.dims());
        let (mean, inv) = (&self.stats.mean, &self.stats.inv);
        let total = xl.shape().elem_count() + 2 * c;
        let out = float_dispatch3!(
            "ebda-batch-norm-grad",
            (xs, xl),
            (gs, gl),
            (ws, wl),
            |x, g, w| backward(x, g, w, (n, c, inner), mean, inv)
        );
        Ok((out, Shape::from(total)))
    }
}

fn backward<T: WithDType>(
    x: &[T],
    dy: &[T],
    w: &[T],
    (n, c, inner): (usize, usize, usize),
    mean: &[f64],
    inv: &[f64],
) -> Vec<T> {
    let m = (n * inner) as f64;
    // Per channel: Σ dy and Σ dy·x̂.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mu, s) = (mean[ch], inv[ch]);
            let (mut sd, mut sdx) = (0.0, 0.0);
            for b in 0..n {
                let at = (b * c + ch) * inner;
                for (g, v) in dy[at..at + inner].iter().zip(&x[at..at + inner]) {
                    let g = g.to_f64();
                    sd += g;
                    sdx += g * (v.to_f64() - mu) * s;
                }
            }
            (sd, sdx)
        })
        .collect();
    let mut out = vec![T::zero(); x.len() + 2 * c];
    let (dx, rest) = out.split_at_mut(x.len());
    dx.par_chunks_mut(inner).enumerate().for_each(|(p, o)| {
        let ch = p % c;
        let (mu, s) = (mean[ch], inv[ch]);
        let k = w[ch].to_f64() * s;
        let (md, mdx) = (sums[ch].0 / m, sums[ch].1 / m);
        let at = p * inner;
        for ((o, g), v) in o
            .iter_mut()
            .zip(&dy[at..at + inner])
            .zip(&x[at..at + inner])
        {
            let xhat = (v.to_f64() - mu) * s;
            *o = T::from_f64(k * (g.to_f64() - md - xhat * mdx));
        }
    });
    for ch in 0..c {
        rest[ch] = T::from_f64(sums[ch].1);
        rest[c + ch] = T::from_f64(sums[ch].0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fused CPU op against the composed ops: output, running
    /// statistics and every gradient (f64, with a constant channel and ties).
    #[test]
    fn fused_matches_composed() {
        let dev = Device::Cpu;
        let (n, c, h, w) = (3, 4, 5, 2);
        let mut v: Vec<f64> = (0..n * c * h * w)
            .map(|i| ((i * 37 % 23) as f64 - 11.0) / 7.0)
            .collect();
        // Channel 2 of image 0 constant, and repeated values elsewhere.
        for i in 0..h * w {
            v[2 * h * w + i] = 0.5;
        }
        let x = Var::from_tensor(&Tensor::from_vec(v, (n, c, h, w), &dev).unwrap()).unwrap();
        let make = || {
            let g =
                Var::from_tensor(&Tensor::new(&[0.5f64, 1.5, -1.0, 2.0], &dev).unwrap()).unwrap();
            let b =
                Var::from_tensor(&Tensor::new(&[0.1f64, -0.2, 0.3, 0.0], &dev).unwrap()).unwrap();
            let rm =
                Var::from_tensor(&Tensor::new(&[0.2f64, 0.0, -0.1, 0.3], &dev).unwrap()).unwrap();
            let rv =
                Var::from_tensor(&Tensor::new(&[1.0f64, 2.0, 0.5, 1.5], &dev).unwrap()).unwrap();
            let bn = BatchNorm::new(
                g.as_tensor().clone(),
                b.as_tensor().clone(),
                rm.as_tensor().clone(),
                rv.as_tensor().clone(),
            )
            .unwrap();
            (bn, g, b)
        };
        let up: Vec<f64> = (0..n * c * h * w)
            .map(|i| ((i * 13 % 17) as f64 - 8.0) / 5.0)
            .collect();
        let up = Tensor::from_vec(up, (n, c, h, w), &dev).unwrap();
        let (fused, gf, bf) = make();
        let (composed, gc, bc) = make();
        let yf = fused.forward_t(&x, true).unwrap();
        let (yc, mean, var) = composed.forward_train_generic(&x).unwrap();
        let max = |a: &Tensor, b: &Tensor| -> f64 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        assert!(max(&yf, &yc) < 1e-12);
        // The running statistics follow PyTorch's update.
        let m = (n * h * w) as f64;
        let want_rv = ((Tensor::new(&[1.0f64, 2.0, 0.5, 1.5], &dev).unwrap() * 0.9).unwrap()
            + (var * (0.1 * m / (m - 1.0))).unwrap())
        .unwrap();
        let want_rm = ((Tensor::new(&[0.2f64, 0.0, -0.1, 0.3], &dev).unwrap() * 0.9).unwrap()
            + (mean * 0.1).unwrap())
        .unwrap();
        assert!(max(fused.running_var(), &want_rv) < 1e-12);
        assert!(max(fused.running_mean(), &want_rm) < 1e-12);
        let gfw = (yf * &up).unwrap().sum_all().unwrap().backward().unwrap();
        let gcw = (yc * &up).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max(gfw.get(&x).unwrap(), gcw.get(&x).unwrap()) < 1e-12);
        assert!(max(gfw.get(&gf).unwrap(), gcw.get(&gc).unwrap()) < 1e-12);
        assert!(max(gfw.get(&bf).unwrap(), gcw.get(&bc).unwrap()) < 1e-12);
        // Evaluation uses the running statistics.
        let e = fused.forward_t(&x, false).unwrap();
        let scale =
            (fused.weight() / (fused.running_var() + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let want = x
            .broadcast_sub(&fused.running_mean().reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_mul(&scale.reshape((1, c, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&fused.bias().reshape((1, c, 1, 1)).unwrap())
            .unwrap();
        assert!(max(&e, &want) < 1e-12);
        // 1-D inputs ([b, c]) take the same path.
        let x2 = Tensor::new(&[[1.0f64, 2.0, 3.0, 4.0], [0.0, 2.0, -1.0, 1.0]], &dev).unwrap();
        let (bn2, _, _) = make();
        let (bn3, _, _) = make();
        let a = bn2.forward_t(&x2, true).unwrap();
        let (b, _, _) = bn3.forward_train_generic(&x2).unwrap();
        assert!(max(&a, &b) < 1e-12);
        // One value per channel cannot be normalised.
        let one = Tensor::new(&[[1.0f64, 2.0, 3.0, 4.0]], &dev).unwrap();
        assert!(bn2.forward_t(&one, true).is_err());
        assert_eq!(DType::F64, a.dtype());
    }
}
